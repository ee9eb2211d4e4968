"""Inpainting and blending: example pictures for the README and their patch distances.

    python bench/inpaint_blend.py [--textures DIR] [--iters 300] [--threads 1]

Textures (default ../shared/textures) are resized to --exemplar-size (192, Lanczos) first.

1. Inpainting: dirt_pebbles with a 64x64 hole (rows 64:128, columns 96:160), filled with the
   defaults of `tilegen inpaint` (4 scales, J = 2000) -> docs/images/inpaint_example.png
   (the image with its hole in white | filled). Scored against the known columns 0:64 (clear of
   the hole): the filled hole, the hole's true content, and that content blurred (sigma = 1).
2. Blend strip: A = grass, B = dirt_pebbles, 128x128 periodic barycenters at B-weights 0.25,
   0.5, 0.75 -> docs/images/blend_strip.png (a 128x128 crop of A | 0.25 | 0.5 | 0.75 | a crop
   of B). Each is scored against A and B, next to the sigma = 1 blur of A and of B.
3. Ramp: A -> B left to right, 128x512 -> docs/images/blend_ramp.png, with the distance of its
   left and right quarters to A and B.

Distances: tilegen.metrics.patch_ot_distance, debiased, 4 scales, 1000 patches x 3 draws.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tilegen.baselines import gaussian_blur  # noqa: E402
from tilegen.imageio import quantize, write_image  # noqa: E402
from tilegen.metrics import patch_ot_distance  # noqa: E402
from train.blend import BlendConfig, blend  # noqa: E402
from train.inpaint import InpaintConfig, inpaint  # noqa: E402

WEIGHTS = (0.25, 0.5, 0.75)
HOLE = (slice(64, 128), slice(96, 160))


def load(folder: Path, name: str, size: int) -> np.ndarray:
    im = Image.open(folder / f"{name}.png").convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def as_8bit(img: np.ndarray) -> np.ndarray:
    """What the user gets from a PNG, scored as such."""
    return quantize(img, 8).astype(np.float32) / 255.0


def dist(exemplar: np.ndarray, image: np.ndarray) -> float:
    return patch_ot_distance(exemplar, image, scales=4, n=1000, seeds=3)["debiased"]


def side_by_side(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    parts = []
    for k, img in enumerate(images):
        if k:
            parts.append(np.ones((h, gap, 3), np.float32))
        parts.append(img)
    return np.concatenate(parts, axis=1)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--textures", type=Path, default=ROOT.parent / "shared" / "textures")
    ap.add_argument("--exemplar-size", type=int, default=192)
    ap.add_argument("--inpaint", default="dirt_pebbles", help="texture to punch a hole in")
    ap.add_argument("--a", default="grass")
    ap.add_argument("--b", default="dirt_pebbles")
    ap.add_argument("--size", type=int, default=128, help="side of each blend")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    s = args.exemplar_size
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, CPU; iters {args.iters}, seed {args.seed}"
    )

    # 1. Inpainting.
    img = load(args.textures, args.inpaint, s)
    mask = np.zeros((s, s), bool)
    mask[HOLE] = True
    filled, sec = timed(
        lambda: inpaint(img, mask, InpaintConfig(iters=args.iters, seed=args.seed, device="cpu"))
    )
    assert np.array_equal(filled[~mask], img[~mask])
    holed = img.copy()
    holed[mask] = 1.0
    write_image(args.out / "inpaint_example.png", side_by_side([holed, filled]))
    ref = img[:, :64]
    print(f"\ninpaint {args.inpaint} {s}x{s}, hole 64x64: {sec:.0f} s")
    for name, fill in (
        ("filled hole", as_8bit(filled)[HOLE]),
        ("true content", img[HOLE]),
        ("true content, sigma=1 blur", as_8bit(gaussian_blur(img, 1.0))[HOLE]),
    ):
        print(f"  {name:28s} debiased patch-OT to the known part: {dist(ref, fill):.6f}")

    # 2. Blend strip.
    a, b = load(args.textures, args.a, s), load(args.textures, args.b, s)
    n = args.size
    cfg = dict(size=(n, n), iters=args.iters, seed=args.seed, device="cpu")
    cells, rows = [a[:n, :n]], []
    for w in WEIGHTS:
        out, sec = timed(lambda w=w: as_8bit(blend([a, b], [1 - w, w], BlendConfig(**cfg))))
        cells.append(out)
        rows.append((f"blend w={w}", dist(a, out), dist(b, out), sec))
    cells.append(b[:n, :n])
    write_image(args.out / "blend_strip.png", side_by_side(cells))
    base_a = dist(a, as_8bit(gaussian_blur(a, 1.0)))
    base_b = dist(b, as_8bit(gaussian_blur(b, 1.0)))
    print(f"\nblend A={args.a} B={args.b}, {n}x{n} periodic (w = B's share)")
    print(f"  {'image':22s} {'to A':>10s} {'to B':>10s} {'seconds':>8s}")
    print(f"  {'sigma=1 blur of A':22s} {base_a:10.6f} {'':>10s}")
    for name, da, db, sec in rows:
        print(f"  {name:22s} {da:10.6f} {db:10.6f} {sec:8.0f}")
    print(f"  {'sigma=1 blur of B':22s} {'':>10s} {base_b:10.6f}")

    # 3. Ramp.
    rcfg = BlendConfig(size=(n, 4 * n), iters=args.iters, seed=args.seed, device="cpu")
    ramp, sec = timed(lambda: as_8bit(blend([a, b], None, rcfg, ramp="horizontal")))
    write_image(args.out / "blend_ramp.png", ramp)
    left, right = ramp[:, :n], ramp[:, -n:]
    print(f"\nramp {n}x{4 * n}, horizontal A -> B: {sec:.0f} s")
    print(f"  left quarter:  to A {dist(a, left):.6f}  to B {dist(b, left):.6f}")
    print(f"  right quarter: to A {dist(a, right):.6f}  to B {dist(b, right):.6f}")
    for p in sorted(args.out.glob("inpaint*.png")) + sorted(args.out.glob("blend*.png")):
        print(f"{p}: {p.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
