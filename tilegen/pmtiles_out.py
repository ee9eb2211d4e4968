"""A tilegen store as one PMTiles v3 archive: the xyz pyramid of tilegen/webtiles.py (same zoom,
x, y and the same PNG/JPEG bytes) in a single file that static hosting serves with HTTP range
requests and map pages read with the `pmtiles` JavaScript package (MapLibre's pmtiles://
protocol, Leaflet's leafletRasterLayer).

    OUT.pmtiles    header (tile type png/jpg, zooms 0 .. maxzoom, the bounds and centre where Web
                   Mercator maps draw the picture), directories, metadata {"name", "format",
                   "tilegen": the tilejson block (width, height, tile_size, note)}, tile data

Tiles are cut from the store's pyramid in blocks, several at once, and handed to the `pmtiles`
package's writer in tile-id order (zoom by zoom, Hilbert order within a zoom: blocks are aligned
power-of-two squares of tiles, which the Hilbert curve visits whole), so the archive is
clustered. The writer streams tile data to an unnamed temporary file beside OUT (never /tmp,
which may be small) and keeps one directory entry per tile in memory (about 0.22 KB per tile,
measured: a 1-gigapixel store's 22 000 tiles take 5 MB), then copies the data after the
directories, so the disk needs twice the archive's size for a moment.
Everything goes to a hidden OUT's-name.partial that is renamed at the end: an interrupted run
leaves no file (rerun the same command; an archive is not resumable). An existing OUT is replaced
only with --overwrite and only when it is a PMTiles archive that tilegen wrote.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from tilegen.errors import Interrupted, UserError, os_error_text
from tilegen.parallel import ordered_map
from tilegen.progress import Progress
from tilegen.threads import usable_cores
from tilegen.webtiles import (
    IMAGE_TYPES,
    _blocks,
    _check_store,
    block_reader,
    encode_tile,
    level_shape,
    levels_for,
    mercator_view,
    tilegen_block,
)

SUFFIX = ".pmtiles"
MAX_METADATA = 1 << 20  # an archive whose metadata is larger is not one tilegen wrote


def _is_ours(path: Path) -> bool:
    """True for a PMTiles v3 archive whose metadata holds a "tilegen" block; reads the 127-byte
    header and the (bounded) metadata only."""
    from pmtiles.tile import Compression, deserialize_header

    try:
        with open(path, "rb") as f:
            head = f.read(127)
            if len(head) < 127 or not head.startswith(b"PMTiles\x03"):
                return False
            h = deserialize_header(head)
            if not 0 < h["metadata_length"] <= MAX_METADATA:
                return False
            f.seek(h["metadata_offset"])
            meta = f.read(h["metadata_length"])
        if h["internal_compression"] == Compression.GZIP:
            meta = gzip.decompress(meta)
        return isinstance(json.loads(meta).get("tilegen"), dict)
    except (OSError, ValueError, EOFError, KeyError, AttributeError, gzip.BadGzipFile):
        return False


def _check_output(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != SUFFIX:
        raise UserError(f"-o {out}: a PMTiles archive is one file; name it {out.stem}{SUFFIX}")
    if out.is_dir():
        raise UserError(f"-o {out}: is a folder; a PMTiles archive is one file")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise UserError(f"{out} already exists: pass --overwrite to replace it")
        if out.is_symlink():
            raise UserError(f"{out} is a link: tilegen never replaces it; choose another -o")
        if not _is_ours(out):
            raise UserError(
                f"{out} is not a PMTiles archive written by tilegen: tilegen never replaces it, "
                "even with --overwrite; choose another -o"
            )
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: the folder {out.parent} does not exist")


def _jobs(height: int, width: int, tile: int) -> list[tuple[int, int, int, int, int, int]]:
    """(zoom, downsampling level, y, x, h, w) blocks, zoom 0 first, each zoom's blocks in the
    tile-id order of their first tile (blocks are aligned 2^k x 2^k tiles: Hilbert-contiguous)."""
    from pmtiles.tile import zxy_to_tileid

    jobs = []
    for z, lv in reversed(levels_for("xyz", height, width, tile)):
        blocks = _blocks(*level_shape(height, width, lv), tile)
        blocks = sorted(blocks, key=lambda b: zxy_to_tileid(z, b[1] // tile, b[0] // tile))
        jobs += [(z, lv, *b) for b in blocks]
    return jobs


def write_pmtiles(
    store: str | os.PathLike,
    out_file: str | os.PathLike,
    image: str = "png",
    tile: int = 256,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Write a finished store's xyz pyramid as one PMTiles archive; returns its facts (format,
    width, height, tile, image, levels, channels, tiles, bytes)."""
    from pmtiles.tile import zxy_to_tileid
    from pmtiles.writer import Writer

    if image not in IMAGE_TYPES:
        raise UserError(f"--image {image}: use png or jpg")
    if tile < 16 or tile > 4096 or tile & (tile - 1):
        raise UserError(
            f"--tile {tile}: PMTiles tiles are a power of two, 16 .. 4096 (256 is usual)"
        )
    store, out = Path(store), Path(out_file)
    attrs = _check_store(store)
    _check_output(out, overwrite)
    height, width = (int(v) for v in attrs["size"])
    read = block_reader(store, attrs)
    jobs = _jobs(height, width, tile)
    maxzoom = jobs[-1][0]

    def cut(job) -> tuple[int, list[tuple[int, bytes]]]:
        """(pixels, [(tile id, encoded tile)] in tile-id order) of one block."""
        z, lv, by, bx, bh, bw = job
        data = read(lv, by, bx, bh, bw).transpose(1, 2, 0)
        tiles = []
        for y in range(0, bh, tile):
            for x in range(0, bw, tile):
                piece = np.ascontiguousarray(data[y : y + tile, x : x + tile])
                tid = zxy_to_tileid(z, (bx + x) // tile, (by + y) // tile)
                tiles.append((tid, encode_tile(piece, image, tile)))
        return bh * bw, sorted(tiles)

    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    n = threads or usable_cores()
    bar = Progress(sum(j[4] * j[5] for j in jobs), 0, "pmtiles", progress)
    count = 0
    try:
        with open(tmp, "wb") as f:
            writer = Writer(f)
            writer.tile_f.close()  # its tile data goes beside OUT, not to a small /tmp
            writer.tile_f = tempfile.TemporaryFile(dir=out.parent)
            try:
                for pixels, tiles in ordered_map(cut, jobs, n, 2 * n):
                    for tid, data in tiles:
                        writer.write_tile(tid, data)
                    count += len(tiles)
                    bar.advance(pixels)
                view = mercator_view(width, height, tile, maxzoom)
                facts = {"format": "pmtiles", "width": width, "height": height, "tile": tile,
                         "image": image, "levels": maxzoom + 1,
                         "channels": int(attrs["channels"])}  # fmt: skip
                writer.finalize(_header(image, view), _metadata(store, facts))
            finally:
                writer.tile_f.close()
        os.replace(tmp, out)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted: {out} was not written; rerun the same command")
        if isinstance(e, OSError):
            raise UserError(os_error_text(e, out))
        raise
    finally:
        bar.close()
    return {**facts, "tiles": count, "bytes": out.stat().st_size}


def _header(image: str, view: dict) -> dict:
    from pmtiles.tile import Compression, TileType

    (west, south, east, north), (lon, lat, zoom) = view["bounds"], view["center"]

    def e7(v: float) -> int:
        return int(round(v * 1e7))

    return {
        "tile_type": TileType.PNG if image == "png" else TileType.JPEG,
        "tile_compression": Compression.NONE,  # PNG and JPEG are compressed already
        "min_lon_e7": e7(west),
        "min_lat_e7": e7(south),
        "max_lon_e7": e7(east),
        "max_lat_e7": e7(north),
        "center_zoom": zoom,
        "center_lon_e7": e7(lon),
        "center_lat_e7": e7(lat),
    }


def _metadata(store: Path, facts: dict) -> dict:
    return {
        "name": store.stem,
        "format": facts["image"],
        "type": "baselayer",
        "description": f"tilegen texture {facts['width']}x{facts['height']}",
        "tilegen": tilegen_block(facts),
    }
