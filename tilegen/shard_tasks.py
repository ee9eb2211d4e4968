"""The two tasks of a store run: render one level-0 shard, or downsample one pyramid shard.

Tasks carry only paths and numbers (`TaskConfig`, `Job`), so they pickle to worker processes and
cluster workers; every worker opens (and caches) its own onnxruntime session.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tilegen import ledger, zarr_store
from tilegen.model import open_model, render_region

# Set when a run in this process is interrupted: shard tasks on its threads stop between tiles
# instead of finishing their shard (other processes get their own SIGINT).
CANCEL = threading.Event()


@dataclass(frozen=True)
class Job:
    """One task: a whole shard of one level (pixels y0, x0, h, w; shard row yi, column xi)."""

    level: int
    y0: int
    x0: int
    h: int
    w: int
    yi: int
    xi: int

    @property
    def pixels(self) -> int:
        return self.h * self.w

    @property
    def key(self) -> str:
        return f"tilegen-L{self.level}-y{self.y0}-x{self.x0}"


@dataclass(frozen=True)
class TaskConfig:
    """What a task needs (picklable: paths and numbers only)."""

    model_path: str
    store_path: str
    seed: int
    period: tuple[int, int] | None
    dtype: str
    device: str
    ort_threads: int | tuple[tuple[str, int], ...]  # per-worker-address on a cluster
    tile: int | None = None
    model_sha256: str | None = None  # workers check they read the same model file
    store_uid: str = ""  # tells cached zarr arrays of a replaced store apart
    world: object = None  # a tilegen.world.WorldSpec: paint a layout's models instead


def _threads_here(cfg: TaskConfig) -> int:
    if isinstance(cfg.ort_threads, int):
        return cfg.ort_threads
    try:
        from distributed import get_worker

        return dict(cfg.ort_threads).get(get_worker().address, 1)
    except (ImportError, ValueError):
        return 1


def render_shard(cfg: TaskConfig, job: Job) -> tuple[int, str]:
    """Task: render one level-0 shard and write it. Returns (pixels, provider used)."""
    if cfg.world is not None:
        from tilegen import world as worlds

        model = worlds.open_world(cfg.world, cfg.seed, _threads_here(cfg), cfg.device)
        paint = worlds.render_region
    else:
        model = open_model(cfg.model_path, _threads_here(cfg), cfg.device, cfg.model_sha256)
        paint = render_region
    data = paint(model, cfg.seed, job.y0, job.x0, job.h, job.w, cfg.period, cfg.tile, cfg.dtype,
                 CANCEL)  # fmt: skip
    zarr_store.write_region(cfg.store_path, 0, job.y0, job.x0, data, cfg.store_uid)
    ledger.record_shard(cfg.store_path, 0, job.yi, job.xi)
    return job.pixels, model.providers[0]


def pyramid_shard(cfg: TaskConfig, job: Job) -> tuple[int, str]:
    """Task: one shard of a pyramid level from the finished level above it."""
    path, uid = cfg.store_path, cfg.store_uid
    data = zarr_store.downsample_region(path, job.level, job.y0, job.x0, job.h, job.w, uid)
    zarr_store.write_region(path, job.level, job.y0, job.x0, data, uid)
    ledger.record_shard(path, job.level, job.yi, job.xi)
    return job.pixels, ""
