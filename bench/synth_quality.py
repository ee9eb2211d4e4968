"""Alg. 1 quality: `synth` with default settings at 256^2 against the degraded baselines.

For every texture in a folder (default ../shared/textures): synthesise 256x256 (500 iterations,
4 scales, seed 0, periodic), then score the result and the exemplar's sigma=1 blur and x0.7
contrast copies against the exemplar with `tilegen.evaluate` (1000 patches per draw, 3 draws).
Passing means a lower debiased patch distance than both baselines and a colour W1 below the
contrast copy's. For scale, a real piece of the exemplar of the synthesis' size (its top-left
crop) is scored too: a 256^2 output has 4x fewer patches per level than the 512^2 exemplar and
its blurred copy, which weighs most at the coarse levels. And the floor: what an ideal output of
that size would score, one whose patches at every level are a random sample of the exemplar's
own (`size_floor`). No output of that size can be expected to score below it.

    python bench/synth_quality.py [--textures DIR] [--iters 500] [--size 256]

Results go to out/synth_quality.jsonl (one line per texture, so a long run can be resumed) and
a contact sheet (exemplar | synthesis, per texture) to docs/images/synth_quality.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tilegen.baselines import baseline_images  # noqa: E402
from tilegen.evaluator import Evaluator  # noqa: E402
from tilegen.imageio import read_image, write_image  # noqa: E402
from tilegen.metrics import gaussian_pyramid_np, w2_squared  # noqa: E402
from train.synth import SynthConfig, synthesize  # noqa: E402

PATCHES = 1000  # patches per draw in evaluate (its default is 2000): 4x cheaper exact OT solves


def score_texture(path: Path, size: int, iters: int, out_dir: Path) -> dict:
    exemplar = read_image(path)
    t = time.perf_counter()
    result = synthesize(exemplar, SynthConfig(size=(size, size), iters=iters, device="cpu"))
    seconds = time.perf_counter() - t
    write_image(out_dir / f"{path.stem}_synth.png", result)
    result = read_image(out_dir / f"{path.stem}_synth.png")  # scored as the user gets it: 8-bit
    evaluate = Evaluator(exemplar, n=PATCHES)
    row = {"texture": path.stem, "seconds": seconds, "synth": evaluate(result)}
    for name, img in baseline_images(exemplar).items():
        row[name] = evaluate(img)
    add_crop(row, exemplar, size)
    row["floor"] = size_floor(exemplar, size)
    s, b, c = row["synth"], row["blur_sigma1"], row["contrast_0.7"]
    row["pass"] = bool(
        s["debiased"] < b["debiased"]
        and s["debiased"] < c["debiased"]
        and s["color_w1"] < c["color_w1"]
    )
    return row


def add_crop(row: dict, exemplar, size: int) -> None:
    """Score the exemplar's top-left size x size crop (a real piece of the texture)."""
    row["crop"] = Evaluator(exemplar, n=PATCHES)(exemplar[:size, :size])


def size_floor(exemplar: np.ndarray, size: int, scales: int = 4, patch: int = 4, seeds: int = 3):
    """The debiased distance an ideal size x size output is expected to score.

    Per level l a size x size image holds M_l = (size/2^l - p + 1)^2 patch positions, the
    exemplar many more. The ideal output's patches are M_l distinct exemplar patches drawn at
    random (a perfect sample of the texture, with none of the spatial correlation a real image
    has); evaluate then draws B1, B2 from those M_l with replacement, as it does from an image.
    Mean over levels and seeds of W2^2(A1, B1) - (W2^2(A1, A2) + W2^2(B1, B2)) / 2, as evaluate.
    """
    per_level = []
    for level, img in enumerate(gaussian_pyramid_np(exemplar, scales)):
        h, w, c = img.shape
        windows = np.lib.stride_tricks.sliding_window_view(img, (patch, patch), axis=(0, 1))
        patches = windows.reshape((h - patch + 1) * (w - patch + 1), c * patch * patch)
        m = min(((size >> level) - patch + 1) ** 2, len(patches))
        d = []
        for seed in range(seeds):
            rng = np.random.default_rng([seed, level])
            a1, a2 = (patches[rng.integers(0, len(patches), PATCHES)] for _ in range(2))
            ideal = patches[rng.choice(len(patches), m, replace=False)]
            b1, b2 = (ideal[rng.integers(0, m, PATCHES)] for _ in range(2))
            d.append(w2_squared(a1, b1) - (w2_squared(a1, a2) + w2_squared(b1, b2)) / 2)
        per_level.append(float(np.mean(d)))
    return {"debiased": float(np.mean(per_level)), "per_level": per_level}


def contact_sheet(rows: list[dict], textures: Path, out_dir: Path, dest: Path) -> None:
    cell = 160
    sheet = Image.new("RGB", (2 * cell, cell * len(rows)), "white")
    for i, row in enumerate(rows):
        ex = Image.open(textures / f"{row['texture']}.png").convert("RGB")
        syn = Image.open(out_dir / f"{row['texture']}_synth.png").convert("RGB")
        # Same scale for both: the exemplar is 2x the synthesis' side, crop a synthesis-sized view.
        w = syn.width
        ex = ex.crop((0, 0, w, w))
        sheet.paste(ex.resize((cell, cell), Image.LANCZOS), (0, i * cell))
        sheet.paste(syn.resize((cell, cell), Image.LANCZOS), (cell, i * cell))
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest, optimize=True)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| texture | synth debiased | blur σ=1 | contrast ×0.7 | exemplar crop | ideal floor "
        "| synth colour W1 | contrast colour W1 | time (s) | pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, b, c, k = r["synth"], r["blur_sigma1"], r["contrast_0.7"], r["crop"]
        lines.append(
            f"| {r['texture']} | {s['debiased']:.5f} | {b['debiased']:.5f} | "
            f"{c['debiased']:.5f} | {k['debiased']:.5f} | {r['floor']['debiased']:.5f} | "
            f"{s['color_w1']:.4f} | "
            f"{c['color_w1']:.4f} | {r['seconds']:.0f} | {'yes' if r['pass'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--textures", type=Path, default=ROOT.parent / "shared" / "textures")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--only", nargs="*", help="texture names (default: all)")
    args = p.parse_args()
    out_dir = ROOT / "out" / "synth_quality"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "results.jsonl"
    done = {}
    if log.exists():
        done = {r["texture"]: r for r in map(json.loads, log.read_text().splitlines())}
    paths = sorted(args.textures.glob("*.png"))
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    for path in paths:
        if path.stem in done:
            row = done[path.stem]
            if "crop" not in row or "floor" not in row:  # rows from before these columns
                exemplar = read_image(path)
                add_crop(row, exemplar, args.size)
                row["floor"] = size_floor(exemplar, args.size)
                log.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
            continue
        row = score_texture(path, args.size, args.iters, out_dir)
        done[path.stem] = row
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{path.stem}: synth {row['synth']['debiased']:.5f} blur "
            f"{row['blur_sigma1']['debiased']:.5f} contrast {row['contrast_0.7']['debiased']:.5f}"
            f" pass={row['pass']} ({row['seconds']:.0f} s)",
            flush=True,
        )
    rows = [done[p.stem] for p in paths if p.stem in done]
    contact_sheet(rows, args.textures, out_dir, ROOT / "docs" / "images" / "synth_quality.png")
    print(markdown(rows))
    print(f"passed {sum(r['pass'] for r in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
