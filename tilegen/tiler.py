"""The Dask tiler: one task per whole shard, on threads, processes or a dask.distributed cluster.

    generate(GenerateConfig) -> Summary

Level 0: each task renders one shard (in evaluations of at most the model's tile size, quantised
piece by piece) and writes it with one zarr write, so no two tasks ever touch one shard. Pyramid
level l: one task per level-l shard, 2x2-mean downsampled from level l-1 once that level is done.
Tasks carry only paths and numbers; every worker process opens (and caches) its own onnxruntime
session. Jobs are submitted in bounded batches (local schedulers) or a bounded sliding window
(distributed), so memory does not grow with the output size. Progress (megapixels/s, ETA) comes
from Dask's task callbacks locally and from `distributed.as_completed` on a cluster.

Threads: parallel tasks x onnxruntime intra-op threads <= cores (see `plan_threads`).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from tilegen import ledger, memory, options, zarr_store
from tilegen.errors import Interrupted, UserError, os_error_text
from tilegen.grid import grid_shape, tiles
from tilegen.imageio import written_by_tilegen
from tilegen.model import file_sha256, open_model, render_region

LOCAL_SCHEDULERS = ("threads", "processes", "local", "sync")
# Set when a run in this process is interrupted: shard tasks on its threads stop between tiles
# instead of finishing their shard (other processes get their own SIGINT).
CANCEL = threading.Event()
BATCH = 256  # jobs per local Dask graph


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


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


# --- progress ---------------------------------------------------------------------------------


class Progress:
    """A tqdm bar counting pixels, shown in megapixels with MP/s and ETA, fed from the main
    thread (dask callbacks locally, as_completed on a cluster)."""

    def __init__(self, total: int, done: int, desc: str, enabled: bool = True):
        self.bar = None
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(
                total=int(total),
                initial=int(done),
                desc=desc,
                unit="MP",
                unit_scale=1e-6,
                dynamic_ncols=True,
                file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} MP "
                "[{elapsed}<{remaining}, {rate_noinv_fmt}]",
                smoothing=0.1,
            )

    def advance(self, pixels: int) -> None:
        if self.bar is not None:
            self.bar.update(int(pixels))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- executors --------------------------------------------------------------------------------

OnDone = Callable[[Job, tuple[int, str]], None]


def _ignore_stop_signals() -> None:
    """In a worker process: Ctrl-C or SIGTERM sent to the whole group is the main process's to
    handle (it cancels, lets running shards finish whole and reports); a worker that died of it
    would only break the pool."""
    import signal

    from tilegen.errors import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class LocalRunner:
    """Dask's local schedulers ("threads", "processes", "sync"), graphs of at most BATCH jobs.

    The pool is created once and reused by every batch, so worker processes keep their sessions.
    """

    def __init__(self, scheduler: str, workers: int):
        self.scheduler, self.workers = scheduler, max(1, workers)
        self.pool = None
        if scheduler == "threads":
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tilegen")
        elif scheduler == "processes":
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_ignore_stop_signals
            )

    def describe(self) -> str:
        if self.scheduler == "sync":
            return "dask synchronous scheduler"
        return f"dask {self.scheduler} scheduler, {self.workers} workers"

    def run(self, fn, cfg: TaskConfig, jobs: Iterable[Job], on_done: OnDone) -> None:
        import dask
        from dask.callbacks import Callback

        it = iter(jobs)
        while batch := list(islice(it, BATCH)):
            by_key = {job.key: job for job in batch}

            def posttask(key, result, dsk, state, worker_id, by_key=by_key):
                if key in by_key:
                    on_done(by_key[key], result)

            tasks = [dask.delayed(fn, pure=False)(cfg, j, dask_key_name=j.key) for j in batch]
            kwargs = {"scheduler": self.scheduler}
            if self.pool is not None:
                kwargs.update(pool=self.pool, num_workers=self.workers)
            with Callback(posttask=posttask):
                dask.compute(*tasks, **kwargs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def connect(address: str, timeout: float):
    """A dask.distributed Client of the scheduler at `address`, or a one-line UserError within
    about `timeout` seconds: a host that does not resolve or a port that refuses fails at once,
    and a peer that accepts but never answers the handshake (Client's own timeout does not cover
    it) is given up after the deadline."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from distributed import Client

    where = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = where.hostname, where.port or 8786
    except ValueError as e:
        raise UserError(f"--scheduler {address}: not an address such as tcp://host:8786 ({e})")
    try:
        if where.scheme in ("tcp", "tls"):  # not inproc://, a scheduler in this process
            socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as e:
        raise UserError(f"--scheduler {address}: cannot resolve {host} ({e.strerror or e})")
    except OSError as e:
        raise UserError(
            f"cannot reach the Dask scheduler at {address}: {e.strerror or e}; is it running?"
        )
    box: dict = {}

    def handshake() -> None:
        try:
            box["client"] = Client(address, timeout=f"{timeout}s")
        except Exception as e:  # distributed raises OSError, TimeoutError and its own types
            box["error"] = e

    thread = threading.Thread(target=handshake, daemon=True, name="tilegen-connect")
    thread.start()
    thread.join(timeout + 2)
    if "client" in box:
        return box["client"]
    why = f"{box['error']}" if "error" in box else f"no answer within {timeout:g} s"
    raise UserError(
        f"the Dask scheduler at {address} did not complete the handshake ({why}): is it a "
        "dask.distributed scheduler? (--connect-timeout sets the wait)"
    )


