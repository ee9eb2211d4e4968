"""The generator yardstick: one model per texture, scored against `synth` and two baselines.

    python bench/generator_quality.py VARIANT [--set KEY=VALUE ...] [--textures NAME ...]
                                      [--jobs 2] [--picture] [--sheet] [--table]

For each texture (default: the thirteen of YARDSTICK, from ../shared/textures,
../shared/materials/*/albedo.png and, for SET_height, ../shared/materials/SET/height.png) it
trains a generator with `TrainConfig` defaults changed by
`--set` (`size=256`, `iters=3000`, `gen.norm=batch`, `ot.n_target=8000`, ...; the variant's name
labels the row), unless out/generator_quality/VARIANT/TEXTURE.pt exists (or, with `--refit-from
OTHER`, takes OTHER's network and fits only its projection anew), then scores at 256^2:

- three generator samples (hashed noise, seeds 0-2, inference mode: the folded model), of the
  network alone and with its patch projection (train/generator.py; fitted here when the model
  was trained without one);
- `synth` at the same size (default settings, seed 0; computed once per texture and cached);
- PIECES real 256^2 pieces cut at random places, and their blurs: what the material itself
  scores at this size (cached too).

Scores: the debiased multiscale patch-OT distance of `tilegen.evaluate` (1000 patches a draw, 3
draws, 4 levels; bench/synth_quality.py uses the same) and the structure figure of
`train.structure` (Portilla-Simoncelli statistics against 24 real SIZE^2 pieces, 1.0 a
typical real piece). A row passes the pieces bar when the mean of the samples with the
projection is <= 1.5 x synth's or the median real piece's, and below the median blurred
piece's, and the structure bar when their mean structure figure is <= 2.0 (target 1.5;
`passes`); `synth`'s image is held to the same bars (`synth_passes`). Training mode against
inference mode: `check_modes` (the same noise through the unfolded and the folded network, 2x
the crop size).

Runs `--jobs` trainings at once, one torch thread each (on 2 cores: 2). Rows are appended to
out/generator_quality/results.jsonl (a rerun skips what is there); `--table` prints every
variant's rows as markdown; `--picture` writes one picture per texture (crop | synth | samples)
to docs/images/generator/ (otherwise to out/generator_quality/VARIANT/); `--sheet` one picture
of all textures (a row each: crop | synth | sample, top-left 128^2) to
docs/images/generator/VARIANT.png (with `--beside OTHER`, OTHER's sample before VARIANT's, to
VARIANT_beside_OTHER.jpg).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

# The shared data beside the checkout (a worktree one level deeper finds it one level up).
SHARED = next(
    (d / "shared" for d in (ROOT.parent, ROOT.parent.parent) if (d / "shared").is_dir()),
    ROOT.parent / "shared",
)
YARDSTICK = [
    "bark",
    "dirt_pebbles",
    "mossy_rock",
    "rusty_metal",
    "onyx_marble",
    "beach_sand",
    "pebbles",
    "ground_dirt",
    # long thin structures: wood grain lines, the grout lines of long tiles
    "wood_grain",
    "white_tiles",
    # the material sets' height maps (grey; their albedos are bark, pebbles, ground_dirt)
    "pebbles_height",
    "ground_dirt_height",
    "bark_height",
]
SIZE, SEEDS, PATCHES = 256, 3, 1000
PIECES = 12  # real SIZE^2 pieces of each exemplar, cut at random places (seed 0)
OUT = ROOT / "out" / "generator_quality"


def exemplar_path(name: str) -> Path:
    """../shared/textures/NAME.png, else ../shared/materials/NAME/albedo.png; SET_MAP (e.g.
    pebbles_height) is ../shared/materials/SET/MAP.png, one map of a material set."""
    material, _, role = name.rpartition("_")
    candidates = [SHARED / "textures" / f"{name}.png", SHARED / "materials" / name / "albedo.png"]
    if material:
        candidates.append(SHARED / "materials" / material / f"{role}.png")
    for p in candidates:
        if p.is_file():
            return p
    raise SystemExit(f"no texture {name!r} in {SHARED}/textures or {SHARED}/materials")


def parse_sets(items: list[str]) -> dict:
    """['size=256', 'gen.norm=batch'] -> {'size': 256, 'gen.norm': 'batch'} (JSON values)."""
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def train_config(sets: dict):
    """TrainConfig() on the CPU with `sets` applied (keys 'name', 'gen.name' or 'ot.name', the
    fields' names: 'projection_targets=0', 'coarse_stages=off' as --coarse takes it, ...)."""
    from train.train_generator import TrainConfig, parse_coarse

    cfg = TrainConfig(device="cpu")
    top = {k: v for k, v in sets.items() if "." not in k}
    gen = replace(cfg.gen, **{k[4:]: v for k, v in sets.items() if k.startswith("gen.")})
    ot = {k[3:]: v for k, v in sets.items() if k.startswith("ot.")}
    if "coarse_stages" in top:  # the --coarse text (a JSON number for one level)
        top["coarse_stages"] = parse_coarse(str(top["coarse_stages"]), gen.levels)
    return replace(cfg, **top, gen=gen, ot=replace(cfg.ot, **ot))


_STRUCTURE: dict = {}


def structure_scorer(name: str):
    """The structure figure's scorer for SIZE^2 images of texture `name` (24 real pieces,
    seed 0; train.structure), one per process."""
    from tilegen.imageio import read_image
    from train.structure import StructureScorer

    if name not in _STRUCTURE:
        _STRUCTURE[name] = StructureScorer(read_image(exemplar_path(name)), SIZE, SIZE, seed=0)
    return _STRUCTURE[name]


def blurred_8bit(img: np.ndarray) -> np.ndarray:
    """The sigma = 1 blur of an image as an 8-bit file of it reads back: the baselines' blur."""
    from tilegen.baselines import gaussian_blur
    from tilegen.imageio import quantize

    return quantize(gaussian_blur(img, 1.0), 8).astype(np.float32) / 255.0


def synth_row(name: str, threads: int) -> dict:
    """synth at SIZE^2 (cached in OUT/synth/) and the crop baselines, scored."""

    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image, write_image
    from train.synth import SynthConfig, synthesize

    _threads(threads)
    cache = OUT / "synth" / f"{name}.json"
    if cache.is_file():
        row = json.loads(cache.read_text())
        if "synth_structure" not in row:  # rows from before the structure figure
            image = read_image(OUT / "synth" / f"{name}.png")
            row["synth_structure"] = structure_scorer(name)(image)
            cache.write_text(json.dumps(row))
        return row
    exemplar = read_image(exemplar_path(name))
    t = time.perf_counter()
    image = synthesize(exemplar, SynthConfig(size=(SIZE, SIZE), device="cpu"))
    seconds = time.perf_counter() - t
    write_image(OUT / "synth" / f"{name}.png", image)
    crop = exemplar[:SIZE, :SIZE]
    blur = blurred_8bit(crop)
    score = Evaluator(exemplar, n=PATCHES)
    row = {
        "texture": name,
        "synth": score(read_image(OUT / "synth" / f"{name}.png"))["debiased"],
        "crop": score(crop)["debiased"],  # the top-left crop and its blur (no bar reads them now)
        "blur": score(blur)["debiased"],
        "synth_seconds": seconds,
        "synth_structure": structure_scorer(name)(read_image(OUT / "synth" / f"{name}.png")),
    }
    cache.write_text(json.dumps(row))
    return row


def _threads(threads: int) -> None:
    """torch's threads and the evaluator's exact-OT threads in this worker."""
    import torch

    from tilegen import metrics

    torch.set_num_threads(threads)
    metrics.PARALLEL["max"] = threads


def pieces_row(name: str, threads: int = 1) -> dict:
    """PIECES real SIZE^2 pieces of the exemplar and their sigma = 1 blurs, scored as the
    samples are (cached in OUT/synth/): what the material itself scores at the samples' size."""
    from tilegen.baselines import real_pieces
    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image

    _threads(threads)
    cache = OUT / "synth" / f"{name}.pieces.json"
    exemplar = read_image(exemplar_path(name))
    pieces = real_pieces(exemplar, SIZE, SIZE, PIECES, seed=0)
    if cache.is_file():
        row = json.loads(cache.read_text())
        if "pieces_structure" not in row:  # rows from before the structure figure
            row["pieces_structure"] = structure_scorer(name).many(pieces)
            cache.write_text(json.dumps(row))
        return row
    score = Evaluator(exemplar, n=PATCHES)
    blurred = [blurred_8bit(p) for p in pieces]
    row = {
        "texture": name,
        "pieces": [score(p)["debiased"] for p in pieces],
        "pieces_blur": [score(b)["debiased"] for b in blurred],
        # against the scorer's own 24 reference pieces (another stream): about 1
        "pieces_structure": structure_scorer(name).many(pieces),
    }
    cache.write_text(json.dumps(row))
    return row


def generator_row(
    variant: str, sets: dict, name: str, threads: int, refit_from: str | None = None
) -> dict:
    """Train (or reuse) VARIANT's model for `name`; score three SIZE^2 samples of the network
    alone and of the network with its patch projection (fitted here if the model has none).
    refit_from: take that variant's network instead of training one, and fit its projection
    anew (attach_projection as `train` does now, with `sets`; its training time is carried
    over)."""

    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image, write_image
    from train.checkpoint import load_generator, save_generator
    from train.generator import without_projection
    from train.train_generator import (
        attach_projection,
        check_modes,
        fit_projection,
        sample,
        train,
    )

    _threads(threads)
    exemplar = read_image(exemplar_path(name))
    folder = OUT / variant
    folder.mkdir(parents=True, exist_ok=True)
    model_path, meta_path = folder / f"{name}.pt", folder / f"{name}.train.json"
    if not model_path.is_file() and refit_from:
        source = OUT / refit_from / f"{name}.pt"
        network, meta = load_generator(source)
        t = time.perf_counter()
        model, choice = attach_projection(network, exemplar, train_config(sets))
        meta["projection_choice"] = choice
        info = json.loads(source.with_suffix(".train.json").read_text())
        info["fit_seconds"] = time.perf_counter() - t
        info["projection_choice"] = choice
        save_generator(model_path, model, meta)
        meta_path.write_text(json.dumps(info))
    if not model_path.is_file():
        t = time.perf_counter()
        result = train(exemplar, train_config(sets))
        seconds = time.perf_counter() - t
        modes = check_modes(exemplar, result)
        save_generator(model_path, result.model.cpu(), result.meta)
        meta_path.write_text(json.dumps({"train_seconds": seconds, "modes": modes}))
    model, _ = load_generator(model_path)
    networks = {"": without_projection(model)}
    networks["p"] = model if model.project is not None else fit_projection(model, exemplar)
    score = Evaluator(exemplar, n=PATCHES)
    scores: dict[str, list[float]] = {"": [], "p": []}
    shapes: dict[str, list[float]] = {"": [], "p": []}
    for tag, net in networks.items():
        for seed in range(SEEDS):
            path = folder / f"{name}{tag}_{seed}.png"
            write_image(path, sample(net, SIZE, SIZE, seed))
            image = read_image(path)  # as a user gets it: 8-bit
            scores[tag].append(score(image)["debiased"])
            shapes[tag].append(structure_scorer(name)(image))
    return {
        "variant": variant,
        "sets": sets,
        "texture": name,
        "samples": scores[""],
        "generator": statistics.mean(scores[""]),
        "projected_samples": scores["p"],
        "projected": statistics.mean(scores["p"]),
        "structure_samples": shapes[""],
        "projected_structure_samples": shapes["p"],
        "projected_structure": statistics.mean(shapes["p"]),
        **json.loads(meta_path.read_text()),
    }


def picture(name: str, variant: str, dest: Path) -> None:
    """crop | synth | three samples of the model with its projection, side by side."""
    from PIL import Image

    cells = [Image.open(exemplar_path(name)).convert("RGB").crop((0, 0, SIZE, SIZE))]
    cells.append(Image.open(OUT / "synth" / f"{name}.png").convert("RGB"))
    cells += [Image.open(OUT / variant / f"{name}p_{s}.png").convert("RGB") for s in range(SEEDS)]
    sheet = Image.new("RGB", (len(cells) * (SIZE + 4) - 4, SIZE), "white")
    for i, im in enumerate(cells):
        sheet.paste(im, (i * (SIZE + 4), 0))
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest, optimize=True)


