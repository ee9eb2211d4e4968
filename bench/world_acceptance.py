"""A world at full size through the CLI: exact tiles, periodic, kill and resume, cost, memory.

    python bench/world_acceptance.py                       # 16384^2 from a 128^2 layout
    python bench/world_acceptance.py --scale 1 --cell 256  # the 64^2 layout, 16384^2 too

Layout: the bundled 64x64 three-label layout with each cell repeated `--scale` x `--scale`
times (bench/world_cost.py `scaled_layout`: the same map at twice its resolution by default),
painted at `--cell` pixels per cell with the bundled world models, seed 1, every `tilegen
world` default (store, threads scheduler, pyramid). Each command runs in its own process; its
peak RSS is the largest sum over its process tree (bench/generate_scaling.py `tree_rss`), its
CPU time that of the finished children (user + system).

1. `tilegen generate` of the grass model at the same size (the cost and memory reference).
2. `tilegen world` into a store.
3. The same command, killed (SIGKILL, the whole process group) after `--kill-at` of run 2's
   time, then run again: it resumes. Every level-0 pixel of the two stores is compared
   (SHA-256 of the level read in bands).
4. One window: regions of 1536x1536 on the 1536 grid, straddling the 2048-pixel shards, chosen
   where the most labels meet, read from the store and evaluated in one window
   (tilegen.world.render_region with tile 1536): byte-identical or not.
5. Each label's own texture: a 256x256 crop where that label's weight is 1 throughout, against
   its model's own render of the same place (tilegen.model.render_region).
6. `--periodic`: the 1536x1536 region centred on the corner where the four edges meet,
   evaluated across the edges with the period, against the store's four corners.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from generate_scaling import tree_rss  # noqa: E402
from world_cost import LEGEND, OUT, labels_arg, scaled_layout  # noqa: E402

SEED, REGION = 1, 1536


def cli(args: list[str], kill_after: float | None = None) -> dict:
    """Run `tilegen ARGS` in its own process group: wall s, CPU s, peak RSS MB, killed."""
    cmd = [sys.executable, "-c", "import cli; cli.main()", *args, "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    peak, killed = 0, False
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        if kill_after is not None and time.perf_counter() - t0 > kill_after:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    _, err = proc.communicate(timeout=60)
    if proc.returncode and not killed:
        raise SystemExit(f"tilegen {args[0]} failed ({proc.returncode}):\n{err.decode()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss_mb": peak / 2**20, "killed": killed}


def world_args(layout: Path, out: Path, cell: int, periodic: bool = False) -> list[str]:
    args = ["world", str(layout), "-o", str(out), "--cell", str(cell), "--seed", str(SEED),
            "--device", "cpu"]  # fmt: skip
    for label in labels_arg():
        args += ["--label", label]
    return args + (["--periodic"] if periodic else [])


def digest(store: Path) -> str:
    """SHA-256 of the store's level 0, read in bands of 2048 rows."""
    from tilegen import zarr_store

    _, h, w = zarr_store.open_level(store, 0, "r").shape
    sha = hashlib.sha256()
    for y in range(0, h, 2048):
        sha.update(zarr_store.read_region(str(store), 0, y, 0, min(2048, h - y), w).tobytes())
    return sha.hexdigest()


def busiest_regions(world, size: tuple[int, int], count: int = 3) -> list[tuple[int, int]]:
    """The `count` regions of the REGION grid (not touching the last row or column) where the
    most labels meet, most first."""
    found = []
    for y in range(REGION, size[0] - REGION, REGION):
        for x in range(REGION, size[1] - REGION, REGION):
            present, weights = world.field.weights(y, x, REGION, REGION)
            mixed = float((weights.max(axis=0) < 1).mean()) if len(present) > 1 else 0.0
            found.append((len(present), mixed, y, x))
    found.sort(reverse=True)
    return [(y, x) for _, _, y, x in found[:count]]


def one_window(store: Path, world, size) -> list[str]:
    from tilegen import world as worlds
    from tilegen import zarr_store

    lines = []
    for y, x in busiest_regions(world, size):
        whole = worlds.render_region(world, SEED, y, x, REGION, REGION, tile=REGION, dtype="uint8")
        same = np.array_equal(zarr_store.read_region(str(store), 0, y, x, REGION, REGION), whole)
        labels = len(world.field.reaching(y, x, REGION, REGION))
        lines.append(f"region ({y}, {x}) {REGION}^2, {labels} labels reach it: store == one "
                     f"window: {same}")  # fmt: skip
    return lines