class DistributedRunner:
    """A dask.distributed Client: a LocalCluster we start, or an existing scheduler's address.
    At most `window` jobs are in flight; results are handled with `as_completed`."""

    def __init__(self, address: str | None, workers: int, threads: int, client=None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover
            raise UserError("dask.distributed is not installed: pip install distributed")
        self.cluster = None
        if address is None:
            # The scheduler's HTTP server falls back to a free port when 8787 is taken (another
            # cluster, a notebook): nothing the user must act on, so no 4-line warning.
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            self.client = Client(self.cluster)
        else:
            self.client = client
        info = self.client.scheduler_info()["workers"]
        if not info:
            raise UserError(f"the Dask cluster at {address or 'localhost'} has no workers")
        self.workers = info
        self.slots = sum(w.get("nthreads", 1) for w in info.values())

    def describe(self) -> str:
        where = "local cluster" if self.cluster else f"cluster {self.client.scheduler.address}"
        return f"dask.distributed {where}, {len(self.workers)} workers, {self.slots} threads"

    def ort_threads(self) -> tuple[tuple[str, int], ...]:
        """onnxruntime threads per worker: the host's cores over the Dask threads it runs."""
        cpus = self.client.run(os.cpu_count)
        per_host: dict[str, int] = {}
        for w in self.workers.values():
            per_host[w["host"]] = per_host.get(w["host"], 0) + w.get("nthreads", 1)
        return tuple(
            (addr, max(1, (cpus.get(addr) or 1) // per_host[w["host"]]))
            for addr, w in self.workers.items()
        )

    def run(self, fn, cfg: TaskConfig, jobs: Iterable[Job], on_done: OnDone) -> None:
        from distributed import as_completed

        it = iter(jobs)
        window = 2 * self.slots + 2
        futures = {}

        def submit(job: Job):
            fut = self.client.submit(fn, cfg, job, key=job.key, pure=False, retries=0)
            futures[fut.key] = job
            return fut

        ac = as_completed([submit(j) for j in islice(it, window)])
        try:
            for fut in ac:
                result = fut.result()  # re-raises a task's exception here
                on_done(futures.pop(fut.key), result)
                nxt = next(it, None)
                if nxt is not None:
                    ac.add(submit(nxt))
        except BaseException:
            self.client.cancel(list(ac.futures))
            raise

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# --- planning ---------------------------------------------------------------------------------


DEFAULT_SHARD = 2048  # 12 MB of uint8 RGB: a task holds about 4x that while it encodes


def default_shard(height: int, width: int, chunk: int, parallel: int | None = None) -> int:
    """DEFAULT_SHARD whatever the output size (so memory does not grow with it), or smaller (never
    below 1024 or 2 chunks) so that small images still give every core two shards to work on."""
    parallel = parallel or cores()
    shard = DEFAULT_SHARD
    floor = max(1024, 2 * chunk)
    while shard > floor and math.ceil(height / shard) * math.ceil(width / shard) < 2 * parallel:
        shard //= 2
    return max(chunk, shard - shard % chunk)


def plan_threads(n_jobs: int, parallel: int, total: int | None = None) -> tuple[int, int]:
    """(Dask tasks at once, onnxruntime threads each) so that their product <= cores: fewer
    tasks than slots give each task more onnxruntime threads."""
    total = total or cores()
    tasks = max(1, min(parallel, n_jobs))
    return tasks, max(1, total // tasks)


@dataclass
class GenerateConfig:
    model: str
    output: str
    size: tuple[int, int]
    seed: int = 0
    period: tuple[int, int] | None = None
    dtype: str = "uint8"
    chunk: int = 512
    shard: int | None = None  # None: default_shard
    codec: str = "zstd"
    pyramid: bool = True
    scheduler: str = "threads"  # threads | processes | local | sync | ADDRESS
    workers: int | None = None
    threads: int | None = None
    device: str = "cpu"
    overwrite: bool = False
    progress: bool = True
    tile: int | None = None  # evaluation size (default: the model's)
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))
    max_memory: float | None = None  # GB; None: the memory available
    connect_timeout: float = 10.0  # seconds to reach a dask.distributed scheduler
    world: object = None  # a tilegen.world.WorldSpec (tilegen world); `model` is its first

    def check(self) -> None:
        """The settings, each named by its option (one place for store and image outputs)."""
        options.size(self.size)
        options.seed(self.seed)
        options.choice("--dtype", self.dtype, zarr_store.DTYPES)
        options.choice("--codec", self.codec, zarr_store.CODECS)
        for name in ("workers", "threads", "chunk", "shard", "tile"):
            options.positive(f"--{name}", getattr(self, name))
        options.positive("--connect-timeout", self.connect_timeout)
        check_scheduler(self.scheduler)
        memory.set_limit(self.max_memory)

    @property
    def single_image(self) -> bool:
        return Path(self.output).suffix.lower() in IMAGE_SUFFIXES


@dataclass
class Summary:
    state: str  # new | resume | complete
    shards_total: int
    shards_done_before: int
    shards_written: int
    megapixels: float
    seconds: float
    providers: set[str]
    scheduler: str
    ort_threads: object
    levels: int

    @property
    def mp_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else float("nan")


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
        parallel = (cfg.threads if sched == "threads" else cfg.workers) or cores()
        tasks, ort = plan_threads(n_jobs, parallel)
        return Plan(sched, tasks, ort, tasks if sched == "processes" else 0)
    if sched == "sync":
        return Plan(sched, 1, cores())
    if sched == "local":
        threads = cfg.threads or 1
        workers = cfg.workers or max(1, cores() // threads)
        workers = max(1, min(workers, math.ceil(n_jobs / threads)))
        return Plan(sched, workers * threads, max(1, cores() // (workers * threads)), workers,
                    threads)  # fmt: skip
    return None


def _make_runner(cfg: GenerateConfig, n_jobs: int, remote=None):
    """The executor and the onnxruntime threads per task (`remote`: a connected Client of the
    scheduler --scheduler names)."""
    p = plan(cfg, n_jobs)
    if p is None:
        client = remote or connect(cfg.scheduler, cfg.connect_timeout)
        runner = DistributedRunner(cfg.scheduler, 0, 0, client=client)
        return runner, runner.ort_threads()
    if p.scheduler == "local":
        return DistributedRunner(None, p.processes, p.threads_per_worker), p.ort
    return LocalRunner(p.scheduler, p.tasks), p.ort


def effective_period(model, period: tuple[int, int] | None) -> tuple[int, int] | None:
    """The output period: the one asked for (checked against the model's stride), or the one a
    self-contained model has baked in."""
    model.check_period(period)
    if period is None:
        baked = model.info.period if model.self_contained else None
        return tuple(int(v) for v in baked) if baked else None
    from tilegen.windows import level_periods

    for p in period:
        try:
            level_periods(model.info.arch, p)
        except ValueError as e:
            raise UserError(f"--periodic: {e}")
    return (int(period[0]), int(period[1]))


def check_scheduler(name: str) -> str:
    if name in LOCAL_SCHEDULERS or "://" in name or ":" in name:
        return name
    raise UserError(
        f"--scheduler {name!r}: use threads, processes, local or a dask.distributed address "
        "such as tcp://host:8786"
    )


def run(cfg: GenerateConfig) -> str:
    """`tilegen generate`: the store or the image, and the line that reports it."""
    out, (h, w) = Path(cfg.output), cfg.size
    if cfg.single_image:
        cfg.check()
        if out.exists() and not (cfg.overwrite and written_by_tilegen(out)):
            raise UserError(
                f"{out} exists and is not a tilegen image: tilegen never replaces it, even with "
                "--overwrite; choose another -o" if out.exists() and cfg.overwrite else
                f"{out} already exists: pass --overwrite or choose another -o"
            )  # fmt: skip
        options.output(out, True)
        s, what = generate_image(cfg), f"{h}x{w}"
    elif out.suffix.lower() == ".zarr" or out.is_dir():
        s = generate(cfg)
        if s.shards_written == 0 and s.state == "complete":
            return f"{out} is already complete ({s.shards_total} shards): nothing to do"
        if s.shards_written == 0:
            return f"{out}: all {s.shards_total} shards were already written; marked complete"
        what = f"{h}x{w}, {s.levels} level{'s' if s.levels > 1 else ''}, OME-NGFF 0.5"
    else:
        raise UserError(f"-o {out}: use a .zarr store, or .png / .tif for a single image")
    used = ", ".join(sorted(s.providers)) or "none"
    return (
        f"wrote {out} ({what}): {s.megapixels:.1f} MP in {s.seconds:.1f} s "
        f"({s.mp_per_s:.2f} MP/s), onnxruntime provider {used}"
    )


def generate(cfg: GenerateConfig) -> Summary:
    """Render the whole store (or finish an interrupted one, or repair a damaged one)."""
    cfg.check()
    t_start = time.perf_counter()
    model_path = str(Path(cfg.model).resolve())
    store_path = str(Path(cfg.output).resolve())
    model = open_model(model_path, 1, cfg.device)  # validates; reports the provider
    spec = _store_spec(cfg, model, model_path)
    name = Path(cfg.world.layout if cfg.world else model_path).stem
    check_disk(store_path, spec.raw_bytes(), "the store")
    streaming = check_task_memory(cfg, spec, model)  # before anything is written
    remote = None  # a cluster is reached before anything is written: an unreachable one costs none
    if cfg.scheduler not in LOCAL_SCHEDULERS:
        remote = connect(cfg.scheduler, cfg.connect_timeout)
    lock = None
    try:
        lock = zarr_store.claim(store_path)
        state = zarr_store.prepare(store_path, spec, name, cfg.overwrite)
        done, state = _verified(store_path, spec, name, state, cfg.log)
        summary = _render(cfg, model, spec, name, state, done, streaming, model_path, remote)
    finally:
        if lock is not None:
            lock.release()
        if remote is not None:
            remote.close()
    summary.seconds = summary.seconds or time.perf_counter() - t_start
    return summary


def _store_spec(cfg: GenerateConfig, model, model_path: str) -> zarr_store.StoreSpec:
    h, w = cfg.size
    info = model.info
    return zarr_store.StoreSpec(
        height=h,
        width=w,
        channels=info.out_channels,
        seed=cfg.seed,
        model_sha256=cfg.world.sha256() if cfg.world else file_sha256(model_path),
        period=effective_period(model, cfg.period),
        dtype=cfg.dtype,
        chunk=cfg.chunk,
        shard=cfg.shard or default_shard(h, w, cfg.chunk),
        codec=cfg.codec,
        pyramid=cfg.pyramid,
        channel_names=info.channels,
        material=info.material,
        world=cfg.world.block() if cfg.world else None,
    )


def _verified(store_path: str, spec, name: str, state: str, log) -> tuple[list[set], str]:
    """The shards already done, per level, read back against the ledger. Damaged ones are
    deleted (and the store marked incomplete until they are rendered again), and a pyramid shard
    is redone when a shard it was computed from is."""
    levels = len(spec.level_shapes())
    if state == "new":
        return [set() for _ in range(levels)], state
    done, damaged = [], {}
    for lv in range(levels):
        good, bad = zarr_store.done_regions(store_path, spec, lv)
        sh, sw = spec.level_shard(lv)
        for y0, x0 in bad:
            ledger.forget_shard(store_path, lv, y0 // sh, x0 // sw)
            ledger.shard_file(store_path, lv, y0 // sh, x0 // sw).unlink(missing_ok=True)
            damaged.setdefault(lv, (y0 // sh, x0 // sw, bad[(y0, x0)]))
        if lv:
            good = {r for r in good if _children_done(spec, lv, r, done[lv - 1])}
        done.append(good)
    missing = sum(spec.shard_count(lv) - len(done[lv]) for lv in range(levels))
    if damaged:
        lv, (yi, xi, what) = next(iter(damaged.items()))
        log(f"{store_path}: {missing} shards to render again, damaged or missing (first: "
            f"{lv}/c/0/{yi}/{xi}, {what})")  # fmt: skip
    if state == "complete" and missing:
        zarr_store.mark_complete(store_path, spec, name, done=False)
        state = "resume"
    return done, state


def _children_done(spec, level: int, region: tuple[int, int], below: set) -> bool:
    """Whether every level-1 shard a level shard is downsampled from is done."""
    y0, x0 = region
    sh, sw = spec.level_shard(level)
    h, w = spec.level_shapes()[level]
    ch, cw = spec.level_shard(level - 1)
    bh, bw = spec.level_shapes()[level - 1]
    ys = range(2 * y0 // ch * ch, min(2 * min(y0 + sh, h), bh), ch)
    xs = range(2 * x0 // cw * cw, min(2 * min(x0 + sw, w), bw), cw)
    return all((y, x) in below for y in ys for x in xs)


def _render(
    cfg: GenerateConfig, model, spec, name, state, done, streaming, model_path, remote=None
) -> Summary:
    """Render the shards not done, then the pyramid; mark the store complete."""
    store_path = str(Path(cfg.output).resolve())
    levels = len(spec.level_shapes())
    total = sum(spec.shard_count(lv) for lv in range(levels))
    done_before = sum(len(d) for d in done)
    left = [spec.shard_count(lv) - len(done[lv]) for lv in range(levels)]
    providers: set[str] = set()
    summary = Summary(state, total, done_before, 0, 0.0, 0.0, providers, "", None, levels)
    if sum(left) == 0:
        if state != "complete":
            mark_complete(store_path, spec, name, total)
        return summary
    runner, ort = _make_runner(cfg, max(left[0], 1), remote)
    summary.scheduler, summary.ort_threads = runner.describe(), ort
    if state == "resume":
        cfg.log(f"resuming {cfg.output}: {done_before} of {total} shards already written")
    cfg.log(streaming)
    cfg.log(
        f"{spec.height}x{spec.width} {cfg.dtype}, seed {cfg.seed}"
        f"{', periodic' if spec.period else ''}; {runner.describe()}; onnxruntime "
        f"{model.providers[0]}, {ort if isinstance(ort, int) else 'per worker'} intra-op "
        "threads per task"
    )
    uid = zarr_store.read_attrs(store_path).get("uid", "")
    task_cfg = TaskConfig(model_path, store_path, cfg.seed, spec.period, cfg.dtype, cfg.device,
                          ort, cfg.tile, None if cfg.world else spec.model_sha256, uid,
                          cfg.world)  # fmt: skip
    interrupted = False
    try:
        _run_levels(cfg, runner, task_cfg, spec, done, summary)
    except OSError as e:
        CANCEL.set()
        raise UserError(
            f"cannot write {cfg.output}: {e.strerror or e}. {done_before + summary.shards_written}"
            f" of {total} shards are written; fix this and rerun the same command to finish"
        )
    except BaseException as e:  # Ctrl-C and the rest: stop our threads' shards between tiles
        CANCEL.set()
        interrupted = isinstance(e, KeyboardInterrupt)
        if not interrupted:
            raise
    finally:
        runner.close()  # waits for running tasks (stopped between tiles when cancelled)
        CANCEL.clear()
    if interrupted:  # counted on disk: shards that finished while we stopped count too
        kept = sum(len(zarr_store.done_regions(store_path, spec, lv)[0]) for lv in range(levels))
        raise Interrupted(
            f"interrupted: {kept} of {total} shards of {cfg.output} are written; rerun the "
            "same command to finish (the result is the same)"
        )
    mark_complete(store_path, spec, name, total)
    return summary


def _run_levels(cfg: GenerateConfig, runner, task_cfg, spec, done, summary: Summary) -> None:
    """Level 0's shards, then each pyramid level from the one above it, with progress bars."""
    levels = len(spec.level_shapes())

    def counting(bar: Progress):
        def on_done(job: Job, result: tuple[int, str]) -> None:
            pixels, provider = result
            if provider:
                summary.providers.add(provider)
            summary.shards_written += 1
            bar.advance(pixels)

        return on_done

    h, w = spec.level_shapes()[0]
    px_left = h * w - sum(_region_pixels(spec, 0, y, x) for y, x in done[0])
    t0 = time.perf_counter()
    bar = Progress(h * w, h * w - px_left, "render", cfg.progress)
    try:
        runner.run(render_shard, task_cfg, _jobs(spec, 0, done[0]), counting(bar))
    finally:
        bar.close()
    summary.megapixels, summary.seconds = px_left / 1e6, time.perf_counter() - t0
    if all(len(done[lv]) == spec.shard_count(lv) for lv in range(1, levels)):
        return
    pyr_px = sum(a * b for a, b in spec.level_shapes()[1:])
    pyr_done = sum(_region_pixels(spec, lv, *r) for lv in range(1, levels) for r in done[lv])
    bar = Progress(pyr_px, pyr_done, "pyramid", cfg.progress)
    try:
        for lv in range(1, levels):  # each level needs the one above it finished
            runner.run(pyramid_shard, task_cfg, _jobs(spec, lv, done[lv]), counting(bar))
    finally:
        bar.close()


def _jobs(spec: zarr_store.StoreSpec, level: int, done: set[tuple[int, int]]) -> Iterator[Job]:
    sh, sw = spec.level_shard(level)
    return (Job(level, y, x, h, w, y // sh, x // sw)
            for y, x, h, w in spec.shard_regions(level) if (y, x) not in done)  # fmt: skip


def _region_pixels(spec: zarr_store.StoreSpec, level: int, y: int, x: int) -> int:
    h, w = spec.level_shapes()[level]
    sh, sw = spec.level_shard(level)
    return min(sh, h - y) * min(sw, w - x)


def mark_complete(store_path: str, spec: zarr_store.StoreSpec, name: str, total: int) -> None:
    """The last write of a run: until it succeeds the store is not "complete" (a rerun does it)."""
    try:
        zarr_store.mark_complete(store_path, spec, name)
    except OSError as e:
        raise UserError(
            f"cannot mark {store_path} complete: {e.strerror or e}; all {total} shards are "
            "written: free some space, then rerun the same command to finish"
        )


def check_disk(path: str, raw_bytes: int, what: str) -> None:
    """Refuse an output that could not fit on its disk even compressed 8:1 (textures are
    noise-like and compress far less)."""
    free = memory.disk_free(path)
    if raw_bytes / 8 > free:
        raise UserError(
            f"{what} would hold {memory.fmt(raw_bytes)} of pixels and {path} has "
            f"{memory.fmt(free)} free: choose a smaller --size or another disk"
        )


def task_bytes(spec_shard: tuple[int, int], channels: int, itemsize: int, tile: int) -> int:
    """What one task holds: its shard (quantised, then encoded: about 3 copies) and one
    evaluation's activations (about 256 bytes per pixel of a tile with its halo)."""
    sh, sw = spec_shard
    return 3 * sh * sw * channels * itemsize + 256 * (tile + 64) ** 2


def check_task_memory(cfg: GenerateConfig, spec, model) -> str:
    """generate streams: memory is per task, whatever the output's size. Refuse when the tasks
    running at once would not fit; return the line that says so, for the log."""
    itemsize = 1 if spec.dtype == "uint8" else 2
    per_task = task_bytes(spec.level_shard(0), spec.channels, itemsize, cfg.tile or model.tile)
    p = plan(cfg, spec.shard_count(0))
    line = (
        f"streaming {spec.height}x{spec.width} in {spec.shard_count(0)} shards: about "
        f"{memory.fmt(per_task)} per task"
    )
    if p is None:  # a remote cluster's memory is its workers'
        return line
    workers = p.processes * (memory.CLUSTER_WORKER if p.scheduler == "local" else memory.WORKER)
    need = per_task * p.tasks + workers
    memory.require(need, "generate", "use a smaller --shard or fewer --workers")
    where = f" in {p.processes} worker processes" if p.processes else ""
    return f"{line}, {p.tasks} at once{where}: about {memory.fmt(need + memory.BASE)} in all"


# --- single-file outputs (PNG, TIFF) -----------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
PNG_MAX_MP = 256  # beyond this, a single PNG is impractical: write .zarr or a tiled .tif
TIFF_STRIPE_MP = 64  # above this a .tif is written tiled from an iterator (BigTIFF)
TIFF_TILE = 1024


def ordered_map(fn, items: Iterable, workers: int, ahead: int) -> Iterator:
    """fn over items on a thread pool, results in order, at most `ahead` pending (bounded)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="tilegen") as pool:
        pending: deque = deque()
        it = iter(items)
        for item in islice(it, ahead):
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))


def generate_image(cfg: GenerateConfig) -> Summary:
    """Write a PNG or TIFF (small images whole, large TIFFs tiled BigTIFF from an iterator)."""
    out = Path(cfg.output)
    suffix = out.suffix.lower()
    cfg.check()
    h, w = cfg.size
    mp = h * w / 1e6
    if suffix == ".png" and mp > PNG_MAX_MP:
        raise UserError(
            f"{h}x{w} is too large for one PNG ({mp:.0f} MP > {PNG_MAX_MP}): write a .zarr "
            "store or a tiled .tif, then 'tilegen tiles' for PNG tiles"
        )
    if cfg.scheduler not in ("threads", "sync"):
        raise UserError(f"-o {out.name}: PNG/TIFF outputs are rendered locally (threads)")
    model_path = str(Path(cfg.model).resolve())
    parallel = 1 if cfg.scheduler == "sync" else (cfg.threads or cores())
    tile = cfg.tile or TIFF_TILE
    rows, cols = grid_shape(0, 0, h, w, tile)
    regions = [t[2:] for t in tiles(0, 0, h, w, tile)] if rows * cols < 1 << 20 else None
    if regions is None:
        raise UserError(
            f"{h}x{w} is too large for one image file: write a .zarr store (it streams)"
        )
    tasks, ort = plan_threads(len(regions), parallel)
    model = open_model(model_path, ort, cfg.device)
    if model.info.material is not None:
        raise UserError(
            f"-o {out.name}: a material model writes a .zarr store (its maps' channels, "
            "labelled); then 'tilegen tiles STORE -o DIR' writes one file per map"
        )
    period = effective_period(model, cfg.period)
    bits = 8 if cfg.dtype == "uint8" else 16
    c = model.info.out_channels
    raw = h * w * c * (bits // 8)
    check_disk(str(out), raw * 8, str(out))  # written uncompressed or nearly so
    tiled = suffix in (".tif", ".tiff") and mp > TIFF_STRIPE_MP
    held = tasks * task_bytes((tile, tile), c, bits // 8, tile) + (0 if tiled else 3 * raw)
    memory.require(held, f"writing {out.name} ({h}x{w})", "write a .zarr store (it streams)")
    cfg.log(
        f"{h}x{w} {cfg.dtype}, seed {cfg.seed}{', periodic' if period else ''}; "
        f"{tasks} threads, onnxruntime {model.providers[0]}, {ort} intra-op threads each"
    )

    paint, source = render_region, model
    if cfg.world is not None:
        from tilegen import world as worlds

        paint = worlds.render_region
        source = worlds.open_world(cfg.world, cfg.seed, ort, cfg.device)

    def render(r):
        y, x, th, tw = r
        return paint(source, cfg.seed, y, x, th, tw, period, None, cfg.dtype)

    t0 = time.perf_counter()
    bar = Progress(h * w, 0, "render", cfg.progress)
    from tilegen.imageio import write_image

    pieces = ordered_map(render, regions, tasks, 2 * tasks)
    try:
        if tiled:
            _write_tiled_tiff(out, h, w, c, cfg.dtype, tile, bar, pieces)
        else:
            img = np.empty((h, w, c), cfg.dtype)
            for (y, x, th, tw), piece in zip(regions, pieces):
                img[y : y + th, x : x + tw] = piece.transpose(1, 2, 0)
                bar.advance(th * tw)
            write_image(out, img, bits)
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
    dt = time.perf_counter() - t0
    return Summary(
        "new",
        len(regions),
        0,
        len(regions),
        mp,
        dt,
        {model.providers[0]},
        f"{tasks} threads",
        ort,
        1,
    )


def _write_tiled_tiff(path: Path, h, w, c, dtype, tile, bar: Progress, pieces) -> None:
    import tifffile

    def tiles():
        for piece in pieces:
            _, th, tw = piece.shape
            bar.advance(th * tw)
            full = np.zeros((tile, tile, c), dtype)
            full[:th, :tw] = piece.transpose(1, 2, 0)
            yield full

    from tilegen.imageio import SOFTWARE, remove_quietly

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
