"""Where `tilegen generate`'s render time goes: onnxruntime's session runs against the rest.

    python bench/tiler_time.py [GENERATE OPTIONS]      # default: the bundled model, 8192^2
    python bench/tiler_time.py -o /tmp/t.zarr --size 8192 8192 --seed 1 --device cpu
    PER_THREAD_SESSIONS=1 python bench/tiler_time.py ...   # a session per Dask thread

Runs the real CLI (`tilegen generate`, in this process) with three timers wrapped around its
functions: each shard task (`render_shard`, as the tiler calls it), each graph evaluation
(`tilegen.model._run`) and each window's noise (`noise_feeds`), summed per thread. What a
thread spends in a shard beyond its runs and its noise is the tiler's own work: quantising,
copying, compressing and writing the shard, and Dask. `PER_THREAD_SESSIONS=1` gives every
thread its own onnxruntime session instead of the one the process caches.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tilegen.model as model  # noqa: E402
import tilegen.tiler as tiler  # noqa: E402

SPENT: dict[tuple[str, int], float] = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()


def timed(what: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            key = (what, threading.get_ident())
            SPENT[key] += time.perf_counter() - t
            CALLS[key] += 1

    return wrapper


class PerThreadCache(dict):
    """tilegen.model's session cache, keyed by thread as well."""

    def get(self, key, default=None):
        return dict.get(self, (key, threading.get_ident()), default)

    def __setitem__(self, key, value):
        dict.__setitem__(self, (key, threading.get_ident()), value)


def main() -> None:
    args = sys.argv[1:] or ["-o", "/tmp/tiler_time.zarr", "--size", "8192", "8192",
                            "--seed", "1", "--device", "cpu", "--overwrite"]  # fmt: skip
    if os.environ.get("PER_THREAD_SESSIONS"):
        model._CACHE = PerThreadCache()
    model._run = timed("session run", model._run)
    model.noise_feeds = timed("noise", model.noise_feeds)
    tiler.render_shard = timed("shard", tiler.render_shard)
    from cli import app

    t = time.perf_counter()
    try:
        app(["generate", *args], standalone_mode=False)
    finally:
        wall = time.perf_counter() - t
        threads = sorted({th for what, th in SPENT if what == "shard"})
        print(f"wall {wall:.1f} s, {len(threads)} shard threads")
        print("| thread | shards s | session runs s (runs) | noise s | rest of the shards s |")
        print("|---:|---:|---:|---:|---:|")
        for i, th in enumerate(threads):
            shard, run = SPENT["shard", th], SPENT["session run", th]
            noise = SPENT["noise", th]
            print(f"| {i} | {shard:.1f} | {run:.1f} ({CALLS['session run', th]}) | {noise:.1f} "
                  f"| {shard - run - noise:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
