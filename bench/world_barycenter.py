"""A third mix for a world's transitions, measured beside the library's: a local barycenter.

    python bench/world_barycenter.py [--crop 16] [--cell 128] [--penalty 0.25 1 4] [--save]

In a transition the library mixes the labels' outputs (tilegen/mixing.py: variance-preserving
for textures, linear on request). The barycenter here (the project's `blend`, locally) starts
from the linear mix and projects it onto the union of the present labels' exemplar patches,
each candidate's cost raised where its label's weight is low:

    cost(x, y_j) = ||x - y_j||^2 / D  +  penalty * (1 - w_{label(j)}(centre of x))

(x a 4x4 patch of the mix on the stride-2 grid, D its 48 values, y_j one of PATCHES random 4x4
patches of each present label's exemplar: tilegen/assets/exemplars), then overlap-adds the
chosen patches (their mean at each pixel). Pixels where one label has weight 1 keep that model's
own bytes, as in the library. A prototype in numpy, not an option of `tilegen world`.

Figures, over the transitions (largest weight below 0.7) of the bundled world example's crop
(tilegen/assets/world, the top-left `--crop` cells at `--cell` pixels, seed 1), for the linear
and variance mixes and the barycenter at each `--penalty`:
- contrast: the local contrast (luminance minus its 9x9 mean, standard deviation) over that of
  the labels' own pixels (weight 1), as bench/world_cost.py measures it;
- realism: the mean squared distance (per value) of the result's 4x4 patches to their nearest
  patch among the present labels' exemplar patches (lower: every patch looks like one of the
  materials);
- seconds: the mix's time over the crop's transition windows (the models' renders excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from world_cost import OUT, crop_layout, labels_arg, local_contrast  # noqa: E402

EXEMPLARS = ROOT / "tilegen" / "assets" / "exemplars"
NAMES = {"default.onnx": "grass", "dirt_pebbles.onnx": "dirt_pebbles", "bark.onnx": "bark"}
P, STRIDE, PATCHES = 4, 2, 2000


def patches(img: np.ndarray) -> np.ndarray:
    """Every 4x4 patch of (C, h, w) on the stride-2 grid: (rows, cols, C*16)."""
    c, h, w = img.shape
    v = np.lib.stride_tricks.sliding_window_view(img, (P, P), axis=(1, 2))[:, ::STRIDE, ::STRIDE]
    return v.transpose(1, 2, 0, 3, 4).reshape(v.shape[1], v.shape[2], c * P * P)


def exemplar_patches(name: str, rng: np.random.Generator) -> np.ndarray:
    from tilegen.imageio import read_image

    img = read_image(EXEMPLARS / f"{name}.png")[..., :3].transpose(2, 0, 1).astype(np.float32)
    flat = patches(img).reshape(-1, 3 * P * P)
    return flat[rng.choice(len(flat), PATCHES, replace=False)]


def nearest(x: np.ndarray, y: np.ndarray, extra: np.ndarray | None = None):
    """(index, squared distance per value) of each row of x among y, with `extra` (rows, J)
    added to the cost when given; in chunks of rows."""
    d = x.shape[1]
    yy = (y * y).sum(1)
    idx, dist = np.empty(len(x), np.int64), np.empty(len(x), np.float32)
    for s in range(0, len(x), 4096):
        xs = x[s : s + 4096]
        sq = np.maximum((xs * xs).sum(1)[:, None] - 2 * xs @ y.T + yy[None], 0) / d
        cost = sq if extra is None else sq + extra[s : s + 4096]
        j = cost.argmin(1)
        idx[s : s + 4096], dist[s : s + 4096] = j, sq[np.arange(len(j)), j]
    return idx, dist


def barycenter(mix, weights, present, banks, penalty: float) -> np.ndarray:
    """The mix projected onto the union of the present labels' patches, with the weight
    penalty, overlap-added; pixels outside every projected patch keep the mix."""
    c, h, w = mix.shape
    rows = patches(mix)
    gh, gw, _ = rows.shape
    y = np.concatenate([banks[lab] for lab in present])
    owner = np.repeat(np.arange(len(present)), [len(banks[lab]) for lab in present])
    centre = weights[:, 1 : 1 + gh * STRIDE : STRIDE, 1 : 1 + gw * STRIDE : STRIDE]
    extra = penalty * (1 - centre.reshape(len(present), -1).T[:, owner])
    idx, _ = nearest(rows.reshape(-1, rows.shape[2]), y, extra.astype(np.float32))
    chosen = y[idx].reshape(gh, gw, c, P, P)
    out, count = np.zeros_like(mix), np.zeros((h, w), np.float32)
    for a in range(P):
        for b in range(P):
            out[:, a : a + gh * STRIDE : STRIDE, b : b + gw * STRIDE : STRIDE] += chosen[
                :, :, :, a, b
            ].transpose(2, 0, 1)
            count[a : a + gh * STRIDE : STRIDE, b : b + gw * STRIDE : STRIDE] += 1
    return np.where(count > 0, out / np.maximum(count, 1), mix)


def realism(img, present, banks) -> np.ndarray:
    """Per 4x4 patch (stride 2): squared distance per value to the nearest exemplar patch of the
    present labels."""
    y = np.concatenate([banks[lab] for lab in present])
    rows = patches(img)
    return nearest(rows.reshape(-1, rows.shape[2]), y)[1].reshape(rows.shape[:2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crop", type=int, default=16)
    p.add_argument("--cell", type=int, default=128)
    p.add_argument("--penalty", type=float, nargs="+", default=[0.25, 1.0, 4.0])
    p.add_argument("--save", action="store_true", help="write the crops to bench/out/world")
    args = p.parse_args()
    from tilegen import mixing
    from tilegen import world as worlds
    from tilegen.grid import tiles
    from tilegen.model import render_region as model_region

    OUT.mkdir(parents=True, exist_ok=True)
    spec = worlds.plan_world(str(crop_layout(args.crop)), labels_arg(), cell=args.cell)
    world = worlds.open_world(spec, 1)
    rng = np.random.default_rng(0)
    banks = {i: exemplar_patches(NAMES[Path(m).name], rng) for i, m in enumerate(spec.models)}
    kinds = ["linear", "variance", *[f"barycenter {b:g}" for b in args.penalty]]
    hp = {k: [] for k in kinds}
    real = {k: [] for k in kinds}
    own, seconds = [], dict.fromkeys(kinds, 0.0)
    for t in tiles(0, 0, *spec.size, 512):
        present, weights = world.field.weights(t.y, t.x, t.h, t.w)
        if len(present) < 2:
            continue
        pieces = [model_region(world.models[lab], 1, t.y, t.x, t.h, t.w) for lab in present]
        top = weights.max(axis=0)
        means = [spec.means[i] for i in present]
        for kind in kinds:
            start = time.perf_counter()
            if kind.startswith("barycenter"):
                base = mixing.mix(pieces, weights, "linear")
                out = barycenter(base, weights, present, banks, float(kind.split()[1]))
            else:
                out = mixing.mix(pieces, weights, kind, means)
            out = mixing.keep_alone(np.clip(out, 0, 1), pieces, weights)
            seconds[kind] += time.perf_counter() - start
            contrast = local_contrast(out)
            hp[kind].append(contrast[top < 0.7])
            if kind == "linear":
                own.append(contrast[top == 1])
            r = realism(out, present, banks)
            gh, gw = r.shape
            in_transition = top[1 : 1 + gh * STRIDE : STRIDE, 1 : 1 + gw * STRIDE : STRIDE] < 0.7
            real[kind].append(r[in_transition])
            if args.save and kind != "linear":
                from tilegen.imageio import write_image

                name = kind.replace(" ", "_")
                write_image(OUT / f"bary_{t.y}_{t.x}_{name}.png", out.transpose(1, 2, 0))
    own_std = np.concatenate(own).std()
    print(f"crop {spec.size[0]}x{spec.size[1]} (the layout's top-left {args.crop} cells at "
          f"{args.cell}), transitions: largest weight below 0.7")  # fmt: skip
    print("| mix | contrast / own | realism (nearest exemplar patch, per value) | mix seconds |")
    print("|---|---:|---:|---:|")
    for kind in kinds:
        contrast = np.concatenate(hp[kind]).std() / own_std
        print(f"| {kind} | {contrast:.3f} | {np.concatenate(real[kind]).mean():.5f} | "
              f"{seconds[kind]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
