"""Alg. 2 quality: samples of a trained generator against `synth` (Alg. 1) on the same exemplar.

    python bench/generator_quality.py [--model tilegen/assets/grass.pt] [--size 256] [--seeds 3]

Needs the synth row of the same exemplar from `bench/synth_quality.py` (out/synth_quality/).
Scores 256x256 generator samples (inference mode, BatchNorm folded, hashed noise, seeds 0..N-1)
with the same evaluator settings, prints the ratio generator / synth (target <= 1.25), and
writes the comparison picture exemplar | synth | generator sample to docs/images/.
--no-picture scores a candidate model only (its samples go to *_candidate_STEM_N.png). Also prints
the undebiased ratio, the kind of distance the seed talk's table compares (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth_quality import PATCHES  # noqa: E402

from tilegen.evaluate import Evaluator  # noqa: E402
from tilegen.imageio import read_image, write_image  # noqa: E402
from train.checkpoint import load_generator  # noqa: E402
from train.generator import sample_tile  # noqa: E402
from train.synth import to_image  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "tilegen" / "assets" / "grass.pt")
    p.add_argument("--exemplar", type=Path, default=ROOT / "tilegen/assets/exemplars/grass.png")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--no-picture", action="store_true", help="score only (candidate models)")
    args = p.parse_args()
    out_dir = ROOT / "out" / "synth_quality"
    rows = {r["texture"]: r for r in map(json.loads, (out_dir / "results.jsonl").open())}
    name = args.exemplar.stem
    synth = rows[name]["synth"]["debiased"]

    exemplar = read_image(args.exemplar)
    model, _ = load_generator(args.model)
    evaluate = Evaluator(exemplar, n=PATCHES)
    # Candidates write their samples beside, not over, the bundled model's (the picture's).
    tag = f"candidate_{args.model.stem}" if args.no_picture else "generator"
    scores, plain = [], []
    for seed in range(args.seeds):
        sample = to_image(sample_tile(model, seed, 0, 0, args.size, args.size))
        write_image(out_dir / f"{name}_{tag}_{seed}.png", sample)
        result = evaluate(read_image(out_dir / f"{name}_{tag}_{seed}.png"))
        scores.append(result["debiased"])
        plain.append(result["plain"])
    gen = statistics.mean(scores)
    print(
        f"{name} {args.size}^2: synth {synth:.7f}, generator {gen:.7f} "
        f"(seeds {', '.join(f'{s:.7f}' for s in scores)}), ratio {gen / synth:.2f}"
    )
    # The undebiased W2^2 is the kind of number the seed talk's table compares (its "multiscale
    # OT distance"); it rates a blurred copy nearly as well as a synthesis, hence not the target.
    synth_plain, gen_plain = rows[name]["synth"]["plain"], statistics.mean(plain)
    print(
        f"undebiased W2^2: synth {synth_plain:.7f}, generator {gen_plain:.7f}, "
        f"ratio {gen_plain / synth_plain:.2f} (the seed table's kind of distance; not the target)"
    )
    if args.no_picture:
        return

    cell = args.size
    sheet = Image.new("RGB", (3 * cell + 8, cell), "white")
    ex = Image.open(args.exemplar).convert("RGB").crop((0, 0, cell, cell))
    for i, im in enumerate(
        [
            ex,
            Image.open(out_dir / f"{name}_synth.png"),
            Image.open(out_dir / f"{name}_generator_0.png"),
        ]
    ):
        sheet.paste(im.convert("RGB"), (i * (cell + 4), 0))
    dest = ROOT / "docs" / "images" / f"{name}_exemplar_synth_generator.png"
    sheet.save(dest, optimize=True)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
