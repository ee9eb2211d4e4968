"""Would patch projections at coarser levels mend a generator's layout? (issue #12's lead)

    python bench/coarse_projection.py VARIANT TEXTURE [--levels 4 3 2 1] [--seeds 6]
                                      [--big-patch 8] [--alpha 1]

Takes bench/generator_quality.py's model out/generator_quality/VARIANT/TEXTURE.pt, keeps its
network, and scores 256^2 samples (seeds 0..N-1, the yardstick's scorers: patch distance and
structure figure) after a chain of
projections computed on whole images, in torch (not exported: a prototype to weigh the design):

    for k in LEVELS (coarse first):   d = pool_2^k(x)                     (mean of 2^k x 2^k)
                                      x = x + alpha up_2^k(P_k(d) - d)    (bilinear)
    [--big-patch P: x = P_big(x), P x P patches on a stride-P/2 grid]
    finally                           x = P_0(x)                          (the model's own kind)

P_k replaces every 4x4 patch of its image on a stride-2 grid by the exemplar patch (of the
exemplar pooled the same way) the transport map assigns it, sigma(i) = argmin_j ||x_i - y_j||^2
- psi_j, and averages the overlaps. Each stage's psi (J = 2000 patches) is fitted, as
`fit_projection` fits the model's, on the network's samples as the stages before it leave them
(--fit samples of 256^2, 30 averaged steps each), so a later stage sees what it will be given.
With no --levels and no --big-patch it is the finest projection alone, refitted the same way:
the baseline to compare with. Results: docs/history/models.md. The model now has
levels 2, 1 built into it and its exported graph (train/generator.py, CoarseProjection;
`train --coarse`); this prototype stays to screen other levels without exporting anything.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.generator_quality import OUT, exemplar_path, structure_scorer  # noqa: E402
from tilegen.evaluator import Evaluator  # noqa: E402
from tilegen.imageio import read_image, write_image  # noqa: E402
from train.checkpoint import load_generator  # noqa: E402
from train.generator import sample_tile, without_projection  # noqa: E402
from train.patch_ot import (  # noqa: E402
    OTConfig,
    SemiDiscreteOT,
    extract_patches,
    sample_target_patches,
)
from train.synth import to_tensor  # noqa: E402


def pool(x: torch.Tensor, k: int) -> torch.Tensor:
    return x if k == 0 else F.avg_pool2d(x, 2**k)


def project(ot: SemiDiscreteOT, x: torch.Tensor, p: int) -> torch.Tensor:
    """Each p x p patch on the stride-p/2 grid -> its assigned target; overlaps averaged."""
    cols = F.unfold(x, p, stride=p // 2)
    sigma, _ = ot.assign(cols[0].t())
    chosen = ot.y[sigma].t()[None]
    summed = F.fold(chosen, x.shape[-2:], p, stride=p // 2)
    return summed / F.fold(torch.ones_like(chosen), x.shape[-2:], p, stride=p // 2)


class Stage:
    """One projection: at level k (a correction added back, upsampled) or at full resolution
    (k = 0: the image replaced)."""

    def __init__(
        self, exemplar: torch.Tensor, k: int, patch: int, gen: torch.Generator, alpha: float = 1.0
    ):
        cfg = OTConfig(patch=patch, scales=1, n_target=2000)
        self.k, self.patch, self.alpha = k, patch, alpha
        self.ot = SemiDiscreteOT(sample_target_patches(pool(exemplar, k), cfg, gen)[0])

    def fit(self, x: torch.Tensor, steps: int, gen: torch.Generator) -> None:
        patches = extract_patches(pool(x, self.k), self.patch, periodic=False)
        self.ot.ascend(patches, steps, 1.0, 4096, gen)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 0:
            return project(self.ot, x, self.patch)
        d = pool(x, self.k)
        delta = project(self.ot, d, self.patch) - d
        up = F.interpolate(delta, scale_factor=2**self.k, mode="bilinear", align_corners=False)
        return x + self.alpha * up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variant")
    ap.add_argument("texture")
    ap.add_argument("--levels", type=int, nargs="*", default=[], help="coarse levels, in order")
    ap.add_argument("--big-patch", type=int, default=0, help="a full-resolution stage first")
    ap.add_argument("--seeds", type=int, default=6, help="samples scored")
    ap.add_argument("--alpha", type=float, default=1.0, help="share of a coarse change added")
    ap.add_argument("--fit", type=int, default=48, help="samples psi is fitted on")
    ap.add_argument("--save", help="a folder for the scored samples (PNG)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    exemplar = read_image(exemplar_path(a.texture))
    model, _ = load_generator(OUT / a.variant / f"{a.texture}.pt")
    network = without_projection(model).eval()
    gen = torch.Generator().manual_seed(0)
    ex = to_tensor(exemplar, "cpu")
    plan = [(k, 4) for k in a.levels] + ([(0, a.big_patch)] if a.big_patch else []) + [(0, 4)]

    stages: list[Stage] = []

    def chain(x: torch.Tensor) -> torch.Tensor:
        for stage in stages:
            x = stage(x)
        return x

    with torch.no_grad():
        fit_seeds = torch.randint(2**20, 2**31, (a.fit,), generator=gen).tolist()
        samples = [sample_tile(network, s, 0, 0, 256, 256) for s in fit_seeds]
        for k, p in plan:  # each stage fitted on what the stages before it output
            stage = Stage(ex, k, p, gen, a.alpha if k else 1.0)
            for x in samples:
                stage.fit(chain(x), 30, gen)
            stages.append(stage)
        score = Evaluator(exemplar, n=1000)
        scores, shapes = [], []
        for seed in range(a.seeds):
            x = chain(sample_tile(network, seed, 0, 0, 256, 256)).clamp(0, 1)
            image = (np.rint(x[0].permute(1, 2, 0).numpy() * 255) / 255).astype(np.float32)
            scores.append(score(image)["debiased"])
            shapes.append(structure_scorer(a.texture)(image))
            if a.save:
                write_image(Path(a.save) / f"{a.texture}_{seed}.png", image)
    print(
        f"{a.texture} levels {a.levels} alpha {a.alpha} big patch {a.big_patch}: "
        f"mean {statistics.mean(scores):.6f} {[round(s, 6) for s in scores]} structure "
        f"{statistics.mean(shapes):.2f} {[round(s, 2) for s in shapes]} "
        f"({time.perf_counter() - t:.0f} s)"
    )


if __name__ == "__main__":
    main()
