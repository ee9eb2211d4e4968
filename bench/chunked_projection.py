"""Chunked projection scores (export/chunked.py): rows per chunk against one product over all rows.

    python bench/chunked_projection.py MODEL.pt [--chunks 0 256 1024 4096] [--size 2048]

Exports MODEL.pt once per --chunks value (0: one product over all rows, as exported before the
Loop) and renders the same --size^2 region (seed 1) with each, one intra-op thread, through the
tiler's render_region: at 256^2 tiles and at the tile the tiler gives the file (tilegen/model.py:
512 for a chunked file, 256 for an unchunked one). The variants take turns, --repeat rounds; the
table gives the median MP/s and the ratio to the unchunked file at its own tile. Every variant's
pixels are checked equal to the unchunked file's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from export.onnx_export import model_info, save, torch_to_onnx  # noqa: E402
from tilegen.model import open_model, render_region  # noqa: E402
from train.checkpoint import load_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--chunks", type=int, nargs="+", default=[0, 256, 1024, 4096])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    network, meta = load_generator(args.model)
    info = model_info(network, meta)
    tmp = Path(tempfile.mkdtemp())
    models = {}
    for rows in args.chunks:
        path = tmp / f"c{rows}.onnx"
        save(torch_to_onnx(network, info, chunk_rows=rows), path)
        models[rows] = open_model(path, 1)
    n = args.size
    ref = render_region(models[args.chunks[0]], 1, 0, 0, n, n)
    for m in models.values():  # also the warm-up
        assert np.array_equal(render_region(m, 1, 0, 0, n, n), ref), m.path
    cases = [(rows, tile) for rows in args.chunks for tile in sorted({256, models[rows].tile})]
    times: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    for _ in range(args.repeat):
        for rows, tile in cases:
            t0 = time.perf_counter()
            render_region(models[rows], 1, 0, 0, n, n, tile=tile, dtype="uint8")
            times[(rows, tile)].append(time.perf_counter() - t0)
    mp = n * n / 1e6
    base = mp / statistics.median(times[(args.chunks[0], models[args.chunks[0]].tile)])
    print(f"model: {args.model}; {n}^2 region, 1 thread, median of {args.repeat}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("\n| rows per chunk | tile | MP/s | vs unchunked |\n|---|---:|---:|---:|")
    for rows, tile in cases:
        speed = mp / statistics.median(times[(rows, tile)])
        own = " (its own)" if tile == models[rows].tile else ""
        label = rows or "all (unchunked)"
        print(f"| {label} | {tile}{own} | {speed:.3f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
