"""Memory guards: estimate what a command will hold from its inputs before allocating it, and
refuse with one line what will not fit.

The estimates are measured peaks (bench-style, on the CPU, resident set size above the
interpreter's own) rounded up, per unit of what grows:

    decoding an image       raw bytes + 3 float32 copies per sample (read, clip, contiguous)
    synth/inpaint/blend     ~400 bytes per output sample (pixel x channel): the pyramid's patch
                            matrices (p*p*C floats per pixel), their gathers and gradients
    the exemplar's targets  ~80 bytes per exemplar sample: its pyramid unfolded into patches
    train                   ~2 KB per crop pixel and noise sample, and the final check's
                            samples at twice the crop side
    evaluate                ~64 bytes per entry of an n x n exact-OT problem, per parallel job
    generate                per task: its shard 3 times and one evaluation's activations; per
                            worker process 60 MB (a dask.distributed worker and its nanny: 200 MB)
    tiles                   per tile cut at once: 3 copies of it (read, converted, encoded)

The limit is the memory available now (psutil), or what `--max-memory GB` says (the override).
Pillow's decompression-bomb limit is set here too, deliberately: images above MAX_PIXELS are
refused from their header, before any pixel is decoded.
"""

from __future__ import annotations

import os

from tilegen.errors import UserError

MAX_PIXELS = 1 << 30  # 1.07 gigapixels: the largest image tilegen decodes (outputs: any size)
BYTES_PER_OUTPUT_SAMPLE = 400
BYTES_PER_TARGET_SAMPLE = 80
BYTES_PER_TRAIN_PIXEL = 2048
BYTES_PER_OT_ENTRY = 64
BASE = 300 * 2**20  # the interpreter, torch or onnxruntime, buffers of fixed size
WORKER = 60 * 2**20  # a spawned worker process: its interpreter, libraries and session
CLUSTER_WORKER = 200 * 2**20  # a dask.distributed worker process and its nanny
TILE_COPIES = 3  # a tile read from the store, converted to the output depth, encoded

_limit: int | None = None  # bytes: set from --max-memory; None: what is available


def set_limit(gigabytes: float | None) -> None:
    """Use `gigabytes` as the memory budget instead of what is available (None: available)."""
    global _limit
    if gigabytes is not None and not gigabytes > 0:
        raise UserError(f"--max-memory {gigabytes}: give a positive number of gigabytes")
    _limit = None if gigabytes is None else int(gigabytes * 1e9)


def available() -> int:
    """Bytes this command may use: --max-memory, else the memory available now."""
    if _limit is not None:
        return _limit
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil cannot read the system
        return 1 << 62


def fmt(n: float) -> str:
    """Bytes as '3.2 GB', '640 MB', or '1.1e+09 GB' for absurd sizes."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n < 1e18 else f"{n / 1e9:.2g} GB"
    return f"{max(n, 0) / 1e6:.2f} MB"


def require(need: float, what: str, hint: str) -> None:
    """Refuse `what` (one line) when it needs more than the memory available."""
    have = available()
    if need + BASE > have:
        source = "--max-memory" if _limit is not None else "available now"
        raise UserError(
            f"{what} needs about {fmt(need + BASE)} of memory, {fmt(have)} {source}: {hint} "
            "(--max-memory GB overrides this check)"
        )


def decode_bytes(height: int, width: int, channels: int, sample_bytes: int) -> int:
    return height * width * channels * (sample_bytes + 12)


def pixel_job_bytes(size: tuple[int, int], channels: int, exemplars: list[tuple[int, ...]]) -> int:
    """synth / inpaint / blend: the optimised image of `size` and the exemplars' target patches."""
    out = size[0] * size[1] * channels * BYTES_PER_OUTPUT_SAMPLE
    return out + sum(h * w * c * BYTES_PER_TARGET_SAMPLE for h, w, c in exemplars)


def train_bytes(size: int, batch: int, exemplar: tuple[int, int, int]) -> int:
    h, w, c = exemplar
    crops = (batch + 1) * size * size * BYTES_PER_TRAIN_PIXEL  # training + the final check
    return crops + h * w * c * BYTES_PER_TARGET_SAMPLE


def tiles_bytes(tile_h: int, tile_w: int, channels: int, itemsize: int, at_once: int) -> int:
    """`tiles`: the tiles being cut at once, each held about TILE_COPIES times."""
    return TILE_COPIES * tile_h * tile_w * channels * itemsize * at_once


def evaluate_bytes(patches: int, parallel: int) -> int:
    return patches * patches * BYTES_PER_OT_ENTRY * parallel


def disk_free(path: str | os.PathLike) -> int:
    """Free bytes on the file system that will hold `path` (its nearest existing parent)."""
    import shutil
    from pathlib import Path

    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 1 << 62
