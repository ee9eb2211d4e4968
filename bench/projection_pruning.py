"""How much of the projection's work an exact lower bound could skip (issue #33's speed lead).

    python bench/projection_pruning.py [MODEL.pt] [--size 256] [--seed 5] [--dims 4 8 12 16]

The final projection scores every patch x against all J exemplar patches y_j,
score_j = ||x - y_j||^2 - psi_j (in 8-bit levels), and keeps the argmin: J x 48 products a patch.
With P the top-k principal directions of the y_j and R the rest,

    LB_j = ||P(x - y_j)||^2 + (|R x| - |R y_j|)^2 - psi_j  <=  score_j     (Pythagoras, then the
                                                                          reverse triangle
                                                                          inequality on R)

costs J x k products. A shortlist of the K smallest LB_j holds the argmin for certain when the
(K+1)-th smallest LB exceeds the best exact score among the K; rows that fail that test would
be scored in full. Prints, per k: the variance the k directions hold, how many candidates the
bound cannot rule out (mean, 99th percentile, max), and per K the share of rows whose shortlist
holds the argmin and the share it certifies. Patches: a sample of the model's network (its
projection's input), rounded to 8-bit levels as the projection rounds them. numpy, float64.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from train.checkpoint import load_generator  # noqa: E402
from train.generator import sample_tile, without_projection  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def patches_and_targets(model_path: Path, size: int, seed: int):
    """(x: the network's patches on the stride-2 grid, y_j, psi_j), all in 8-bit levels."""
    model, _ = load_generator(model_path, "cpu")
    proj = model.eval().project
    if proj is None:
        raise SystemExit(f"{model_path} has no projection")
    y = proj.targets.numpy().astype(np.float64)
    psi = (y * y).sum(1) - proj.bias.numpy().astype(np.float64)
    with torch.no_grad():
        image = sample_tile(without_projection(model).eval(), seed, 0, 0, size, size)
    levels = torch.round(image.clamp(0, 1) * 255)
    x = F.unfold(levels, proj.PATCH, stride=proj.STRIDE)[0].T.numpy().astype(np.float64)
    return x, y, psi


def lower_bounds(x: np.ndarray, y: np.ndarray, psi: np.ndarray, k: int, basis: np.ndarray):
    mean = y.mean(0)
    p = basis[:k]
    px, py = (x - mean) @ p.T, (y - mean) @ p.T
    rx = np.sqrt(np.maximum(((x - mean) ** 2).sum(1) - (px**2).sum(1), 0))
    ry = np.sqrt(np.maximum(((y - mean) ** 2).sum(1) - (py**2).sum(1), 0))
    return ((px[:, None] - py[None]) ** 2).sum(-1) + (rx[:, None] - ry[None]) ** 2 - psi[None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default=str(ROOT / "tilegen/assets/grass.pt"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--dims", type=int, nargs="+", default=[4, 8, 12, 16])
    ap.add_argument("--shortlists", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y, psi = patches_and_targets(Path(args.model), args.size, args.seed)
    exact = ((x[:, None, :] - y[None]) ** 2).sum(-1) - psi[None]
    best, argmin = exact.min(1), exact.argmin(1)
    _, s, basis = np.linalg.svd(y - y.mean(0), full_matrices=False)
    print(f"{args.model}: {len(x)} patches x {len(y)} candidates ({y.shape[1]} values); "
          f"{platform.machine()}, numpy {np.__version__}")  # fmt: skip
    head = "| k | variance | candidates left: mean | p99 | max |"
    head += "".join(f" K={n}: holds / certifies |" for n in args.shortlists)
    print(head)
    print("|" + "---:|" * (5 + len(args.shortlists)))
    for k in args.dims:
        lb = lower_bounds(x, y, psi, k, basis)
        assert (lb <= exact + 1e-6).all(), "not a lower bound"
        left = (lb <= best[:, None] + 1e-9).sum(1)
        order = np.argsort(lb, 1, kind="stable")
        rank = (order == argmin[:, None]).argmax(1)
        row = f"| {k} | {(s[:k] ** 2).sum() / (s**2).sum():.3f} | {left.mean():.1f} | "
        row += f"{np.percentile(left, 99):.0f} | {left.max()} |"
        for n in args.shortlists:
            kth = np.take_along_axis(lb, order[:, n : n + 1], 1)[:, 0]
            best_n = np.take_along_axis(exact, order[:, :n], 1).min(1)
            row += f" {np.mean(rank < n):.4f} / {np.mean(kth > best_n):.4f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