def sheet(names: list[str], variants: list[str], dest: Path, side: int = 128) -> None:
    """One picture for the whole yardstick: a row per texture, crop | synth | each variant's
    sample with its projection (seed 0), each the top-left side x side at full resolution."""
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    cols = 2 + len(variants)
    out = Image.new("RGB", (cols * (side + 4) - 4, len(names) * (side + 4) - 4), "white")
    for row, name in enumerate(names):
        cells = [
            Image.open(exemplar_path(name)).convert("RGB"),
            Image.open(OUT / "synth" / f"{name}.png").convert("RGB"),
        ] + [Image.open(OUT / v / f"{name}p_0.png").convert("RGB") for v in variants]
        for col, im in enumerate(cells):
            out.paste(im.crop((0, 0, side, side)), (col * (side + 4), row * (side + 4)))
    if dest.suffix == ".png":
        out.save(dest, optimize=True)
    else:  # several variants side by side: a JPEG keeps the repository light
        out.save(dest, quality=92)


def load_rows() -> list[dict]:
    log = OUT / "results.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


STRUCTURE_BAR, STRUCTURE_TARGET = 2.0, 1.5  # the structure figure: 1.0 is a real piece


def passes(r: dict, s: dict) -> tuple[bool, bool]:
    """(the pieces bar, the structure bar) for a row r of a texture whose baselines are s.

    The pieces bar: the samples with the projection score (patch distance, mean of three) <=
    1.5 x synth's or <= what a typical real piece of the same size scores (the median of
    PIECES), and below the median blurred piece. (Comparing with one `synth` image alone, which
    on non-stationary exemplars beats every real piece, asked for more than the material;
    bench/RESULTS.md, "Generator yardstick".) The structure bar: the samples'
    structure figure (mean of three; 1.0 is a typical real piece) <= STRUCTURE_BAR, the target
    STRUCTURE_TARGET.
    """
    p = r["projected"]
    real = statistics.median(s["pieces"])
    pieces = p <= max(1.5 * s["synth"], real) and p < statistics.median(s["pieces_blur"])
    shape = r.get("projected_structure", float("inf")) <= STRUCTURE_BAR
    return pieces, shape


