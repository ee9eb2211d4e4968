"""Which noise levels does a trained generator use? Re-draw one level's noise, keep the others.

    python bench/noise_levels.py MODEL.pt [EXEMPLAR] [--size 256] [--samples 4]

For each noise input z_k (0: the coarsest, 32-pixel grid; the last: one value per pixel) it
prints the root-mean-square change of the output when only z_k is drawn again, over the whole
image and after a 16x16 average (the layout: what a 64-pixel structure is made of). A level whose
change is near 0 is dead: the network ignores that noise, and the structures of that size cannot
vary from one place to the next. With EXEMPLAR it also prints the spread of the 16x16 averages of
the exemplar against the samples': how much large-scale variation the texture has and the
generator paints. The network alone is measured (a patch projection is left out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

COARSE = 16  # the averaging window for "layout"


def rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


def layout_spread(images: torch.Tensor) -> float:
    """Standard deviation of the 16x16 block means, per channel, averaged over channels."""
    return float(F.avg_pool2d(images, COARSE).std(dim=(0, 2, 3)).mean())


@torch.no_grad()
def level_changes(model, size: int, samples: int, seed: int = 0) -> list[tuple[float, float]]:
    """(rms change, rms change of the 16x16 averages) per noise level, coarsest first."""
    from train.generator import training_noise

    gen = torch.Generator().manual_seed(seed)
    noise = training_noise(model.cfg, samples, size, gen)
    base = model(*noise)
    out = []
    for k in range(len(noise)):
        redrawn = list(noise)
        redrawn[k] = torch.rand(noise[k].shape, generator=gen)
        change = model(*redrawn) - base
        out.append((rms(change), rms(F.avg_pool2d(change, COARSE))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("exemplar", type=Path, nargs="?")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from tilegen.imageio import read_image
    from train.checkpoint import load_generator
    from train.generator import training_noise, without_projection

    model, _ = load_generator(args.model)
    model = without_projection(model).eval()
    print(f"{args.model}: change when one level's noise is drawn again (coarsest first)")
    print("| level | grid (px) | rms change | rms change of 16x16 means |")
    print("|---:|---:|---:|---:|")
    levels = model.cfg.levels
    for k, (whole, coarse) in enumerate(level_changes(model, args.size, args.samples)):
        print(f"| {k} | {2 ** (levels - 1 - k)} | {whole:.4f} | {coarse:.4f} |")
    if args.exemplar is not None:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            samples = model(*training_noise(model.cfg, args.samples, args.size, gen))
        ex = torch.from_numpy(np.ascontiguousarray(read_image(args.exemplar).transpose(2, 0, 1)))
        print(
            f"spread of the 16x16 means: samples {layout_spread(samples):.4f}, "
            f"exemplar {layout_spread(ex[None].float()):.4f}"
        )


if __name__ == "__main__":
    main()
