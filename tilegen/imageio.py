"""Reading exemplars and writing images: any common mode in, float32 (H, W, C) in [0, 1] out.

Grayscale stays one channel and alpha is kept only when it carries information, so the engine
(which is channel-agnostic) learns exactly what the user gave it. 16-bit PNGs are read and written
at full depth through pypng, because Pillow truncates 16-bit RGB to 8 bits.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import png  # pypng
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from tilegen import __version__, memory
from tilegen.errors import UserError, one_line, os_error_text

# Deliberate: Pillow refuses (DecompressionBombError) images above twice this many pixels and
# warns above it; read_image refuses above it from the header alone, and checks the memory the
# decoded image needs, before decoding anything.
Image.MAX_IMAGE_PIXELS = memory.MAX_PIXELS
# Every PNG and TIFF tilegen writes says so (PNG tEXt / TIFF tag "Software"), which is how
# `generate --overwrite` tells its own image from a photo it must never replace.
SOFTWARE = f"tilegen {__version__}"
# The image files tilegen reads and writes (error messages list them in this order), and the
# lossless ones: what keeps pixels bit for bit (generate's single images, inpaint's output).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LOSSLESS_SUFFIXES = (".png", ".tif", ".tiff")


def _png_bitdepth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(25)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return 8


def _read_png16(path: Path) -> np.ndarray:
    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    c = info["planes"]
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, c)
    return arr.astype(np.float32) / 65535.0


def _from_pil(im: Image.Image) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "HSV", "LAB"):
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    arr = np.asarray(im)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype in (np.uint16, np.int32) or im.mode.startswith("I"):
        # 16-bit grayscale arrives as I;16 or I (int32 holding 0..65535).
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.float32:
        out = arr
    else:
        out = arr.astype(np.float32)
    return out if out.ndim == 3 else out[:, :, None]


def _tiff_hwc(path: Path, shape: tuple[int, ...], axes: str) -> tuple[int, int, int]:
    """(height, width, channels) of a TIFF's first series, whether its samples are stored
    interleaved (axes YXS) or planar, one plane per channel (SYX, as some scanners and GIS
    tools write); a stack of pages or a volume is refused."""
    if axes == "YX":
        return shape[0], shape[1], 1
    if axes in ("YXS", "SYX", "CYX"):
        h, w, c = shape if axes == "YXS" else (*shape[1:], shape[0])
        if c > 4:
            raise UserError(f"{path} has {c} channels; use an image with 1 to 4")
        return h, w, c
    raise UserError(
        f"cannot read image {path}: its pixels have shape {shape} (axes {axes}); use a 2-D "
        "image with 1 to 4 channels (not a stack or a volume)"
    )


def image_header(path: Path) -> tuple[int, int, int, int, int]:
    """(height, width, channels, bytes per sample, frames) from the file's header, no decoding."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, axes = series.shape, series.dtype, series.axes
        if dtype.kind not in "uif":
            raise UserError(f"cannot read image {path}: {dtype} samples; use integers or floats")
        h, w, c = _tiff_hwc(path, tuple(shape), axes)
        return h, w, c, dtype.itemsize, 1
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # a header is no bomb: we
    try:  # compare its size with the limit ourselves, for a clearer message
        im = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    with im:
        w, h = im.size
        sample = 2 if im.mode.startswith("I;16") else 4 if im.mode in ("I", "F") else 1
        return h, w, max(3, len(im.getbands())), sample, getattr(im, "n_frames", 1)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image as float32 (H, W, C) in [0, 1], C in {1, 2, 3, 4}; UserError if unreadable.

    The header is read first: an image above memory.MAX_PIXELS, one whose decoded pixels would
    not fit in memory, or an animated one is refused before anything is decoded. The EXIF
    orientation of a photo is applied; NaN or infinite samples (float TIFF) are refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read image {path}: no such file")
    try:
        h, w, c, sample, frames = image_header(path)
        if h * w > memory.MAX_PIXELS:
            raise UserError(
                f"{path} declares {w}x{h} pixels ({h * w / 1e6:.0f} MP), more than tilegen reads "
                f"({memory.MAX_PIXELS / 1e6:.0f} MP): use a smaller image"
            )
        if frames > 1:
            raise UserError(
                f"{path} is animated ({frames} frames): save the frame you want as a PNG"
            )
        memory.require(
            memory.decode_bytes(h, w, c, sample), f"reading {path} ({w}x{h})", "use a smaller image"
        )
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                arr = series.asarray()
                if series.axes in ("SYX", "CYX"):  # planar: one plane per channel
                    arr = np.moveaxis(arr, 0, -1)
            arr = arr if arr.ndim == 3 else arr[:, :, None]
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise UserError(
                    f"{path} holds NaN or infinite values: tilegen needs finite pixel values"
                )
            scale = np.iinfo(arr.dtype).max if arr.dtype.kind in "ui" else 1.0
            out = arr.astype(np.float32) / scale
        elif _png_bitdepth(path) == 16:
            out = _read_png16(path)
        else:
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)  # a photo taken sideways reads upright
                out = _from_pil(im)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, png.Error, Image.DecompressionBombError,
            MemoryError, KeyError, IndexError, TypeError, SyntaxError) as e:  # fmt: skip
        raise UserError(f"cannot read image {path}: {one_line(e)}. Use a PNG, JPEG or TIFF file")
    # Drop alpha that is fully opaque: it would only cost a channel.
    if out.shape[2] in (2, 4) and np.all(out[:, :, -1] >= 1.0):
        out = out[:, :, :-1]
    if out.shape[2] > 4:
        raise UserError(f"{path} has {out.shape[2]} channels; use an image with 1 to 4")
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def quantize(img: np.ndarray, bits: int = 8) -> np.ndarray:
    """float [0, 1] -> uint8/uint16 with round-to-nearest (the one rule every output uses)."""
    top = 255 if bits == 8 else 65535
    q = np.rint(np.clip(img, 0.0, 1.0) * top)
    return q.astype(np.uint8 if bits == 8 else np.uint16)


