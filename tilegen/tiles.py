"""Cutting a tilegen Zarr store into numbered image tiles for game engines and map tools.

    DIR/tile_r{row}_c{col}.png      row, col from 0 at the region's top-left, zero-padded to
                                    the same width (tile_r00_c07.png), row-major
    DIR/tiles.json                  the index: store, level, region, tile size, bits, and for
                                    every file its (y, x, h, w) in the level's pixels

Tiles are `tile` x `tile` pixels; the last row and column are smaller when the region is not a
multiple of the tile (never padded), so the tiles put side by side are exactly the region.
8-bit tiles from a 16-bit store are rounded to nearest (v * 255 / 65535); 16-bit tiles from an
8-bit store are exact (v * 257).

A material's store (tilegen/material.py) is cut into one file per map per tile,
DIR/tile_r{row}_c{col}_{map}.png (albedo, normal, roughness, height, ...), with normals in the
model's input convention; each map at the depth of its source map where the store holds it
(a 16-bit height from a uint16 store), or at --bits. tiles.json lists every tile's files under
"maps".
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from tilegen import memory, zarr_store
from tilegen.errors import UserError
from tilegen.grid import tiles
from tilegen.imageio import convert_bits, write_image
from tilegen.parallel import ordered_map
from tilegen.progress import Progress
from tilegen.threads import usable_cores

FORMATS = {"png": ".png", "tif": ".tif", "jpg": ".jpg"}
INDEX = "tiles.json"


def tile_name(row: int, col: int, rows: int, cols: int, ext: str) -> str:
    dr, dc = len(str(max(rows - 1, 0))), len(str(max(cols - 1, 0)))
    return f"tile_r{row:0{dr}d}_c{col:0{dc}d}{ext}"


TILE_NAME = re.compile(r"tile_r\d+_c\d+(_[a-z]+)?\.(png|tif|jpg)")


def our_tiles(out_dir: Path) -> list[Path]:
    """The files tilegen wrote in a tiles folder: those named as it names tiles, and its
    tiles.json; nothing else (tile_r0_c0.png.bak, or whatever a tiles.json found there lists)."""
    if not out_dir.is_dir():
        return []
    found = [f for f in out_dir.iterdir() if TILE_NAME.fullmatch(f.name) or f.name == INDEX]
    return sorted(f for f in found if f.is_file() and not f.is_symlink())


def cut_tiles(
    store: str | os.PathLike,
    out_dir: str | os.PathLike,
    tile: int = 2048,
    fmt: str = "png",
    bits: int | None = None,
    region: tuple[int, int, int, int] | None = None,
    level: int = 0,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the tiles and tiles.json; returns the index."""
    store = Path(store)
    attrs, arr = _open_level(store, fmt, tile, level)
    c, height, width = arr.shape
    explicit_bits = bits is not None
    bits = bits or (8 if arr.dtype == np.uint8 else 16)
    if bits not in (8, 16) or (fmt == "jpg" and bits != 8):
        raise UserError(f"--bits {bits}: use 8 or 16 (JPEG: 8)")
    y0, x0, h, w = region or (0, 0, height, width)
    if h < 1 or w < 1 or y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise UserError(
            f"--region {y0} {x0} {h} {w} is not inside level {level} ({height}x{width})"
        )
    rows, cols = -(-h // tile), -(-w // tile)
    at_once = min(threads or usable_cores(), rows * cols)
    itemsize = max(arr.dtype.itemsize, bits // 8)
    need = memory.tiles_bytes(min(tile, h), min(tile, w), c, itemsize, at_once)
    memory.require(need, f"cutting {tile}-pixel tiles ({at_once} at once)", "use a smaller --tile")
    out_dir = Path(out_dir)
    _clear_folder(out_dir, overwrite)
    layout = attrs.get("material")
    given_bits = bits if explicit_bits else None  # a material: each map's own, unless --bits
    cut = _tile_cutter(store, out_dir, level, rows, cols, fmt, bits, layout, given_bits)
    files = _cut_all(cut, tiles(y0, x0, h, w, tile), h * w, threads, progress)
    index = {
        "store": str(store),
        "level": level,
        "region": [y0, x0, h, w],
        "tile": tile,
        "rows": rows,
        "cols": cols,
        "bits": bits,
        "channels": c,
        "format": fmt,
        "files": files,
    }
    if layout is not None:
        index["material"] = layout
    (out_dir / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return index


def _open_level(store: Path, fmt: str, tile: int, level: int):
    """(the store's attributes, level `level` to read) of a complete store, the options checked."""
    attrs, spec = zarr_store.open_store(store)  # one line for anything not a tilegen store
    if not attrs.get("complete"):
        raise UserError(
            f"{store} is incomplete (its generate run did not finish): rerun that generate "
            "command to complete it, then cut the tiles"
        )
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: use png, tif or jpg (or xyz, dzi for web maps)")
    if tile < 1:
        raise UserError(f"--tile {tile}: must be positive")
    if not 0 <= level < len(spec.level_shapes()):
        raise UserError(f"--level {level}: {store} has levels 0 .. {len(spec.level_shapes()) - 1}")
    zarr_store.damaged_shards(store, spec, [level])
    return attrs, zarr_store.open_level(store, level, "r")


def _clear_folder(out_dir: Path, overwrite: bool) -> None:
    """Make the tiles folder, removing the tiles of an earlier run (only with --overwrite)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a folder")
    ours = our_tiles(out_dir)
    if ours and not overwrite:
        raise UserError(f"{out_dir} already holds tiles: pass --overwrite or choose another -o")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in ours:  # a smaller grid must not leave the last run's tiles beside the new index
            f.unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {out_dir}: {e.strerror or e}")


def _tile_cutter(store, out_dir, level, rows, cols, fmt, bits, layout, given_bits):
    """job (row, col, y, x, h, w) -> its tiles.json entry, the tile's file(s) written."""
    ext = FORMATS[fmt]

    def cut(job):
        r, q, y, x, th, tw = job
        data = zarr_store.read_region(str(store), level, y, x, th, tw)
        name = tile_name(r, q, rows, cols, ext)
        entry = {"file": name, "row": r, "col": q, "y": y, "x": x, "h": th, "w": tw}
        if layout is not None:
            entry["maps"] = write_material_tile(out_dir, name, data, layout, given_bits, fmt)
            entry["file"] = next(iter(entry["maps"].values()))
            return entry
        write_image(out_dir / name, convert_bits(data, bits).transpose(1, 2, 0), bits)
        return entry

    return cut


def _cut_all(cut, jobs, pixels: int, threads: int | None, progress: bool) -> list[dict]:
    """Every job's entry, in order, cut on `threads` threads with a progress bar."""
    bar = Progress(pixels, 0, "tiles", progress)
    files = []
    pieces = ordered_map(cut, jobs, threads or usable_cores(), 2 * (threads or usable_cores()))
    try:
        for entry in pieces:
            files.append(entry)
            bar.advance(entry["h"] * entry["w"])
    finally:
        pieces.close()  # tiles being written finish whole before an error or Ctrl-C is reported
        bar.close()
    return files


def write_material_tile(
    out_dir: Path, name: str, data: np.ndarray, layout: dict, bits: int | None, fmt: str
) -> dict[str, str]:
    """One tile of a material store as one file per map: {role: file name}. Normals are flipped
    back to DirectX when the model's input was DirectX; each map at `bits`, or at the lesser of
    the store's depth and its source map's."""
    from tilegen.material import spans

    store_bits = 8 if data.dtype == np.uint8 else 16
    source = {m["role"]: m.get("bits", 8) for m in layout["maps"]}
    stem, ext = name.rsplit(".", 1)
    out = {}
    for role, a, b in spans(layout):
        want = bits or (8 if fmt == "jpg" else min(store_bits, source[role]))
        pixels = convert_bits(data[a:b], want).transpose(1, 2, 0)
        if role == "normal" and layout.get("normal") == "dx":  # flip_green, exact on levels
            pixels = pixels.copy()
            pixels[:, :, 1] = (255 if want == 8 else 65535) - pixels[:, :, 1]
        file = f"{stem}_{role}.{ext}"
        write_image(out_dir / file, pixels, want)
        out[role] = file
    return out