def synth_passes(s: dict) -> tuple[bool, bool]:
    """`synth`'s own image against the same bars: below the median blurred piece (it is its own
    1.5 x), and its structure figure <= STRUCTURE_BAR."""
    pieces = s["synth"] < statistics.median(s["pieces_blur"])
    return pieces, s.get("synth_structure", float("inf")) <= STRUCTURE_BAR


def _structure_cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(rows: list[dict], synth: dict[str, dict]) -> str:
    """Markdown: `synth` per texture, then one line per (variant, texture), then each
    variant's summary: how many rows pass each bar (`passes`)."""
    yes = {True: "yes", False: "NO"}
    lines = [
        "| texture | synth | median real piece | median blurred piece | real pieces' "
        "structure | synth structure | synth: pieces bar, structure bar |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in synth.items():
        ok = synth_passes(s)
        lines.append(
            f"| {name} | {s['synth']:.6f} | {statistics.median(s['pieces']):.6f} | "
            f"{statistics.median(s['pieces_blur']):.6f} | "
            f"{_structure_cell(s.get('pieces_structure'))} | "
            f"{s.get('synth_structure', float('nan')):.2f} | {yes[ok[0]]}, {yes[ok[1]]} |"
        )
    lines += [
        "",
        "| variant | texture | network | + projection | / synth | / median piece "
        "| pieces bar | structure, + proj. (3 samples) | network alone | structure bar "
        "| train/inference | train (min) |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        s = synth[r["texture"]]
        pieces, shape = passes(r, s)
        real = statistics.median(s["pieces"])
        m = r["modes"]
        lines.append(
            f"| {r['variant']} | {r['texture']} | {r['generator']:.6f} | {r['projected']:.6f} | "
            f"{r['projected'] / s['synth']:.2f} | {r['projected'] / real:.2f} | "
            f"{yes[pieces]} | {_structure_cell(r.get('projected_structure_samples'))} | "
            f"{_structure_cell(r.get('structure_samples'))} | {yes[shape]} | "
            f"{m['eval_mode'] / m['train_mode']:.3f} | {r['train_seconds'] / 60:.1f} |"
        )
    lines += [
        "",
        "| variant | textures | mean + proj. / synth | mean structure | worst structure "
        "| passed (pieces) | passed (structure <= 2.0) | structure <= 1.5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == v]
        proj = [r["projected"] / synth[r["texture"]]["synth"] for r in mine]
        shape = [r.get("projected_structure", float("nan")) for r in mine]
        ok = [passes(r, synth[r["texture"]]) for r in mine]
        lines.append(
            f"| {v} | {len(mine)} | {statistics.mean(proj):.2f} | {statistics.mean(shape):.2f} "
            f"| {max(shape):.2f} | {sum(o[0] for o in ok)}/{len(mine)} "
            f"| {sum(o[1] for o in ok)}/{len(mine)} "
            f"| {sum(x <= STRUCTURE_TARGET for x in shape)}/{len(mine)} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("variant", nargs="?", help="a name for these settings (models go to OUT/NAME)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--textures", nargs="+", default=YARDSTICK)
    p.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each")
    p.add_argument(
        "--threads",
        type=int,
        help="torch and exact-OT threads per job (default: 1 with several jobs, else every core)",
    )
    p.add_argument(
        "--refit-from",
        metavar="VARIANT",
        help="reuse that variant's networks, fitting only their projection anew",
    )
    p.add_argument("--picture", action="store_true", help="pictures to docs/images/generator/")
    p.add_argument("--table", action="store_true", help="print every variant's rows")
    p.add_argument(
        "--sheet", action="store_true", help="one picture of all textures to docs/images/generator/"
    )
    p.add_argument(
        "--beside", metavar="VARIANT", help="--sheet: that variant's samples in a column before"
    )
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "synth").mkdir(exist_ok=True)
    threads = args.threads or (1 if args.jobs > 1 else os.cpu_count() or 1)
    sets = parse_sets(args.sets)
    train_config(sets)  # fail early on a bad key

    with ProcessPoolExecutor(args.jobs) as pool:
        synth = {
            r["texture"]: r
            for r in pool.map(synth_row, args.textures, [threads] * len(args.textures))
        }
        for r in pool.map(pieces_row, args.textures, [threads] * len(args.textures)):
            synth[r["texture"]].update(r)
        if args.variant:
            done = {(r["variant"], r["texture"]) for r in load_rows() if "projected" in r}
            todo = [t for t in args.textures if (args.variant, t) not in done]
            jobs = [
                pool.submit(generator_row, args.variant, sets, t, threads, args.refit_from)
                for t in todo
            ]
            for job in jobs:
                row = job.result()
                with open(OUT / "results.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                s = synth[row["texture"]]["synth"]
                print(
                    f"{args.variant} {row['texture']}: + projection {row['projected']:.6f} "
                    f"synth {s:.6f} ratio {row['projected'] / s:.2f} structure "
                    f"{row['projected_structure']:.2f} ({row['train_seconds'] / 60:.1f} min)",
                    flush=True,
                )
    latest = {(r["variant"], r["texture"]): r for r in load_rows() if "projected" in r}
    rows = [r for r in latest.values() if r["texture"] in synth]
    if not args.table:
        rows = [r for r in rows if r["variant"] == args.variant]
    if args.variant:
        for t in args.textures:
            dest = ROOT / "docs/images/generator" if args.picture else OUT / args.variant
            picture(t, args.variant, dest / f"{t}.png")
        if args.sheet and args.beside:
            dest = ROOT / f"docs/images/generator/{args.variant}_beside_{args.beside}.jpg"
            sheet(args.textures, [args.beside, args.variant], dest)
        elif args.sheet:
            sheet(args.textures, [args.variant], ROOT / f"docs/images/generator/{args.variant}.png")
    print(table(rows, synth))


if __name__ == "__main__":
    main()
