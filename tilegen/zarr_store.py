"""The output store: a Zarr v3 OME-NGFF 0.5 image, written shard by shard, resumable.

Layout (OUT.zarr/):

    zarr.json            group; attributes "ome" (OME-NGFF 0.5 multiscales + omero) and
                         "tilegen" (model hash, seed, size, settings: what a rerun must match)
    0/                   full resolution, planar (c, y, x), uint8 or uint16
    1/, 2/, ...          pyramid levels, each 2x2-mean downsampled from the one above
                         (ceil sizes; edge pixels average what exists)

    .tilegen/            the ledger (tilegen/ledger.py): the settings as written, the writer's
                         lock, and a size + hash record per finished shard

Every array is sharded; a shard is one file, written whole by one task (zarr's LocalStore writes
through a temporary `*.partial` file and a rename), with `write_empty_chunks=True`. A shard is
done when its ledger record matches its file: resume = render the shards that are missing or
damaged. A path that is not a tilegen store is never deleted, even with --overwrite, and in a
store only what the ledger records is.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tilegen import __version__, ledger
from tilegen.errors import UserError
from tilegen.grid import grid_shape, tiles

OME_NGFF_VERSION = "0.5"
STORE_FORMAT = 2  # version of the "tilegen" attribute block (2: the store keeps a ledger)
MAX_SIDE = 1 << 40  # pixels; sizes beyond are metadata that lies
CODECS = ("zstd", "blosc")
DTYPES = ("uint8", "uint16")
_COLORS = {"R": "FF0000", "G": "00FF00", "B": "0000FF", "A": "FFFFFF", "L": "FFFFFF"}


@dataclass(frozen=True)
class StoreSpec:
    """Everything that decides a store's bytes (a rerun must match all of it)."""

    height: int
    width: int
    channels: int
    seed: int
    model_sha256: str
    period: tuple[int, int] | None = None
    dtype: str = "uint8"
    chunk: int = 512
    shard: int = 4096
    codec: str = "zstd"
    pyramid: bool = True
    channel_names: str = "RGB"  # one letter per channel, or comma-separated labels (a material)
    material: dict | None = None  # a material model's layout: what `tiles` writes one file per
    world: dict | None = None  # a world's layout, legend and models (tilegen/world.py)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise UserError(f"--size {self.height} {self.width}: both sides must be positive")
        if self.dtype not in DTYPES:
            raise UserError(f"--dtype {self.dtype}: use uint8 or uint16")
        if self.codec not in CODECS:
            raise UserError(f"--codec {self.codec}: use zstd or blosc")
        if self.chunk < 16 or self.shard < self.chunk or self.shard % self.chunk:
            raise UserError(
                f"--chunk {self.chunk} --shard {self.shard}: the chunk must be at least 16 "
                "and the shard a multiple of the chunk"
            )

    def level_shapes(self) -> list[tuple[int, int]]:
        """(height, width) of level 0 and of each pyramid level, halving (ceil) until the image
        fits in one chunk."""
        shapes = [(self.height, self.width)]
        while self.pyramid and max(shapes[-1]) > self.chunk:
            h, w = shapes[-1]
            shapes.append(((h + 1) // 2, (w + 1) // 2))
        return shapes

    def level_shard(self, level: int) -> tuple[int, int]:
        """Shard (height, width) of a level: the shard size, shrunk to the level (in chunks)."""
        h, w = self.level_shapes()[level]
        c = self.chunk
        return min(self.shard, math.ceil(h / c) * c), min(self.shard, math.ceil(w / c) * c)

    def shard_regions(self, level: int) -> Iterator[tuple[int, int, int, int]]:
        """Every shard of a level as (y0, x0, h, w), clipped to the level, row-major (lazily:
        a level of 10^12 shards is never listed)."""
        h, w = self.level_shapes()[level]
        sh, sw = self.level_shard(level)
        return (t[2:] for t in tiles(0, 0, h, w, sh, sw))

    def raw_bytes(self) -> int:
        """Uncompressed bytes of every level's pixels."""
        item = 1 if self.dtype == "uint8" else 2
        return sum(h * w for h, w in self.level_shapes()) * self.channels * item

    def shard_count(self, level: int) -> int:
        h, w = self.level_shapes()[level]
        rows, cols = grid_shape(0, 0, h, w, *self.level_shard(level))
        return rows * cols

    def settings(self) -> dict:
        """The attribute block that identifies the store's content."""
        d = asdict(self)
        d["period"] = list(self.period) if self.period else None
        d["size"] = [d.pop("height"), d.pop("width")]
        d["levels"] = len(self.level_shapes())
        for key in ("material", "world"):  # stores of one model keep the attributes they had
            if d[key] is None:
                del d[key]
        return d

    def labels(self) -> list[str]:
        """One label per channel: "R", "G", "B"; "albedo.r", ..., "height" (a material); or
        c0, c1, ... when the names do not fit the channel count."""
        names = self.channel_names
        split = names.split(",") if "," in names else list(names)
        return split if len(split) == self.channels else [f"c{c}" for c in range(self.channels)]


def _int(attrs: dict, key: str, lo: int, hi: int) -> int:
    v = attrs.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{key} {json.dumps(v)}")
    return v


def spec_from_attrs(attrs: dict, source: str | os.PathLike = "store") -> StoreSpec:
    """The StoreSpec a store's "tilegen" block describes, every value checked for type and range
    (a hand-edited or foreign block is a one-line UserError, never a wrong tile)."""
    try:
        size = attrs.get("size")
        if not (isinstance(size, list) and len(size) == 2):
            raise ValueError(f"size {json.dumps(size)}")
        height, width = (_int({"size": v}, "size", 1, MAX_SIDE) for v in size)
        period = attrs.get("period")
        if period is not None:
            if not (isinstance(period, list) and len(period) == 2):
                raise ValueError(f"period {json.dumps(period)}")
            period = tuple(_int({"period": v}, "period", 1, MAX_SIDE) for v in period)
        for key, kind in (("model_sha256", str), ("channel_names", str), ("pyramid", bool)):
            if not isinstance(attrs.get(key), kind):
                raise ValueError(f"{key} {json.dumps(attrs.get(key))}")
        material, world = attrs.get("material"), attrs.get("world")
        for key, value in (("material", material), ("world", world)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{key} {json.dumps(value)}")
        spec = StoreSpec(
            height=height,
            width=width,
            channels=_int(attrs, "channels", 1, 64),
            seed=_int(attrs, "seed", 0, 2**32 - 1),
            model_sha256=attrs["model_sha256"],
            period=period,
            dtype=attrs.get("dtype"),
            chunk=_int(attrs, "chunk", 16, 1 << 16),
            shard=_int(attrs, "shard", 16, 1 << 20),
            codec=attrs.get("codec"),
            pyramid=attrs["pyramid"],
            channel_names=attrs["channel_names"],
            material=material,
            world=world,
        )
        if attrs.get("levels") != len(spec.level_shapes()):
            raise ValueError(f"levels {json.dumps(attrs.get('levels'))}")
    except (ValueError, UserError) as e:
        raise UserError(
            f"{source}: its tilegen metadata does not describe a store tilegen writes ({e}): "
            "restore it, or generate the store again with --overwrite"
        )
    return spec


def check_arrays(path: str | os.PathLike, spec: StoreSpec) -> None:
    """UserError unless every level's array metadata is what tilegen creates for `spec` (shape,
    type, shards and chunks): an edited shape would read the wrong pixels silently."""
    for level, (h, w) in enumerate(spec.level_shapes()):
        meta_path = Path(path) / str(level) / "zarr.json"
        try:
            meta = json.loads(meta_path.read_text())
            shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
            inner = meta["codecs"][0]["configuration"]["chunk_shape"]
            have = (meta["shape"], meta["data_type"], shard, inner)
        except FileNotFoundError:
            raise UserError(f"{path} has no pyramid level {level}: generate it again")
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise UserError(f"{meta_path} is not an array tilegen wrote ({e})")
        c = spec.channels
        want = ([c, h, w], spec.dtype, [c, *spec.level_shard(level)], [c, spec.chunk, spec.chunk])
        if list(have) != list(want):
            raise UserError(
                f"{meta_path} was edited (shape, type or chunks {have}, tilegen wrote {want}): "
                "generate the store again with --overwrite"
            )


def open_store(path: str | os.PathLike) -> tuple[dict, StoreSpec]:
    """A store to read (tiles, web tiles, view): its "tilegen" block and its spec, checked
    against the ledger and the arrays' metadata."""
    attrs = read_attrs(path)
    ledger.check_settings(path, _settings_block(attrs))
    spec = spec_from_attrs(attrs, path)
    check_arrays(path, spec)
    return attrs, spec


def damaged_shards(path: str | os.PathLike, spec: StoreSpec, levels: list[int]) -> None:
    """Read the shards of `levels` back against their records; a one-line UserError naming
    the first missing or damaged one (it would read as black or fail in zarr)."""
    if not (ledger.ledger_dir(path) / ledger.SETTINGS).is_file():
        return  # an older tilegen's store: no records to check against
    for level in levels:
        rows, cols = grid_shape(0, 0, *spec.level_shapes()[level], *spec.level_shard(level))
        good, bad = ledger.verify_level(path, level, rows, cols)
        missing = rows * cols - len(good) - len(bad)
        if bad or missing:
            first = next(iter(bad.items())) if bad else (_first_missing(good, cols), "missing")
            (yi, xi), what = first
            raise UserError(
                f"{path}: shard {level}/c/0/{yi}/{xi} is damaged ({what}; {len(bad) + missing} "
                "in all): rerun the generate command that wrote the store to repair it"
            )


def _first_missing(good: set[tuple[int, int]], cols: int) -> tuple[int, int]:
    i = 0
    while (i // cols, i % cols) in good:
        i += 1
    return i // cols, i % cols


def _settings_block(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k != "complete"}


def is_tilegen_store(path: str | os.PathLike) -> bool:
    meta = Path(path) / "zarr.json"
    try:
        return "tilegen" in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False


def read_attrs(path: str | os.PathLike) -> dict:
    """The store's "tilegen" attribute block (UserError if it is not a tilegen store)."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a tilegen Zarr store ({e})")
    if "tilegen" not in attrs:
        raise UserError(f"{path} is not a tilegen Zarr store (no tilegen attributes)")
    return attrs["tilegen"]


def shown(attrs: dict) -> slice:
    """The channels a picture of the store shows: a material's albedo (its first three: the
    other maps are not colours), else all of them. For `view` and web tiles."""
    return slice(0, 3) if attrs.get("material") else slice(None)


def multiscales_metadata(spec: StoreSpec, name: str = "tilegen") -> dict:
    """The "ome" attribute block, OME-NGFF 0.5: axes c (channel), y, x (space); one dataset per
    level with its scale (2^level in y and x); omero channel names, colours and display range."""
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, float(2**level), float(2**level)]}
            ],
        }
        for level in range(len(spec.level_shapes()))
    ]
    top = 255 if spec.dtype == "uint8" else 65535
    labels = spec.labels()
    colour = {"albedo.r": "FF0000", "albedo.g": "00FF00", "albedo.b": "0000FF"} | _COLORS
    omero_channels = [
        {
            "label": label,
            "color": colour.get(label, "FFFFFF"),
            # A material shows its albedo: the other maps are there, switched off.
            "active": spec.material is None or label.startswith("albedo."),
            "window": {"min": 0, "max": top, "start": 0, "end": top},
        }
        for label in labels
    ]
    multiscale = {
        "name": name,
        "axes": axes,
        "datasets": datasets,
        "type": "2x2 mean",
        "metadata": {"method": "tilegen.zarr_store.downsample2x", "version": __version__},
    }
    return {
        "version": OME_NGFF_VERSION,
        "multiscales": [multiscale],
        "omero": {"channels": omero_channels, "rdefs": {"model": "color"}},
    }


def write_metadata(
    group, spec: StoreSpec, name: str, complete: bool = False, uid: str | None = None
) -> str:
    """Write the group's attributes (OME-NGFF + tilegen block); returns the OME-NGFF version
    followed ("0.5"). `uid` is new for every store created (kept when rewritten)."""
    uid = uid or group.attrs.get("tilegen", {}).get("uid") or uuid.uuid4().hex
    block = _block(spec, name, complete, uid)
    group.attrs.update({"ome": multiscales_metadata(spec, name), "tilegen": block})
    return OME_NGFF_VERSION


def _block(spec: StoreSpec, name: str, complete: bool, uid: str) -> dict:
    """The "tilegen" attribute block (JSON types, as zarr.json will hold it)."""
    block = {"format": STORE_FORMAT, "version": __version__, "model": name, **spec.settings(),
             "complete": complete, "uid": uid}  # fmt: skip
    return json.loads(json.dumps(block))


def _compressors(codec: str, dtype: str):
    from zarr.codecs import BloscCodec, ZstdCodec

    # Level 1: textures are noise-like, higher levels cost twice the time for ~0.1% smaller.
    if codec == "blosc":
        size = 1 if dtype == "uint8" else 2
        return [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", typesize=size)]
    return [ZstdCodec(level=1)]


def _ensure_arrays(group, spec: StoreSpec) -> None:
    """Create the level arrays that do not exist yet (creation is idempotent, for resume)."""
    for level, (h, w) in enumerate(spec.level_shapes()):
        if str(level) in group:
            continue
        sh, sw = spec.level_shard(level)
        group.create_array(
            str(level),
            shape=(spec.channels, h, w),
            chunks=(spec.channels, spec.chunk, spec.chunk),
            shards=(spec.channels, sh, sw),
            dtype=spec.dtype,
            compressors=_compressors(spec.codec, spec.dtype),
            fill_value=0,
            dimension_names=["c", "y", "x"],
            config={"write_empty_chunks": True},
        )


def _mismatch(old: dict, new: dict) -> str | None:
    for key, value in new.items():
        if old.get(key) != value:
            return f"{key} {json.dumps(old.get(key))}, this run {json.dumps(value)}"
    return None


def remove_partials(path: str | os.PathLike) -> int:
    """Delete the temporary files a killed run's zarr writes left inside the store (named as
    zarr names them, nothing else); returns how many."""
    n = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            if ledger.ZARR_PARTIAL.fullmatch(f):
                os.unlink(os.path.join(root, f))
                n += 1
    return n


def _ours_or_empty(path: Path) -> bool:
    """An empty folder, a tilegen store, or a store begun by tilegen (a ledger, perhaps an empty
    group: a run that stopped between taking the lock and writing the metadata)."""
    names = {p.name for p in path.iterdir()}
    started = ledger.LEDGER in names and names <= {ledger.LEDGER, "zarr.json"}
    return not names or started or is_tilegen_store(path)


def claim(path: str | os.PathLike) -> ledger.StoreLock:
    """Take the store's writer lock (creating the folder), or a one-line UserError: another run
    writes it, or the path is not a tilegen store (which is never touched)."""
    path = Path(path)
    try:
        if path.exists() or path.is_symlink():
            if path.is_symlink() or not path.is_dir() or not _ours_or_empty(path):
                what = "folder" if path.is_dir() else "file"
                raise UserError(
                    f"{path} exists and is not a tilegen store (a {what}): tilegen never deletes "
                    "it, even with --overwrite; remove it yourself or choose another -o"
                )
        path.mkdir(parents=True, exist_ok=True)
        return ledger.StoreLock(path).acquire()
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")


def prepare(path: str | os.PathLike, spec: StoreSpec, name: str, overwrite: bool) -> str:
    """Create the store, or reopen a matching one to resume (the caller holds its lock, `claim`).
    Returns "new", "resume" or "complete". A mismatching or edited tilegen store is refused unless
    `overwrite`, which deletes what tilegen wrote there and nothing else."""
    import zarr

    path = Path(path)
    state = "new"
    try:
        if is_tilegen_store(path):
            old = read_attrs(path)
            if int(old.get("format", 1)) > STORE_FORMAT and not overwrite:
                raise UserError(f"{path} was written by a newer tilegen: upgrade tilegen")
            if overwrite:
                remove_store(path, old)
            else:
                ledger.check_settings(path, _settings_block(old))
                diff = _mismatch(old, spec.settings())
                if diff:
                    raise UserError(
                        f"{path} holds another texture ({diff}): pass --overwrite to replace "
                        "it, or choose another -o"
                    )
                check_arrays(path, spec)
                state = "complete" if old.get("complete") else "resume"
        if state == "new":
            # "a", not "w": zarr's "w" empties the whole folder, files of the user's included.
            group = zarr.open_group(str(path), mode="a", zarr_format=3)
            uid = uuid.uuid4().hex
            ledger.write_settings(path, _settings_block(_block(spec, name, False, uid)))
            write_metadata(group, spec, name, uid=uid)  # the marker last: the ledger is first
        else:
            remove_partials(path)
            group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        _ensure_arrays(group, spec)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")
    return state


def remove_store(path: Path, attrs: dict) -> None:
    """Delete what tilegen wrote in a store (the shards its ledger records, its levels' metadata,
    zarr's temporary files) and nothing else: a file the user put inside the folder stays."""
    try:
        spec = spec_from_attrs(attrs, path)
    except UserError:  # metadata too damaged to know the grid: remove the records' shards only
        spec = None
    legacy = not (ledger.ledger_dir(path) / ledger.SETTINGS).is_file()
    levels = []
    for level in range(len(spec.level_shapes()) if spec else 64):
        rows, cols = (grid_shape(0, 0, *spec.level_shapes()[level], *spec.level_shard(level))
                      if spec else (1 << 40, 1 << 40))  # fmt: skip
        levels.append((level, rows, cols))
    ledger.remove_recorded(path, levels, legacy=legacy and spec is not None)
    (path / "zarr.json").unlink(missing_ok=True)


def mark_complete(path: str | os.PathLike, spec: StoreSpec, name: str, done: bool = True) -> None:
    """Set the store's "complete" flag (False while damaged shards are being repaired)."""
    import zarr

    write_metadata(zarr.open_group(str(path), mode="r+", zarr_format=3), spec, name, done)


def done_regions(
    path: str | os.PathLike, spec: StoreSpec, level: int, threads: int = 2
) -> tuple[set[tuple[int, int]], dict[tuple[int, int], str]]:
    """((y0, x0) of the shards of a level that are done, {(y0, x0): what is wrong} of those
    whose file no longer matches its record). Read from the ledger and the shard files, so the
    cost follows the shards written, not the shards of the level."""
    sh, sw = spec.level_shard(level)
    rows, cols = grid_shape(0, 0, *spec.level_shapes()[level], sh, sw)
    good, bad = ledger.verify_level(path, level, rows, cols, threads)
    return {(y * sh, x * sw) for y, x in good}, {(y * sh, x * sw): v for (y, x), v in bad.items()}


# --- reading and writing pixels (inside tasks; arrays cached per process) ---------------------

_ARRAYS: dict[tuple[str, int, str, str], object] = {}


def open_level(path: str | os.PathLike, level: int = 0, mode: str = "r", uid: str | None = None):
    """The zarr array of a level, cached per process by (path, level, mode, store uid): a store
    deleted and recreated under the same path (--overwrite) has a new uid. Tasks pass the uid;
    None reads it from the store."""
    import zarr

    if uid is None:
        uid = read_attrs(path).get("uid", "")
    key = (str(path), level, mode, uid)
    arr = _ARRAYS.get(key)
    if arr is None:
        try:
            arr = zarr.open_array(
                str(Path(path) / str(level)),
                mode=mode,
                zarr_format=3,
                config={"write_empty_chunks": True},
            )
        except (FileNotFoundError, ValueError, KeyError) as e:
            raise UserError(f"{path} has no pyramid level {level} ({e})")
        if len(_ARRAYS) > 64:
            _ARRAYS.clear()
        _ARRAYS[key] = arr
    return arr


def write_region(path: str, level: int, y0: int, x0: int, data: np.ndarray, uid: str = "") -> None:
    """Write (C, h, w) at (y0, x0): callers pass whole shards only."""
    arr = open_level(path, level, "r+", uid)
    arr[:, y0 : y0 + data.shape[1], x0 : x0 + data.shape[2]] = data


def read_region(
    path: str, level: int, y0: int, x0: int, h: int, w: int, uid: str | None = None
) -> np.ndarray:
    return np.asarray(open_level(path, level, "r", uid)[:, y0 : y0 + h, x0 : x0 + w])


def downsample2x(src: np.ndarray) -> np.ndarray:
    """2x2 mean of (C, h, w) integers, rounding half up; odd edges average the pixels that exist
    (the edge row/column is repeated). Output (C, ceil(h/2), ceil(w/2)), same dtype."""
    c, h, w = src.shape
    if h % 2 or w % 2:
        src = np.pad(src, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    acc = np.uint16 if src.dtype == np.uint8 else np.uint32  # 4 * 255 fits in 16 bits
    total = src[:, 0::2, 0::2].astype(acc)
    total += src[:, 1::2, 0::2]
    total += src[:, 0::2, 1::2]
    total += src[:, 1::2, 1::2]
    total += 2
    total >>= 2
    return total.astype(src.dtype)


def downsample_region(
    path: str, level: int, y0: int, x0: int, h: int, w: int, uid: str | None = None
) -> np.ndarray:
    """Pixels [y0, y0+h) x [x0, x0+w) of `level` (>= 1), computed from level-1 in row strips
    so that memory stays about one target shard."""
    src = open_level(path, level - 1, "r", uid)
    _, sh, sw = src.shape
    out = None
    for t in tiles(y0, x0, h, w, 256, w):  # row strips of 256
        ty, th = t.y, t.h
        block = np.asarray(src[:, 2 * ty : min(2 * (ty + th), sh), 2 * x0 : min(2 * (x0 + w), sw)])
        piece = downsample2x(block)
        if out is None:
            out = np.empty((block.shape[0], h, w), block.dtype)
        out[:, ty - y0 : ty - y0 + th] = piece[:, :th, :w]
    return out