def as_saved(img: np.ndarray, bits: int = 8) -> np.ndarray:
    """float [0, 1] -> float32 as a `bits`-bit file holds it: `quantize`, then back to [0, 1]."""
    return quantize(img, bits) / np.float32(255 if bits == 8 else 65535)


def convert_bits(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Stored integers at another depth: 16 -> 8 rounds to the nearest level (v * 255 / 65535),
    8 -> 16 is exact (v * 257); anything else is returned as it is."""
    if bits == 8 and pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if bits == 16 and pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * np.uint16(257)
    return pixels


def write_image(path: str | os.PathLike, img: np.ndarray, bits: int = 8) -> None:
    """Write float (H, W, C) in [0, 1] (or already quantised uint8/uint16) as PNG, TIFF or JPEG."""
    path = Path(path)
    if img.ndim == 2:
        img = img[:, :, None]
    q = img if img.dtype in (np.uint8, np.uint16) else quantize(img, bits)
    bits = 16 if q.dtype == np.uint16 else 8
    suffix = path.suffix.lower()
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(
                tmp, q if q.shape[2] > 1 else q[:, :, 0], photometric=None, software=SOFTWARE
            )
        elif suffix == ".png" and bits == 16:
            h, w, c = q.shape
            writer = png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16)
            with open(tmp, "wb") as f:
                writer.write(f, q.reshape(h, w * c))
            _sign_png(tmp)
        elif suffix in (".png", ".jpg", ".jpeg"):
            if bits == 16:
                raise UserError(f"{path}: JPEG is 8-bit only; write a .png or .tif for 16 bits")
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[q.shape[2]]
            im = Image.fromarray(q[:, :, 0] if q.shape[2] == 1 else q, mode)
            if suffix == ".png":
                info = PngImagePlugin.PngInfo()
                info.add_text("Software", SOFTWARE)
                im.save(tmp, format="PNG", pnginfo=info)
            else:
                im.save(tmp, format="JPEG", quality=95)
        else:
            raise UserError(f"{path}: unknown image type {suffix!r}; use .png, .tif or .jpg")
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(os_error_text(e, path))
    finally:
        remove_quietly(tmp)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _sign_png(path: Path) -> None:
    """Add the Software text chunk before the IEND chunk (the file's last 12 bytes)."""
    with open(path, "r+b") as f:
        f.seek(-12, os.SEEK_END)
        f.write(_png_chunk(b"tEXt", b"Software\0" + SOFTWARE.encode()) + _png_chunk(b"IEND", b""))


def written_by_tilegen(path: str | os.PathLike) -> bool:
    """Whether a PNG or TIFF file carries tilegen's Software mark (headers only are read)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get("Software")
                return bool(tag) and str(tag.value).startswith("tilegen")
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            while head := f.read(8):
                n, kind = struct.unpack(">I4s", head)
                if kind == b"tEXt" and n < 4096:
                    if f.read(n).startswith(b"Software\0tilegen"):
                        return True
                    f.seek(4, os.SEEK_CUR)
                else:
                    f.seek(n + 4, os.SEEK_CUR)
                if kind == b"IEND":
                    return False
    except Exception:  # unreadable: not ours as far as we can tell
        return False
    return False


def write_atomic(path: Path, data: bytes | str, tag: str = "partial") -> None:
    """Write a file through a temporary name beside it (`.NAME.PID.TAG`) and a rename, so a
    reader never sees half of it and an interrupted write leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{tag}")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        remove_quietly(tmp)


def remove_quietly(path: Path) -> None:
    """Delete a temporary file if it is there; a folder we cannot write keeps it (no error)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def exact_bits(img: np.ndarray) -> int:
    """8 when every value is an 8-bit level (so writing 8 bits changes no pixel), else 16."""
    return 8 if np.array_equal(as_saved(img, 8), img) else 16


def pixels_sha256(img: np.ndarray) -> str:
    """A stable hash of an exemplar's pixels (16-bit quantised, shape included)."""
    q = quantize(img, 16)
    h = hashlib.sha256(str(q.shape).encode())
    h.update(np.ascontiguousarray(q).tobytes())
    return h.hexdigest()