def own_texture(store: Path, world, size) -> list[str]:
    from tilegen import zarr_store
    from tilegen.model import render_region as model_region

    lines, side = [], 256
    for label, model in enumerate(world.models):
        spot = None
        for y in range(0, size[0] - side, side):
            for x in range(0, size[1] - side, side):
                present, weights = world.field.weights(y, x, side, side)
                if present == [label]:
                    spot = (y, x)
                    break
            if spot:
                break
        if spot is None:
            lines.append(f"label {label}: no {side}^2 crop of weight 1 on the search grid")
            continue
        own = model_region(model, SEED, *spot, side, side, dtype="uint8")
        same = np.array_equal(zarr_store.read_region(str(store), 0, *spot, side, side), own)
        lines.append(f"label {label} ({Path(model.path).name}) at {spot}: store == its model's "
                     f"own render: {same}")  # fmt: skip
    return lines


def corner(store: Path, world, size) -> str:
    from tilegen import world as worlds
    from tilegen import zarr_store

    h, w, half = size[0], size[1], REGION // 2
    across = worlds.render_region(world, SEED, h - half, w - half, REGION, REGION, period=size,
                                  dtype="uint8")  # fmt: skip
    quads = [[zarr_store.read_region(str(store), 0, y, x, half, half) for x in (w - half, 0)]
             for y in (h - half, 0)]  # fmt: skip
    stitched = np.concatenate([np.concatenate(row, axis=2) for row in quads], axis=1)
    return f"periodic: the corner across the edges == the store's four corners: " \
           f"{np.array_equal(across, stitched)}"  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=2, help="layout cells per bundled layout cell")
    p.add_argument("--cell", type=int, default=128, help="output pixels per layout cell")
    p.add_argument("--kill-at", type=float, default=0.5, help="share of run 2's time")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    args = p.parse_args()
    from tilegen import world as worlds

    OUT.mkdir(parents=True, exist_ok=True)
    layout = scaled_layout(args.scale)
    spec = worlds.plan_world(str(layout), labels_arg(), cell=args.cell)
    size = spec.size
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; layout {spec.layout_shape} at {args.cell}: "
          f"{size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} MP)")  # fmt: skip
    stores = {k: OUT / f"accept_{k}.zarr" for k in ("generate", "world", "resumed", "periodic")}
    for s in stores.values():
        shutil.rmtree(s, ignore_errors=True)
    single = ["generate", str(LEGEND["#3a7d2c"]), "-o", str(stores["generate"]), "--size",
              str(size[0]), str(size[1]), "--seed", str(SEED), "--device", "cpu"]  # fmt: skip
    runs = {"generate": cli(single), "world": cli(world_args(layout, stores["world"], args.cell))}
    cut = cli(world_args(layout, stores["resumed"], args.cell),
              kill_after=args.kill_at * runs["world"]["wall"])  # fmt: skip
    runs["killed"], runs["resumed"] = cut, cli(world_args(layout, stores["resumed"], args.cell))
    runs["periodic"] = cli(world_args(layout, stores["periodic"], args.cell, periodic=True))
    for name, r in runs.items():
        print(f"{name}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, peak RSS "
              f"{r['rss_mb']:.0f} MB{' (killed)' if r['killed'] else ''}")  # fmt: skip
    g, w = runs["generate"], runs["world"]
    print(f"world / generate: wall {w['wall'] / g['wall']:.2f}x, CPU {w['cpu'] / g['cpu']:.2f}x, "
          f"peak RSS {w['rss_mb'] / g['rss_mb']:.2f}x")  # fmt: skip
    same = digest(stores["world"]) == digest(stores["resumed"])
    print(f"killed at {cut['wall']:.0f} s and resumed: level 0 identical to the uninterrupted run: "
          f"{same}")  # fmt: skip
    world = worlds.open_world(spec, SEED)
    for line in one_window(stores["world"], world, size) + own_texture(stores["world"], world,
                                                                       size):  # fmt: skip
        print(line)
    pspec = worlds.plan_world(str(layout), labels_arg(), cell=args.cell, periodic=True)
    print(corner(stores["periodic"], worlds.open_world(pspec, SEED), size))
    if not args.keep:
        for s in stores.values():
            shutil.rmtree(s, ignore_errors=True)


if __name__ == "__main__":
    main()
