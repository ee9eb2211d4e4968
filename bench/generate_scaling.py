"""`tilegen generate` scaling: throughput and peak RSS from 16 MP to 1 GP, against the model's
single-window throughput measured in the same run.

    python bench/generate_scaling.py                       # 4096^2 (16 MP) and 16384^2 (256 MP)
    python bench/generate_scaling.py --sizes 32768         # 1 GP (about 15-20 min on 2 cores)
    python bench/generate_scaling.py --sizes 4096 16384 32768 --crop bench/generate_crop.png
    python bench/generate_scaling.py --sizes 32768 --model OLD.onnx --model NEW.onnx  # side by side

Model: tilegen/assets/default.onnx when it exists, else (needs torch) a random-init width-16,
levels-6 generator, BatchNorm folded and its output rescaled to span [0, 1], exported with
export/onnx_export.py to bench/out/random_l6w16.onnx: the same architecture and cost as the
default model, not its looks. The report says which one ran.

Single window: one graph evaluation of a 2048^2 output window with every core as onnxruntime
intra-op threads (median of 3 after a warm-up), both "run only" (onnxruntime alone) and "with
noise" (plus filling its noise windows, i.e. tilegen.model.render_tile); measured before and after
every size, each size compared with the mean of the two around it (the machine may be shared).
Each size runs the real CLI (`tilegen generate ... -o OUT.zarr`, default scheduler, chunk and
shard, pyramid on) in its own process; its peak RSS is the largest sum of RSS over the process
tree, sampled every 50 ms. The tiled throughput is level-0 megapixels over the render phase (the
CLI's own figure); the wall time includes startup and the pyramid. Stores are deleted afterwards
unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = ROOT / "tilegen" / "assets" / "default.onnx"
OUT = ROOT / "bench" / "out"


def bench_model() -> tuple[Path, str]:
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, "bundled default model (tilegen/assets/default.onnx)"
    path = OUT / "random_l6w16.onnx"
    what = "random-init width-16 levels-6 generator, BN folded (stand-in for the default model)"
    if not path.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import fixture_models  # the test fixtures' generator, exported for real

        made, _ = fixture_models(OUT, levels=6, width=16)
        made.rename(path)
    return path, what


def single_window(model_path: Path, size: int = 2048, reps: int = 3) -> dict:
    """One evaluation of a size^2 window using every core (onnxruntime intra-op threads)."""
    from tilegen.model import noise_feeds, open_model
    from tilegen.threads import usable_cores

    model = open_model(model_path, usable_cores(), "cpu")
    run_only, with_noise = [], []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        feeds, _ = noise_feeds(model.info, 1, 0, 0, size, size)
        t1 = time.perf_counter()
        model.session.run(["image"], feeds)
        t2 = time.perf_counter()
        if i:  # the first is the warm-up
            run_only.append(t2 - t1)
            with_noise.append(t2 - t0)
    mp = size * size / 1e6
    return {
        "window": size,
        "threads": usable_cores(),
        "run_only_mp_s": mp / statistics.median(run_only),
        "with_noise_mp_s": mp / statistics.median(with_noise),
    }


def tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_size(model: Path, size: int, store: Path, extra: list[str]) -> dict:
    shutil.rmtree(store, ignore_errors=True)
    cmd = [
        sys.executable, "-c", "import cli; cli.main()", "generate", str(model), "-o", str(store),
        "--size", str(size), str(size), "--seed", "1", "--device", "cpu", "--no-progress", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    stdout, stderr = (s.decode() for s in proc.communicate())
    if proc.returncode:
        raise SystemExit(f"generate {size}^2 failed ({proc.returncode}):\n{stderr}")
    m = re.search(r"([\d.]+) MP in ([\d.]+) s", stdout)
    mp, render_s = float(m.group(1)), float(m.group(2))
    return {
        "size": size,
        "megapixels": size * size / 1e6,
        "render_s": render_s,
        "wall_s": wall,
        "tiled_mp_s": mp / render_s,
        "peak_rss_mb": peak / 2**20,
        "plan": stderr.strip().splitlines()[0] if stderr.strip() else "",
        "store_mb": sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20,
    }


def save_crop(store: Path, path: Path, side: int = 1024) -> None:
    from tilegen import zarr_store
    from tilegen.imageio import write_image

    arr = zarr_store.open_level(store, 0, "r")
    _, h, w = arr.shape
    y, x = (h - side) // 2, (w - side) // 2  # the middle of the texture
    crop = zarr_store.read_region(str(store), 0, y, x, side, side)
    write_image(path, crop.transpose(1, 2, 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument(
        "--model", type=Path, action="append", help="a tilegen .onnx, repeatable [default: above]"
    )
    ap.add_argument("--keep", action="store_true", help="keep the stores in bench/out/")
    ap.add_argument("--crop", type=Path, help="save a 1024^2 crop of the largest store here")
    ap.add_argument("--json", type=Path, default=OUT / "generate_scaling.json")
    ap.add_argument("extra", nargs="*", help="more generate options, after --")
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    models = [(m, str(m)) for m in args.model] if args.model else [bench_model()]
    from tilegen.threads import usable_cores

    what = "; ".join(w for _, w in models)
    print(f"models: {what}\nmachine: {platform.processor() or platform.machine()}, "
          f"{usable_cores()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip

    def window(model: Path) -> dict:
        # In a child process: a 2048^2 window of a model with a projection holds ~8 GB in
        # onnxruntime's arena, which stays in this process's RSS after the session is gone, and
        # two models' windows ran a 24 GB machine out of memory.
        code = (
            "import json, sys, pathlib; sys.path.insert(0, 'bench'); from generate_scaling "
            "import single_window; print(json.dumps(single_window(pathlib.Path(sys.argv[1]))))"
        )
        cmd = [sys.executable, "-c", code, str(model.resolve())]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        sw = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{model.name}: single window {sw['window']}^2, {sw['threads']} threads: "
            f"{sw['run_only_mp_s']:.3f} MP/s run only, {sw['with_noise_mp_s']:.3f} MP/s with "
            f"noise (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        return sw

    # The machine may be shared: measure the single window before and after every size and
    # compare each size with the mean of the two measurements around it. Several models run
    # one after the other at each size, so they see the same machine.
    windows = {m: [window(m)] for m, _ in models}
    rows = []
    for size in sorted(args.sizes):
        for model, _ in models:
            store = OUT / f"scaling_{size}.zarr"
            r = {"model": model.name, **run_size(model, size, store, args.extra)}
            r["load_after"] = os.getloadavg()[0]
            windows[model].append(window(model))
            for key in ("run_only", "with_noise"):
                ref = (windows[model][-2][f"{key}_mp_s"] + windows[model][-1][f"{key}_mp_s"]) / 2
                r[f"single_{key}_mp_s"] = ref
                r[f"vs_{key}"] = r["tiled_mp_s"] / ref
            rows.append(r)
            print(json.dumps(r), flush=True)
            if args.crop and size == max(args.sizes):
                crop = args.crop.with_stem(f"{args.crop.stem}_{model.stem}")
                save_crop(store, crop)
                print(f"crop: {crop}")
            if not args.keep:
                shutil.rmtree(store, ignore_errors=True)
    print()
    print("| model | output | MP | render s | wall s | tiled MP/s | single window MP/s "
          "(run only / with noise) | tiled vs single | peak RSS MB | store MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['size']}² | {r['megapixels']:.0f} | {r['render_s']:.1f} | "
            f"{r['wall_s']:.1f} | "
            f"{r['tiled_mp_s']:.3f} | {r['single_run_only_mp_s']:.3f} / "
            f"{r['single_with_noise_mp_s']:.3f} | {100 * r['vs_run_only']:.0f}% / "
            f"{100 * r['vs_with_noise']:.0f}% | {r['peak_rss_mb']:.0f} | {r['store_mb']:.0f} |"
        )
    if len(rows) > 1:
        lo, hi = min(r["peak_rss_mb"] for r in rows), max(r["peak_rss_mb"] for r in rows)
        print(f"\npeak RSS spread: {100 * (hi - lo) / lo:.0f}% ({lo:.0f}-{hi:.0f} MB)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "models": what,
                "single_window": {str(k): v for k, v in windows.items()},
                "runs": rows,
            },  # fmt: skip
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
