"""Memory estimates against measured peaks: what `generate` and `tiles` say they will hold before
they start, beside the peak resident memory of the whole process tree while they run.

    python bench/memory_estimates.py [--size 8192]

Each command runs in its own process with the bundled default model; a sampler adds up the
resident set size of the process and all its children every 20 ms. The estimate is the one the
command checks against the free memory (tilegen/memory.py), plus its fixed BASE. Writes nothing
but the stores under out/memory_estimates/ (deleted at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "memory_estimates"


def tree_rss(p: psutil.Process) -> int:
    total = 0
    for q in [p, *p.children(recursive=True)]:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def peak_of(args: list[str]) -> tuple[int, str]:
    """(peak summed RSS in bytes, stderr) of `tilegen ARGS`."""
    cmd = [sys.executable, "-c", "import cli; cli.main()", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.02)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {err.strip().splitlines()[-1]}")
    return peak, err


def generate_estimate(err: str) -> float:
    """MB from the line generate logs: '... about 1.2 GB in all'."""
    line = next(ln for ln in err.splitlines() if "in all" in ln)
    value, unit = line.rsplit("about ", 1)[1].split()[:2]
    return float(value) * {"MB": 1, "GB": 1000}[unit]


def tiles_estimate(n: int, tile: int) -> float:
    """MB that `tiles` checks against the free memory for an n x n RGB uint8 store."""
    from tilegen import memory
    from tilegen.threads import usable_cores

    side = min(tile, n)
    at_once = min(usable_cores(), (-(-n // tile)) ** 2)
    return (memory.BASE + memory.tiles_bytes(side, side, 3, 1, at_once)) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    a = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    n = a.size
    store = OUT / "s.zarr"
    runs = [
        ("generate, threads", ["generate", "-o", str(store), "--size", str(n), str(n),
                               "--no-progress", "--overwrite"]),
        ("generate, processes x 8", ["generate", "-o", str(OUT / "p.zarr"), "--size", str(n),
                                     str(n), "--scheduler", "processes", "--workers", "8",
                                     "--no-progress"]),
        ("generate, local x 4", ["generate", "-o", str(OUT / "l.zarr"), "--size", str(n), str(n),
                                 "--scheduler", "local", "--workers", "4", "--no-progress"]),
        ("tiles, --tile 4096 png", ["tiles", str(store), "-o", str(OUT / "t"), "--tile", "4096",
                                    "--no-progress"]),
        ("tiles, --tile 8192 tif", ["tiles", str(store), "-o", str(OUT / "u"), "--tile", "8192",
                                    "--format", "tif", "--no-progress"]),
    ]  # fmt: skip
    print(f"# {n}x{n}, bundled default model; {os.cpu_count()} cores")
    print("| command | estimate | measured peak (process tree RSS) | measured / estimate |")
    print("|---|---:|---:|---:|")
    for label, args in runs:
        peak, err = peak_of(args)
        if args[0] == "generate":
            est = generate_estimate(err)
        else:
            est = tiles_estimate(n, int(args[args.index("--tile") + 1]))
        print(f"| {label} | {est:.0f} MB | {peak / 1e6:.0f} MB | {peak / 1e6 / est:.2f} |",
              flush=True)  # fmt: skip
    shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
