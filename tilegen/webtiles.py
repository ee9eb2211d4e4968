"""Web-map tile pyramids from a tilegen store: XYZ (Leaflet, OpenLayers, MapLibre) and DeepZoom
(OpenSeadragon), streamed from the store's own pyramid, resumable.

    xyz   DIR/{z}/{x}/{y}.png      256 x 256 tiles; zoom z shows the image at 2^(z - maxzoom),
                                   the image's top-left at the origin; edge tiles are padded
                                   (transparent PNG, black JPEG); tiles wholly outside are absent
          DIR/tilejson.json        TileJSON 3.0.0 + a "tilegen" block (width, height, tile size);
                                   tile URLs relative to it, or absolute under --url
    pmtiles  OUT.pmtiles           the xyz tiles in one PMTiles file (tilegen/pmtiles_out.py)
    dzi   DIR/image_files/{level}/{col}_{row}.png   level N = full resolution, level 0 = 1 pixel;
                                   overlap 0; edge tiles smaller (as DeepZoom does)
          DIR/image.dzi            the DeepZoom descriptor

Level l (2^l times smaller than full resolution) is read from the store's pyramid level l (a 2x2
mean of the one above); levels below the store's coarsest are downsampled from it in memory (it
fits in one chunk). Work goes in blocks of whole tiles, several in parallel, each tile written
through a temporary name and a rename, so a killed run leaves whole tiles only; a rerun skips
them. The descriptor (tilejson.json / image.dzi) is written last: its presence marks a finished
folder. DIR/.tilegen-webtiles.json records the store and settings a rerun must match.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tilegen import memory, zarr_store
from tilegen.errors import UserError
from tilegen.imageio import convert_bits, write_atomic
from tilegen.parallel import ordered_map
from tilegen.progress import Progress
from tilegen.threads import usable_cores

WEB_FORMATS = ("xyz", "dzi")
IMAGE_TYPES = {"png": ".png", "jpg": ".jpg"}
MARKER = ".tilegen-webtiles.json"
DESCRIPTOR = {"xyz": "tilejson.json", "dzi": "image.dzi"}
BLOCK = 2048  # pixels per side read at once (a multiple of every tile size used)


def level_shape(height: int, width: int, level: int) -> tuple[int, int]:
    """(h, w) of a level 2^level times smaller: ceil halving, as the store's pyramid does."""
    f = 2**level
    return -(-height // f), -(-width // f)


def xyz_max_zoom(height: int, width: int, tile: int) -> int:
    """The zoom at which one image pixel is one tile pixel (zoom 0: the image fits one tile)."""
    return (
        max(0, math.ceil(math.log2(max(height, width) / tile))) if max(height, width) > tile else 0
    )


def dzi_max_level(height: int, width: int) -> int:
    """DeepZoom's top level: ceil(log2(max side)); level 0 is 1x1."""
    return math.ceil(math.log2(max(height, width))) if max(height, width) > 1 else 0


def levels_for(fmt: str, height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """(format level, downsampling level l) pairs, finest first."""
    top = xyz_max_zoom(height, width, tile) if fmt == "xyz" else dzi_max_level(height, width)
    return [(top - lv, lv) for lv in range(top + 1)]


def tile_path(out: Path, fmt: str, level: int, col: int, row: int, ext: str) -> Path:
    if fmt == "xyz":
        return out / str(level) / str(col) / f"{row}{ext}"
    return out / "image_files" / str(level) / f"{col}_{row}{ext}"


def encode_tile(pixels: np.ndarray, image: str, pad_to: int | None) -> bytes:
    """(h, w, C) uint8 as PNG or JPEG bytes; xyz edge tiles are padded to pad_to. The one encoder
    of xyz folders and PMTiles archives, so both hold the same bytes."""
    import io

    from PIL import Image

    h, w, c = pixels.shape
    if pad_to and (h, w) != (pad_to, pad_to):
        if image == "png":  # transparent outside the image
            if c in (1, 3):
                alpha = np.full((h, w, 1), 255, np.uint8)
                pixels = np.concatenate([np.repeat(pixels, 3, 2) if c == 1 else pixels, alpha], 2)
            full = np.zeros((pad_to, pad_to, 4), np.uint8)
        else:
            full = np.zeros((pad_to, pad_to, c), np.uint8)
        full[:h, :w] = pixels
        pixels = full
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    img = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)
    buf = io.BytesIO()
    if image == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.convert("RGB" if mode == "RGBA" else mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _encode(pixels: np.ndarray, path: Path, image: str, pad_to: int | None) -> None:
    """Write one tile through a temporary name."""
    write_atomic(path, encode_tile(pixels, image, pad_to))


def _check_store(store: Path) -> dict:
    attrs, spec = zarr_store.open_store(store)
    if not attrs.get("complete"):
        raise UserError(
            f"{store} is not complete: rerun the same 'tilegen generate' command to finish it, "
            "then cut web tiles"
        )
    if not spec.pyramid and max(spec.height, spec.width) > spec.chunk:
        raise UserError(
            f"{store} has no pyramid (written with --no-pyramid): regenerate it with the pyramid"
        )
    zarr_store.damaged_shards(store, spec, list(range(len(spec.level_shapes()))))
    return attrs


# What tilegen writes in a web-tiles folder, relative to it: the only names it ever deletes.
OURS = re.compile(r"\d+/\d+/\d+\.(png|jpg)|image_files/\d+/\d+_\d+\.(png|jpg)|(.*/)?\..*\.partial")


def _remove_ours(out: Path, partials_only: bool = False) -> None:
    """Delete the web tiles tilegen wrote in DIR (the marker, the descriptor, tiles named as it
    names them, its temporary files; or only the temporary files a killed run left), then the
    folders this empties; a file of the user's, in DIR or among the tiles, stays."""
    for name in () if partials_only else (MARKER, *DESCRIPTOR.values()):
        if (out / name).is_file() and not (out / name).is_symlink():
            (out / name).unlink()
    for top in [d for d in out.iterdir() if d.name.isdigit() or d.name == "image_files"]:
        if top.is_symlink() or not top.is_dir():
            continue
        for root, dirs, files in os.walk(top, topdown=False):
            for f in files:
                p = Path(root, f)
                if partials_only and not f.endswith(".partial"):
                    continue
                if OURS.fullmatch(p.relative_to(out).as_posix()) and not p.is_symlink():
                    p.unlink()
            for d in dirs:
                try:
                    Path(root, d).rmdir()
                except OSError:  # a user's file inside
                    pass
        try:
            top.rmdir()
        except OSError:
            pass


def _prepare_folder(out: Path, settings: dict, overwrite: bool) -> None:
    """Create, resume or replace DIR; never delete a folder that is not tilegen's."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise UserError(
                f"{out} exists and does not hold tilegen web tiles: tilegen never deletes it, "
                "even with --overwrite; choose another -o"
            )
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            old = {}
        done = any((out / d).is_file() for d in DESCRIPTOR.values())
        if overwrite:
            _remove_ours(out)
        elif old != settings:
            raise UserError(
                f"{out} holds other tiles ({old.get('format')} of store {old.get('store')}): "
                "pass --overwrite to replace them, or choose another -o"
            )
        elif done:
            raise UserError(f"{out} already holds these tiles: pass --overwrite to cut them again")
        else:
            _remove_ours(out, partials_only=True)  # a killed run's half-written tiles
    try:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings, indent=1) + "\n")
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}")


def block_reader(store: Path, attrs: dict) -> Callable[[int, int, int, int, int], np.ndarray]:
    """read(lv, y, x, h, w): (C', h, w) uint8 of downsampling level lv, the channels web tiles
    show. Levels below the store's coarsest are 2x2 means of it, computed once (one chunk)."""
    keep = zarr_store.shown(attrs)  # a material's web tiles show its albedo
    store_levels = int(attrs.get("levels", 1))
    height, width = (int(v) for v in attrs["size"])
    uid = attrs.get("uid", "")
    coarsest = None

    def read(lv: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        nonlocal coarsest
        if lv < store_levels:
            return convert_bits(zarr_store.read_region(str(store), lv, y, x, h, w, uid)[keep], 8)
        if coarsest is None:
            top = store_levels - 1
            coarsest = zarr_store.read_region(
                str(store), top, 0, 0, *level_shape(height, width, top), uid
            )
        data = coarsest
        for _ in range(lv - store_levels + 1):
            data = zarr_store.downsample2x(data)
        return convert_bits(data[keep, y : y + h, x : x + w], 8)

    return read


def _blocks(h: int, w: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    step = max(tile, BLOCK - BLOCK % tile)
    for y in range(0, h, step):
        for x in range(0, w, step):
            yield y, x, min(step, h - y), min(step, w - x)


def write_web_tiles(
    store: str | os.PathLike,
    out_dir: str | os.PathLike,
    fmt: str = "xyz",
    image: str = "png",
    tile: int = 256,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = True,
    url: str | None = None,
) -> dict:
    """Cut a finished store into an xyz or dzi pyramid in `out_dir`; returns the descriptor's
    facts (format, width, height, tile, levels, tiles written, tiles kept from a previous run).
    `url`: the address the xyz folder will be served at, for absolute URLs in tilejson.json."""
    url = _check_web_options(fmt, image, tile, url)
    store, out = Path(store), Path(out_dir)
    attrs = _check_store(store)
    height, width = (int(v) for v in attrs["size"])
    channels = int(attrs["channels"])
    settings = {"store": str(store.resolve()), "uid": attrs.get("uid", ""), "format": fmt,
                "image": image, "tile": tile}  # fmt: skip
    _prepare_folder(out, settings, overwrite)
    levels = levels_for(fmt, height, width, tile)
    cut = _block_cutter(out, fmt, image, tile, block_reader(store, attrs))
    jobs = []
    for fl, lv in levels:
        lh, lw = level_shape(height, width, lv)
        jobs += [(fl, lv, *b) for b in _blocks(lh, lw, tile)]
    n = threads or usable_cores()
    itemsize = 1 if attrs.get("dtype") == "uint8" else 2
    memory.require(memory.tiles_bytes(BLOCK, BLOCK, channels, itemsize, n), f"{fmt} tiles",
                   "use fewer threads")  # fmt: skip
    counts = _cut_blocks(cut, jobs, n, f"{fmt} tiles", progress, out)
    top = levels[0][0]
    facts = {"format": fmt, "width": width, "height": height, "tile": tile, "image": image,
             "levels": top + 1, "channels": channels, **counts}  # fmt: skip
    _write_descriptor(out, fmt, facts, store, url)
    return facts


def _check_web_options(fmt: str, image: str, tile: int, url: str | None) -> str | None:
    """--format, --image, --tile and --url of a web pyramid; returns the URL (ending in '/')."""
    if fmt not in WEB_FORMATS:
        raise UserError(f"--format {fmt}: use xyz or dzi for web tiles")
    if image not in IMAGE_TYPES:
        raise UserError(f"--image {image}: use png or jpg")
    if tile < 16 or tile > 4096 or (fmt == "xyz" and tile & (tile - 1)):
        raise UserError(
            f"--tile {tile}: web tiles are 16 .. 4096 pixels, a power of two for xyz (256 is usual)"
        )
    if url is not None and fmt != "xyz":
        raise UserError(f"--url is for --format xyz (the tile URLs in tilejson.json), not {fmt}")
    return check_url(url)


def _block_cutter(out: Path, fmt: str, image: str, tile: int, read) -> Callable:
    """job (folder level, store level, y, x, h, w) -> (pixels, tiles written, tiles kept from an
    earlier run): the block's tiles not on disk yet, encoded."""
    ext = IMAGE_TYPES[image]
    pad = tile if fmt == "xyz" else None

    def cut(job) -> tuple[int, int, int]:
        fl, lv, by, bx, bh, bw = job
        cells = [
            (by + r, bx + q)
            for r in range(0, bh, tile)
            for q in range(0, bw, tile)
        ]  # fmt: skip
        todo = [
            c
            for c in cells
            if not tile_path(out, fmt, fl, c[1] // tile, c[0] // tile, ext).is_file()
        ]
        if not todo:
            return bh * bw, 0, len(cells)
        data = read(lv, by, bx, bh, bw).transpose(1, 2, 0)
        for y, x in todo:
            piece = data[y - by : y - by + tile, x - bx : x - bx + tile]
            _encode(
                np.ascontiguousarray(piece),
                tile_path(out, fmt, fl, x // tile, y // tile, ext),
                image,
                pad,
            )
        return bh * bw, len(todo), len(cells) - len(todo)

    return cut


def _cut_blocks(cut, jobs: list, n: int, desc: str, progress: bool, out: Path) -> dict[str, int]:
    """Every block cut on `n` threads with a progress bar: {"written": tiles, "kept": tiles}."""
    counts = {"written": 0, "kept": 0}
    bar = Progress(sum(b[4] * b[5] for b in jobs), 0, desc, progress)
    try:
        for pixels, written, kept in ordered_map(cut, jobs, n, 2 * n):
            counts["written"] += written
            counts["kept"] += kept
            bar.advance(pixels)
    except OSError as e:
        raise UserError(
            f"cannot write {out}: {e.strerror or e}; fix this and rerun the same command to finish"
        )
    finally:
        bar.close()
    return counts


def check_url(url: str | None) -> str | None:
    """--url: the absolute http(s) address the xyz folder will be served at, ending in '/'."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UserError(
            f"--url {url}: give the absolute http(s) address the folder will be served at, "
            "e.g. https://example.com/maps/world_xyz/"
        )
    return url if url.endswith("/") else url + "/"


def mercator_view(width: int, height: int, tile: int, maxzoom: int) -> dict:
    """Where Web Mercator maps (MapLibre) draw the picture: its top-left pixel at the world's
    top-left corner (-180, 85.05), one image pixel per tile pixel at maxzoom. TileJSON's and
    PMTiles' `bounds` [west, south, east, north] and `center` [lon, lat, zoom] in degrees; the
    centre's zoom is the largest at which the whole picture fits 1024 screen pixels."""
    world = tile * 2**maxzoom

    def lon(x: float) -> float:
        return x / world * 360 - 180

    def lat(y: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / world))))

    fits = [z for z in range(maxzoom + 1) if max(width, height) * 2 ** (z - maxzoom) <= 1024]
    return {
        "bounds": [lon(0), lat(height), lon(width), lat(0)],
        "center": [lon(width / 2), lat(height / 2), max(fits, default=0)],
    }


def tilegen_block(facts: dict) -> dict:
    """The "tilegen" block of tilejson.json and of a PMTiles archive's metadata."""
    return {
        "width": facts["width"],
        "height": facts["height"],
        "tile_size": facts["tile"],
        "note": "pixel map, not geographic: zoom z shows the image at 2^(z - maxzoom), "
        "top-left at tile (0, 0); edge tiles padded, tiles outside the image absent",
    }


def _write_descriptor(
    out: Path, fmt: str, facts: dict, store: Path, url: str | None = None
) -> None:
    tile, ext = facts["tile"], facts["image"]
    if fmt == "xyz":
        maxzoom = facts["levels"] - 1
        doc = {
            "tilejson": "3.0.0",
            "name": store.stem,
            "scheme": "xyz",
            # TileJSON 3.0.0 wants absolute URLs, and map libraries resolve relative ones
            # against the page, not this file: --url gives the absolute form
            "tiles": [f"{url or ''}{{z}}/{{x}}/{{y}}.{ext}"],
            "minzoom": 0,
            "maxzoom": maxzoom,
            **mercator_view(facts["width"], facts["height"], tile, maxzoom),
            "tilegen": tilegen_block(facts),
        }
        text = json.dumps(doc, indent=1) + "\n"
    else:
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'TileSize="{tile}" Overlap="0" Format="{ext}">'
            f'<Size Width="{facts["width"]}" Height="{facts["height"]}"/></Image>\n'
        )
    write_atomic(out / DESCRIPTOR[fmt], text)
