"""The yardstick's patch distance and structure statistic of an integer-exact export against its
float model.

    python bench/integer_quality.py NAME=MODEL.pt:EXEMPLAR [...] [--seeds 3:9] [--refit-only]
                                    [--variants int int_zero ...]
    python bench/integer_quality.py grass=tilegen/assets/grass.pt:tilegen/assets/exemplars/grass.png

For each model: `quantize_generator` (what `tilegen export --integer` does: calibration, then the
projection's potentials refitted to the integer network), and the same calibration without the
refit. Each scores three 256² samples (seeds 0-2, written as 8-bit PNG and read back) with
bench/generator_quality.py's scorers, the patch distance and the structure statistic
(`structure_scorer`'s), each the mean of the 3 samples: the float model's, the integer model's
(its reference arithmetic, which the exported graph equals exactly) and the unrefitted one's.
One JSON row per model on stdout and in out/integer_quality/rows.jsonl. `--seeds A:B` scores
seeds A..B-1 instead (more samples where three leave the ratio within the seed spread),
`--refit-only` leaves the unrefitted model out. `--variants` scores other integer forms of the
same model instead (`VARIANTS`: calibration and refit settings that are not the library's).
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


def _refit(qg, start_from_zero: bool = False):
    """refit_potentials as quantize_generator runs it; `start_from_zero`: every stage's psi
    ascends from 0, as train's fit_projection fitted the float model's, instead of from the
    float model's psi."""
    from export.integer import levels_session
    from train.quantize import half_bias, refit_potentials

    if start_from_zero:
        for stage in [*qg.stages, qg]:
            y2 = (stage.targets.astype(np.int64) ** 2).sum(1)
            stage.bias = half_bias(y2, np.zeros(len(y2)))
    return refit_potentials(qg, levels_of=levels_session(qg))


# Integer forms of a model: "int" is `tilegen export --integer`'s; "int_cover" calibrates on
# whole ranges (the default before CALIBRATION_QUANTILE); the rest are experiments.
VARIANTS = {
    "int": lambda m: _quantize_generator(m),
    "int_cover": lambda m: _refit(_calibrate(m, quantile=1.0)),
    "int_norefit": lambda m: _calibrate(m),
    "int_zero": lambda m: _refit(_calibrate(m), start_from_zero=True),
    "int_cal32": lambda m: _refit(_calibrate(m, samples=32)),
    "int_q9999": lambda m: _refit(_calibrate(m, quantile=0.9999)),
    "int_mse": lambda m: _refit(_calibrate_mse(m)),
}


def mse_grid(tensors: list[torch.Tensor], quantile: float = 1.0):
    """The power-of-two grid of least squared error over the calibration values, clipping
    included: the covering grid, or one 2, 4 or 8 times finer with the zero point (so the
    clipped range) placed where the error is least. Values are binned at a quarter of the
    finest candidate step (the error of a bin is its centre's)."""
    from train.quantize import QParams, range_params

    values = torch.cat([t.flatten().double() for t in tensors])
    lo, hi = float(values.min()), float(values.max())
    cover = range_params(lo, hi)
    width = 2.0 ** -(cover.exp + 3) / 4
    bins = torch.floor((values - lo) / width).long()
    counts = torch.bincount(bins).double()
    centres = lo + (torch.arange(len(counts), dtype=torch.float64) + 0.5) * width
    keep = counts > 0
    counts, centres = counts[keep], centres[keep]
    best = (float("inf"), cover)
    for exp in range(cover.exp, cover.exp + 4):
        step = 2.0**-exp
        levels = torch.round(centres / step)  # the nearest grid point, before clipping
        for zero in range(256):
            q = levels.clamp(-zero, 255 - zero)
            error = float((counts * (centres - q * step) ** 2).sum())
            if error < best[0]:
                best = (error, QParams(exp, zero))
    return best[1]


def _calibrate_mse(model):
    """calibrate with every activation grid chosen by `mse_grid`."""
    import train.quantize as quantize

    kept = quantize.activation_grid
    quantize.activation_grid = mse_grid
    try:
        return quantize.calibrate(model)
    finally:
        quantize.activation_grid = kept


def _calibrate(model, **options):
    from train.quantize import calibrate

    return calibrate(model, **options)


def _quantize_generator(model):
    from train.quantize import quantize_generator

    return quantize_generator(model)


def score_row(
    name: str,
    model_path: str,
    exemplar: str,
    seeds: range | None = None,
    norefit: bool = True,
    variants: list[str] | None = None,
) -> dict:
    """Patch distances and structure statistics of the float model, its integer export and the
    unrefitted one."""
    import generator_quality as gq

    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image, write_image
    from train.checkpoint import load_generator
    from train.quantize import sample_tile_integer
    from train.structure import StructureScorer
    from train.train_generator import sample, to_image

    model, _ = load_generator(model_path)
    score = Evaluator(read_image(exemplar), n=gq.PATCHES)
    # structure_scorer(name)'s scorer, built from the exemplar given (grass is no yardstick name)
    structure = StructureScorer(read_image(exemplar), gq.SIZE, gq.SIZE, seed=0)
    seeds = seeds or range(gq.SEEDS)
    row: dict = {"texture": name, "seeds": [seeds.start, seeds.stop]}
    renders = {"float": lambda s: sample(model, gq.SIZE, gq.SIZE, s)}
    for tag in variants or (["int", "int_norefit"] if norefit else ["int"]):
        t = time.perf_counter()
        qg = VARIANTS[tag](model)
        row[f"{tag}_quantise_s"] = time.perf_counter() - t
        renders[tag] = lambda s, qg=qg: to_image(sample_tile_integer(qg, s, 0, 0, gq.SIZE, gq.SIZE))
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
            suffix = tag[3:]  # "" for "int", else "_norefit", "_zero", ...
            row["ratio" + suffix] = row[tag + "_mean"] / row["float_mean"]
            row["structure_ratio" + suffix] = (
                row[tag + "_structure_mean"] / row["float_structure_mean"]
            )
    return row


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    args, seeds, norefit, variants = sys.argv[1:], None, True, None
    if "--variants" in args:
        i = args.index("--variants")
        j = next((k for k in range(i + 1, len(args)) if args[k] not in VARIANTS), len(args))
        variants = args[i + 1 : j]
        del args[i:j]
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
        row = score_row(name, model_path, exemplar, seeds, norefit, variants)
        print(json.dumps(row), flush=True)
        with open(OUT / "rows.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
