"""`tilegen generate` into a store: one task per whole shard, then the pyramid, resumable.

    run(GenerateConfig) -> the line that reports it   (a store, or a PNG/TIFF: single_image.py)
    generate(GenerateConfig) -> Summary

Level 0: each task renders one shard (in evaluations of at most the model's tile size, quantised
piece by piece) and writes it with one zarr write, so no two tasks ever touch one shard. Pyramid
level l: one task per level-l shard, 2x2-mean downsampled from level l-1 once that level is done.
The tasks are tilegen/shard_tasks.py's, run by tilegen/runners.py's executors as
tilegen/planning.py spreads them; a rerun verifies the shards already written against the ledger
and renders only the missing or damaged ones.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tilegen import ledger, memory, options, zarr_store
from tilegen.errors import Interrupted, UserError
from tilegen.imageio import LOSSLESS_SUFFIXES, written_by_tilegen
from tilegen.model import file_sha256, open_model
from tilegen.planning import default_shard, plan
from tilegen.progress import Progress
from tilegen.runners import LOCAL_SCHEDULERS, check_scheduler, connect, make_runner
from tilegen.shard_tasks import CANCEL, Job, TaskConfig, pyramid_shard, render_shard


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
        return Path(self.output).suffix.lower() in LOSSLESS_SUFFIXES


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


def effective_period(model, period: tuple[int, int] | None) -> tuple[int, int] | None:
    """The output period: the one asked for (checked against the model's stride), or the one a
    self-contained model has baked in."""
    model.check_period(period)
    if period is None:
        baked = model.info.period if model.self_contained else None
        return tuple(int(v) for v in baked) if baked else None
    from tilegen.windows import check_period

    for p in period:
        try:
            check_period(model.info.arch, p)
        except ValueError as e:
            raise UserError(f"--periodic: {e}")
    return (int(period[0]), int(period[1]))


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
        from tilegen.single_image import generate_image  # it builds on this module

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
    runner, ort = make_runner(cfg, max(left[0], 1), remote)
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
