"""Work the synthesis can skip: quality and CPU time of `synth` with and without each cut.

    python bench/synth_cuts.py [--size 128] [--iters 200] [--seeds 2] [--textures ...]

Cuts (train/patch_ot.py OTConfig): `loss_stride=2`, the loss at the finest level on a stride-2
grid of patches at a random offset per iteration (a quarter of that level's patches); and
`psi_batch=2048`, half the source patches per psi step. Each variant synthesises every texture
from the same seeds in one single-threaded process (CPU time, so a busy machine does not skew
the ratios) and is scored with `tilegen.evaluate` (debiased patch OT, 1000 patches x 3 draws).
Prints a markdown table: mean distance over seeds and textures relative to the default, and CPU
seconds per iteration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tilegen.evaluator import Evaluator  # noqa: E402
from tilegen.imageio import quantize, read_image  # noqa: E402
from train.patch_ot import OTConfig  # noqa: E402
from train.synth import SynthConfig, synthesize  # noqa: E402

VARIANTS = {
    "default": {},
    "loss_stride=2": {"loss_stride": 2},
    "loss_stride=2, psi_batch=2048": {"loss_stride": 2, "psi_batch": 2048},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--textures", nargs="+", default=["bark", "grass", "dirt_pebbles"])
    p.add_argument("--exemplar-size", type=int, default=128, help="128: tests/data/*_128.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    folder = ROOT / "tests/data" if args.exemplar_size == 128 else ROOT.parent / "shared/textures"
    suffix = "_128.png" if args.exemplar_size == 128 else ".png"
    rows = {}
    for name, change in VARIANTS.items():
        scores, cpu = [], 0.0
        for texture in args.textures:
            exemplar = read_image(folder / f"{texture}{suffix}")
            score = Evaluator(exemplar, n=1000)
            for seed in range(args.seeds):
                cfg = SynthConfig(
                    size=(args.size, args.size),
                    iters=args.iters,
                    seed=seed,
                    device="cpu",
                    ot=replace(OTConfig(), **change),
                )
                t = time.process_time()
                image = synthesize(exemplar, cfg)
                cpu += time.process_time() - t
                image = quantize(image, 8).astype("float32") / 255.0  # as a user gets it
                scores.append(score(image)["debiased"])
        rows[name] = (scores, cpu / (len(args.textures) * args.seeds * args.iters))
        print(name, [f"{s:.6f}" for s in scores], f"{rows[name][1]:.3f} s/it", flush=True)
    base, base_t = rows["default"]
    print(f"\n{args.size}^2, {args.iters} iterations, seeds 0-{args.seeds - 1}, {args.textures}")
    print("| variant | mean debiased | vs default | CPU s / iteration | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, (scores, t) in rows.items():
        ratios = [s / b for s, b in zip(scores, base)]
        print(
            f"| {name} | {statistics.mean(scores):.6f} | {statistics.mean(ratios):.3f} | "
            f"{t:.3f} | {base_t / t:.2f}x |"
        )


if __name__ == "__main__":
    main()
