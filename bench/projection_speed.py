"""Where a projecting model's time goes: one tiler window through onnxruntime, models side by side.

    python bench/projection_speed.py OLD.onnx NEW.onnx [--size 256] [--repeat 12] [--threads 1]
                                     [--levels auto all extended] [--pairs]

Each model renders the same output window (--size^2 at the origin, seed 1: the CPU tile the
tiler uses for a model with a patch projection, tilegen/model.py) with `--threads` intra-op
threads. The models take turns, `--repeat` rounds, so a busy machine slows them alike; the
table gives the fastest and the median round and the ratio to the first model. `--levels`
gives onnxruntime's graph optimisation level per session (`auto`: the tilegen session's, i.e.
`extended` for an integer model and `all` otherwise, tilegen/model.py); several levels make a
row per model and level. `--pairs`: each round runs two sessions of the model at once, on two
neighbouring windows in two threads, as the tiler's two one-thread tasks do on two cores (they
share the caches and the memory bandwidth); a round's time is the pair's wall time, and MP/s
counts both windows. Then one profiled session per row splits its time by operator type
(onnxruntime's profiler, `--repeat` runs; a Loop's body nodes are counted, not the Loop):
MatMul/Gemm and ArgMin/ReduceMin are the projection's score product and its argmin.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort  # noqa: E402

from tilegen.model import noise_feeds, open_model  # noqa: E402

LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}  # fmt: skip


def level_of(path: str, level: str) -> str:
    """`level`, or for `auto` the one tilegen's own session took for this model."""
    if level != "auto":
        return level
    used = open_model(path, 1, "cpu").session.get_session_options().graph_optimization_level
    return next(name for name, value in LEVELS.items() if value == used)


def session(
    path: str, threads: int, profile: bool = False, level: str = "all"
) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = LEVELS[level]
    so.intra_op_num_threads = threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.enable_profiling = profile
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def op_shares(path: str, feeds: dict, threads: int, runs: int, level: str) -> dict[str, float]:
    """Milliseconds per run by operator type, from onnxruntime's profile (the warm-up included);
    a Loop's time is its body's, which the profile lists node by node, so it is left out."""
    s = session(path, threads, profile=True, level=level)
    for _ in range(runs + 1):  # the first is the warm-up
        s.run(None, feeds)
    trace = s.end_profiling()
    per_op: collections.Counter = collections.Counter()
    for e in json.loads(Path(trace).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            if e["args"]["op_name"] != "Loop":
                per_op[e["args"]["op_name"]] += e["dur"]
    os.remove(trace)
    return {op: us / (runs + 1) / 1000 for op, us in per_op.most_common()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="+", help="windowed .onnx files of the same architecture")
    p.add_argument("--size", type=int, default=256, help="output window side, pixels")
    p.add_argument("--repeat", type=int, default=12)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--levels", nargs="+", default=["auto"], choices=["auto", *LEVELS])
    p.add_argument("--pairs", action="store_true", help="two sessions at once, as the tiler")
    args = p.parse_args()

    info = open_model(args.models[0], 1, "cpu").info
    feeds, _ = noise_feeds(info, 1, 0, 0, args.size, args.size)
    rows = [(m, level_of(m, lv)) for m in args.models for lv in args.levels]
    windows = [feeds]
    if args.pairs:
        windows.append(noise_feeds(info, 1, 0, args.size, args.size, args.size)[0])
    work = [[(session(m, args.threads, level=lv), f) for f in windows] for m, lv in rows]
    times: list[list[float]] = [[] for _ in rows]

    def round_of(runs) -> float:
        """Wall seconds for the sessions of one row, run at once (one thread each)."""
        threads = [threading.Thread(target=s.run, args=(None, f)) for s, f in runs]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    for runs in work:
        round_of(runs)  # warm-up
    for _ in range(args.repeat):
        for runs, t in zip(work, times):
            t.append(round_of(runs))

    mp = args.size**2 / 1e6 * (2 if args.pairs else 1)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}")
    pairs = ", two sessions at once" if args.pairs else ""
    print(f"# {args.size}^2 window, {args.threads} thread(s){pairs}, {args.repeat} rounds\n")
    print("| model | level | fastest ms | median ms | MP/s (fastest) | median vs first |")
    print("|---|---|---:|---:|---:|---:|")
    base = statistics.median(times[0])
    for (m, lv), t in zip(rows, times):
        med = statistics.median(t)
        print(
            f"| {m} | {lv} | {min(t) * 1e3:.1f} | {med * 1e3:.1f} | {mp / min(t):.2f} | "
            f"{med / base:.2f}x |"
        )
    for m, lv in rows:
        shares = op_shares(m, feeds, args.threads, args.repeat, lv)
        total = sum(shares.values())
        top = ", ".join(f"{op} {ms:.1f} ({ms / total:.0%})" for op, ms in list(shares.items())[:7])
        print(f"\n{m} ({lv}): {total:.1f} ms of kernels a run; {top}")


if __name__ == "__main__":
    main()
