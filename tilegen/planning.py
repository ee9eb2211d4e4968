"""How a store run spreads over the cores: the shard side, the tasks at once and the onnxruntime
threads each task gets (parallel tasks x onnxruntime intra-op threads <= cores)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilegen.threads import usable_cores

if TYPE_CHECKING:
    from tilegen.tiler import GenerateConfig

DEFAULT_SHARD = 2048  # 12 MB of uint8 RGB: a task holds about 4x that while it encodes


def default_shard(height: int, width: int, chunk: int, parallel: int | None = None) -> int:
    """DEFAULT_SHARD whatever the output size (so memory does not grow with it), or smaller (never
    below 1024 or 2 chunks) so that small images still give every core two shards to work on."""
    parallel = parallel or usable_cores()
    shard = DEFAULT_SHARD
    floor = max(1024, 2 * chunk)
    while shard > floor and math.ceil(height / shard) * math.ceil(width / shard) < 2 * parallel:
        shard //= 2
    return max(chunk, shard - shard % chunk)


def plan_threads(n_jobs: int, parallel: int, total: int | None = None) -> tuple[int, int]:
    """(Dask tasks at once, onnxruntime threads each) so that their product <= cores: fewer
    tasks than slots give each task more onnxruntime threads."""
    total = total or usable_cores()
    tasks = max(1, min(parallel, n_jobs))
    return tasks, max(1, total // tasks)


@dataclass(frozen=True)
class Plan:
    """How a local run spreads its tasks: `processes` worker processes (0: threads of this
    process) running `tasks` tasks at once, each with `ort` onnxruntime threads."""

    scheduler: str
    tasks: int
    ort: int
    processes: int = 0
    threads_per_worker: int = 1


def plan(cfg: GenerateConfig, n_jobs: int) -> Plan | None:
    """The local schedulers' plan for `n_jobs` tasks (None for a remote cluster, whose workers
    are its own): what the runner starts and what the memory check counts."""
    sched = cfg.scheduler
    if sched in ("threads", "processes"):
        parallel = (cfg.threads if sched == "threads" else cfg.workers) or usable_cores()
        tasks, ort = plan_threads(n_jobs, parallel)
        return Plan(sched, tasks, ort, tasks if sched == "processes" else 0)
    cores = usable_cores()
    if sched == "sync":
        return Plan(sched, 1, cores)
    if sched == "local":
        threads = cfg.threads or 1
        workers = cfg.workers or max(1, cores // threads)
        workers = max(1, min(workers, math.ceil(n_jobs / threads)))
        return Plan(
            sched, workers * threads, max(1, cores // (workers * threads)), workers, threads
        )
    return None
