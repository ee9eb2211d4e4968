"""The yardstick's patch distance and structure statistic of an integer-exact export against its
float model.

    python bench/integer_quality.py NAME=MODEL.pt:EXEMPLAR [...] [--seeds 3:9] [--refit-only]
    python bench/integer_quality.py grass=tilegen/assets/grass.pt:tilegen/assets/exemplars/grass.png

For each model: `quantize_generator` (what `tilegen export --integer` does: calibration, then the
projection's potentials refitted to the integer network), and the same calibration without the
refit. Each scores three 256² samples (seeds 0-2, written as 8-bit PNG and read back) with
bench/generator_quality.py's scorers, the patch distance and the structure statistic
(`structure_scorer`'s), each the mean of the 3 samples: the float model's, the integer model's
(its reference arithmetic, which the exported graph equals exactly) and the unrefitted one's.
One JSON row per model on stdout and in out/integer_quality/rows.jsonl. `--seeds A:B` scores
seeds A..B-1 instead (more samples where three leave the ratio within the seed spread),
`--refit-only` leaves the unrefitted model out.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = ROOT / "out" / "integer_quality"


def score_row(
    name: str, model_path: str, exemplar: str, seeds: range | None = None, norefit: bool = True
) -> dict:
    """Patch distances and structure statistics of the float model, its integer export and the
    unrefitted one."""
    import generator_quality as gq

    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image, write_image
    from train.checkpoint import load_generator
    from train.quantize import calibrate, quantize_generator, sample_tile_integer
    from train.structure import StructureScorer
    from train.train_generator import sample, to_image

    model, _ = load_generator(model_path)
    score = Evaluator(read_image(exemplar), n=gq.PATCHES)
    # structure_scorer(name)'s scorer, built from the exemplar given (grass is no yardstick name)
    structure = StructureScorer(read_image(exemplar), gq.SIZE, gq.SIZE, seed=0)
    t = time.perf_counter()
    qg = quantize_generator(model)
    seeds = seeds or range(gq.SEEDS)
    row: dict = {"texture": name, "quantise_s": time.perf_counter() - t,
                 "seeds": [seeds.start, seeds.stop]}  # fmt: skip
    renders = {
        "float": lambda s: sample(model, gq.SIZE, gq.SIZE, s),
        "int": lambda s: to_image(sample_tile_integer(qg, s, 0, 0, gq.SIZE, gq.SIZE)),
    }
    if norefit:
        raw = calibrate(model)
        renders["int_norefit"] = lambda s: to_image(
            sample_tile_integer(raw, s, 0, 0, gq.SIZE, gq.SIZE)
        )
    for tag, render in renders.items():
        values, shapes = [], []
        for seed in seeds:
            path = OUT / f"{name}_{tag}_{seed}.png"
            write_image(path, render(seed))
            image = read_image(path)  # as a user gets it: 8-bit
            values.append(score(image)["debiased"])
            shapes.append(structure(image))
        row[tag] = values
        row[tag + "_mean"] = float(np.mean(values))
        row[tag + "_structure"] = shapes
        row[tag + "_structure_mean"] = float(np.mean(shapes))
    for tag in renders:
        if tag != "float":
            suffix = tag[3:]  # "" or "_norefit"
            row["ratio" + suffix] = row[tag + "_mean"] / row["float_mean"]
            row["structure_ratio" + suffix] = (
                row[tag + "_structure_mean"] / row["float_structure_mean"]
            )
    return row


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    args, seeds, norefit = sys.argv[1:], None, True
    if "--refit-only" in args:
        args.remove("--refit-only")
        norefit = False
    if "--seeds" in args:
        i = args.index("--seeds")
        first, end = map(int, args[i + 1].split(":"))
        seeds = range(first, end)
        del args[i : i + 2]
    for spec in args:
        name, rest = spec.split("=", 1)
        model_path, exemplar = rest.split(":", 1)
        row = score_row(name, model_path, exemplar, seeds, norefit)
        print(json.dumps(row), flush=True)
        with open(OUT / "rows.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
