"""generate's single-file outputs: one PNG or TIFF rendered on threads (small images whole, large
TIFFs tiled BigTIFF from an iterator)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tilegen import memory
from tilegen.errors import Interrupted, UserError, os_error_text
from tilegen.grid import grid_shape, tiles
from tilegen.imageio import SOFTWARE, remove_quietly, write_image
from tilegen.model import open_model, render_region
from tilegen.parallel import ordered_map
from tilegen.planning import plan_threads
from tilegen.progress import Progress
from tilegen.threads import usable_cores
from tilegen.tiler import GenerateConfig, Summary, check_disk, effective_period, task_bytes

PNG_MAX_MP = 256  # beyond this, a single PNG is impractical: write .zarr or a tiled .tif
TIFF_STRIPE_MP = 64  # above this a .tif is written tiled from an iterator (BigTIFF)
TIFF_TILE = 1024


def generate_image(cfg: GenerateConfig) -> Summary:
    """Write a PNG or TIFF (small images whole, large TIFFs tiled BigTIFF from an iterator)."""
    out = Path(cfg.output)
    cfg.check()
    h, w = cfg.size
    regions, tile = _regions(cfg, out)
    parallel = 1 if cfg.scheduler == "sync" else (cfg.threads or usable_cores())
    tasks, ort = plan_threads(len(regions), parallel)
    model = open_model(str(Path(cfg.model).resolve()), ort, cfg.device)
    if model.info.material is not None:
        raise UserError(
            f"-o {out.name}: a material model writes a .zarr store (its maps' channels, "
            "labelled); then 'tilegen tiles STORE -o DIR' writes one file per map"
        )
    period = effective_period(model, cfg.period)
    c = model.info.out_channels
    tiled = _check_room(cfg, out, c, tasks, tile)
    cfg.log(
        f"{h}x{w} {cfg.dtype}, seed {cfg.seed}{', periodic' if period else ''}; "
        f"{tasks} threads, onnxruntime {model.providers[0]}, {ort} intra-op threads each"
    )
    render = _painter(cfg, model, ort, period)
    t0 = time.perf_counter()
    _write(cfg, out, c, tile, tiled, regions, render, tasks)
    dt = time.perf_counter() - t0
    return Summary(
        "new",
        len(regions),
        0,
        len(regions),
        h * w / 1e6,
        dt,
        {model.providers[0]},
        f"{tasks} threads",
        ort,
        1,
    )


def _regions(cfg: GenerateConfig, out: Path) -> tuple[list[tuple[int, int, int, int]], int]:
    """The (y, x, h, w) pieces the image is rendered in, row-major, and their side; refuses an
    image too large for one file and a scheduler other than threads."""
    h, w = cfg.size
    mp = h * w / 1e6
    if out.suffix.lower() == ".png" and mp > PNG_MAX_MP:
        raise UserError(
            f"{h}x{w} is too large for one PNG ({mp:.0f} MP > {PNG_MAX_MP}): write a .zarr "
            "store or a tiled .tif, then 'tilegen tiles' for PNG tiles"
        )
    if cfg.scheduler not in ("threads", "sync"):
        raise UserError(f"-o {out.name}: PNG/TIFF outputs are rendered locally (threads)")
    tile = cfg.tile or TIFF_TILE
    rows, cols = grid_shape(0, 0, h, w, tile)
    if rows * cols >= 1 << 20:
        raise UserError(
            f"{h}x{w} is too large for one image file: write a .zarr store (it streams)"
        )
    return [t[2:] for t in tiles(0, 0, h, w, tile)], tile


def _check_room(cfg: GenerateConfig, out: Path, c: int, tasks: int, tile: int) -> bool:
    """Refuse an image its disk or the memory cannot hold; returns whether it is written tiled
    (a large TIFF, streamed) rather than assembled whole."""
    h, w = cfg.size
    itemsize = 1 if cfg.dtype == "uint8" else 2
    raw = h * w * c * itemsize
    check_disk(str(out), raw * 8, str(out))  # written uncompressed or nearly so
    tiled = out.suffix.lower() in (".tif", ".tiff") and h * w / 1e6 > TIFF_STRIPE_MP
    held = tasks * task_bytes((tile, tile), c, itemsize, tile) + (0 if tiled else 3 * raw)
    memory.require(held, f"writing {out.name} ({h}x{w})", "write a .zarr store (it streams)")
    return tiled


def _painter(cfg: GenerateConfig, model, ort: int, period) -> Callable[[tuple], np.ndarray]:
    """region (y, x, h, w) -> its (C, h, w) pixels: the model's, or a world's models'."""
    paint, source = render_region, model
    if cfg.world is not None:
        from tilegen import world as worlds

        paint = worlds.render_region
        source = worlds.open_world(cfg.world, cfg.seed, ort, cfg.device)

    def render(r):
        y, x, th, tw = r
        return paint(source, cfg.seed, y, x, th, tw, period, None, cfg.dtype)

    return render


def _write(cfg: GenerateConfig, out: Path, c, tile, tiled, regions, render, tasks) -> None:
    """Render the pieces on `tasks` threads and write the file (tiled, or assembled whole)."""
    h, w = cfg.size
    bar = Progress(h * w, 0, "render", cfg.progress)
    pieces = ordered_map(render, regions, tasks, 2 * tasks)
    try:
        if tiled:
            _write_tiled_tiff(out, h, w, c, cfg.dtype, tile, bar, pieces)
        else:
            img = np.empty((h, w, c), cfg.dtype)
            for (y, x, th, tw), piece in zip(regions, pieces):
                img[y : y + th, x : x + tw] = piece.transpose(1, 2, 0)
                bar.advance(th * tw)
            write_image(out, img, 8 if cfg.dtype == "uint8" else 16)
    except OSError as e:
        raise UserError(os_error_text(e, out))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {out} was not written (one image file is written whole, at the end); "
            "rerun the same command, or write a .zarr store, which resumes where it stopped"
        )
    finally:
        pieces.close()  # the pool's running pieces finish before we report
        bar.close()


def _write_tiled_tiff(path: Path, h, w, c, dtype, tile, bar: Progress, pieces) -> None:
    import tifffile

    def tiles():
        for piece in pieces:
            _, th, tw = piece.shape
            bar.advance(th * tw)
            full = np.zeros((tile, tile, c), dtype)
            full[:th, :tw] = piece.transpose(1, 2, 0)
            yield full

    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            tmp,
            data=tiles(),
            shape=(h, w, c),
            dtype=dtype,
            tile=(tile, tile),
            bigtiff=True,
            photometric="rgb" if c == 3 else "minisblack",
            planarconfig="contig",
            compression="zlib",
            software=SOFTWARE,
        )
        os.replace(tmp, path)
    finally:
        remove_quietly(tmp)
