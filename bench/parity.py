"""Byte parity between runtimes: `tilegen generate`'s bytes against onnxruntime-node,
onnxruntime-web (wasm) in Node and the `tilegen view` page in headless Chromium, on whole canvases.

    python bench/parity.py [--model tilegen/assets/default.onnx] [--size 800 1280]
                           [--seeds 3 5 9] [--no-browser]

The windowed model is wrapped into the dynamic self-contained form (`tilegen export MODEL
--self-contained`, no torch), which Node and the page run; Python renders the same canvases
through the tiler's windowed path. Canvases: each seed at the origin, at a negative origin and
at an origin past 2^31, each not periodic and periodic (1024 x 2048). Prints one row per
runtime (canvases byte-identical, bytes that differ, the largest difference in 8-bit levels),
and where the differing bytes sit (4x4 blocks of the projection's patch grid or single pixels).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from runtimes import (  # noqa: E402
    browser_tiles,
    differences,
    js_tiles,
    no_chromium,
    no_node,
    no_ort_web_node,
    python_tiles,
)

ORIGINS = [(0, 0), (-1000, -3000), (2**31 + 5, -(2**31) - 77)]
PERIOD = (1024, 2048)


def cases(seeds, h, w):
    return [
        (seed, y0, x0, h, w, period)
        for seed in seeds
        for y0, x0 in ORIGINS
        for period in (None, PERIOD)
    ]


def report(name: str, got, want, seconds: float | None = None) -> None:
    rows = differences(got, want)
    exact = sum(n == 0 for n, _, _ in rows)
    differ = sum(n for n, _, _ in rows)
    total = sum(t for _, _, t in rows)
    worst = max(m for _, m, _ in rows)
    per = [n for n, _, _ in rows]
    t = f", {seconds:.1f} s" if seconds is not None else ""
    print(
        f"| {name} | {exact} of {len(rows)} | {differ} of {total:,} ({differ / total * 1e6:.1f} "
        f"per million) | {worst} | {min(per)}-{max(per)} |{t}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "tilegen" / "assets" / "default.onnx"))
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1280), metavar=("H", "W"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 9])
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="Node runtimes' threads")
    args = ap.parse_args()
    from export.onnx_export import wrap_verified
    from tilegen.model import open_model

    info = open_model(args.model).info
    todo = cases(args.seeds, *args.size)
    print(f"# {args.model}: {len(todo)} canvases of {args.size[0]}x{args.size[1]}, seeds "
          f"{args.seeds}, origins {ORIGINS}, not periodic and periodic {PERIOD}")  # fmt: skip
    print(f"# {platform.machine()}, {os.cpu_count()} cores, {platform.processor()}")
    t = time.perf_counter()
    want = python_tiles(args.model, todo)
    print(f"# python (onnxruntime, the tiler's path): {time.perf_counter() - t:.1f} s")
    print("| runtime | canvases identical | bytes that differ | max levels | per canvas |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        web = Path(d) / "web.onnx"
        wrap_verified(args.model, web, None)
        for kind, why in (("node", no_node()), ("web", no_ort_web_node())):
            name = {"node": "onnxruntime-node", "web": "onnxruntime-web (wasm) in Node"}[kind]
            if why:
                print(f"| {name} | skipped: {why} | | | |")
                continue
            got, facts = js_tiles(kind, web, todo, info.out_channels, args.threads)
            report(f"{name} {facts['version']}", got, want, facts["seconds"])
        if args.no_browser:
            return
        if no_chromium():
            print(f"| Chromium | skipped: {no_chromium()} | | | |")
            return
        from browser import Browser

        t = time.perf_counter()
        with Browser() as b:
            got = browser_tiles(b, web, todo)
        report("onnxruntime-web (wasm) in headless Chromium", got, want, time.perf_counter() - t)


if __name__ == "__main__":
    main()
