"""How the final patch projection puts its chosen patches together, and what that does to the
structure figure (issue #32). Inference only: the cached models of bench/generator_quality.py.

    python bench/projection_aggregation.py [--models ps0005 base] [--textures NAME ...]
                                           [--variants today centre ...] [--diagnose]
                                           [--table] [--picture]

The network and its coarse projection stages are left as they are; only the last stage
(train/generator.py, PatchProjection: the 4x4 patches on a stride-2 grid, each replaced by the
exemplar patch argmin_j ||x_i - y_j||^2 - psi_j) changes, in this script:

- today:    the model as saved: the 4 overlapping patches of each pixel averaged;
- centre:   each 2x2 block takes the central 2x2 of the one patch centred on it, no averaging
            (per-axis weights [0, 1, 1, 0]: every pixel has exactly one patch with weight 1);
- weighted: per-pixel weights [1, 3, 3, 1] x [1, 3, 3, 1] inside each patch, normalised over
            the overlapping patches (per axis the two weights sum to 4 everywhere);
- iterT:    today's projection, then T - 1 more on its output with the fitted psi;
- iterT_psi0: the same with psi = 0 after the first (plain nearest patches);
- coarse_only, mix50: not variants, yardsticks: the final stage's input (the network after the
            coarse stages, in 8-bit levels; results.jsonl's "network alone" has no coarse
            stages), and that input averaged half and half with today's output;
- final_only: a yardstick too: the final projection as fitted, on the network alone (no coarse
            stages).

Each model samples seeds 0-2 at 256^2 (hashed noise, as generator_quality's `generator_row`),
writes 8-bit PNGs to out/projection_aggregation/MODEL/, reads them back and scores them with
generator_quality's patch distance (Evaluator, 1000 patches) and structure scorer, so `today`
must give results.jsonl's figures (checked: the PNGs are compared with generator_quality's).
Rows go to out/projection_aggregation/results.jsonl (a rerun skips what is there); `--table`
prints them as markdown. `--diagnose`: for the network alone, today's projection and each
variant, the excess z^2 of the Portilla-Simoncelli statistics by group (`GROUPS`) and by scale,
against what a real piece scores (leave-one-out over the scorer's 24 pieces). `--picture`:
docs/images/generator/projection_aggregation.jpg, 128^2 crops (seed 0) per texture: a real
piece, then the --columns (default today | iter2 | final_only).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import generator_quality as gq  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from train.generator import GeneratorConfig, PatchProjection, with_projection  # noqa: E402

OUT = ROOT / "out" / "projection_aggregation"
FIRST = ["bark", "dirt_pebbles", "wood_grain", "white_tiles"]
TEXTURES = FIRST + ["onyx_marble", "pebbles", "pebbles_height", "rusty_metal"]
# name: (per-axis weights inside a patch, passes, psi after the first pass: fitted or zero)
VARIANTS = {
    "today": ((1, 1, 1, 1), 1, "fitted"),
    "centre": ((0, 1, 1, 0), 1, "fitted"),
    "weighted": ((1, 3, 3, 1), 1, "fitted"),
    "iter2": ((1, 1, 1, 1), 2, "fitted"),
    "iter3": ((1, 1, 1, 1), 3, "fitted"),
    "iter2_psi0": ((1, 1, 1, 1), 2, "zero"),
    "iter3_psi0": ((1, 1, 1, 1), 3, "zero"),
    # Not projection changes but yardsticks for them (passes <= 0 marks them): the final
    # stage's input, i.e. the network after the coarse stages ("network alone" in results.jsonl
    # has no coarse stages either), and that input averaged half and half with today's output.
    "coarse_only": ((1, 1, 1, 1), -1, "fitted"),
    "mix50": ((1, 1, 1, 1), 0, "fitted"),
    # and the final projection (as fitted: after the coarse stages) on the network alone
    "final_only": ((1, 1, 1, 1), 1, "fitted"),
}
# plenoptic's PortillaSimoncelli.convert_to_dict keys, grouped as issue #32 reads them.
GROUPS = {
    "pixel": ["pixel_statistics", "var_highpass_residual"],
    "marginal/scale": ["skew_reconstructed", "kurtosis_reconstructed", "std_reconstructed"],
    "autocorr": ["auto_correlation_reconstructed"],
    "magnitude": [
        "auto_correlation_magnitude",
        "magnitude_std",
        "cross_orientation_correlation_magnitude",
    ],
    "cross-scale": ["cross_scale_correlation_magnitude", "cross_scale_correlation_real"],
}


@dataclass
class _Config(GeneratorConfig):
    """The model's config with `extra` more pixels trimmed per side by the final stage: the
    window arithmetic (tilegen/windows.py) then asks for a larger network output."""

    extra: int = 0

    @property
    def arch(self):
        a = super().arch
        return replace(a, tr=a.tr + self.extra)


class FinalVariant(nn.Module):
    """A stand-in for the model's PatchProjection: the same crop, targets, psi and argmin, with
    other overlap weights and/or more passes (VARIANTS)."""

    def __init__(self, project: PatchProjection, weights, passes: int, psi: str):
        super().__init__()
        assert project.relevel is None, "no cached model re-levels"
        self.p, self.passes = project, passes
        w = torch.tensor(weights, dtype=torch.float32)
        self.weights = w[:, None] * w[None, :]  # (4, 4)
        self.plain = tuple(weights) == (1, 1, 1, 1)
        self.later = project
        if psi == "zero":
            self.later = copy.deepcopy(project)
            self.later.bias.copy_((project.targets**2).sum(1))  # ||y_j||^2 - 0

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """One projection of an image of whole levels, the chosen patches put together with
        `weights` (today's arithmetic when they are all 1, so `today` is the model itself)."""
        p = self.p
        if self.plain:
            return p.from_levels(x)
        cols = F.conv2d(x, p.unfold, p.unfold_bias, stride=p.STRIDE)
        b, d1, h, w = cols.shape
        rows = cols.permute(0, 2, 3, 1).reshape(b * h * w, d1)
        y = p.targets[p.assign(rows)].reshape(b, h, w, d1 - 1).permute(0, 3, 1, 2)
        summed = F.conv_transpose2d(y, p.one_hot * self.weights, stride=p.STRIDE)
        ones = torch.ones(1, 1, h, w)
        norm = F.conv_transpose2d(ones, self.weights[None, None], stride=p.STRIDE)
        t = p.TRIM
        norm = norm[:, :, t:-t, t:-t]
        assert torch.all(norm == norm[0, 0, 0, 0]), "weights must cover every pixel alike"
        return summed[:, :, t:-t, t:-t] / (norm * p.LEVELS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        c = self.p.crop
        x = image[:, :, c:-c, c:-c] if c else image
        levels = torch.round(x.clamp(0.0, 1.0) * self.p.LEVELS)
        t = self.p.TRIM
        before = levels[:, :, t:-t, t:-t] / self.p.LEVELS  # the input at the output's pixels
        if self.passes < 0:
            return before
        out = self.aggregate(levels)
        if self.passes == 0:
            return 0.5 * (out + before)
        for _ in range(1, self.passes):  # each later pass trims TRIM more (even: grid aligned)
            out = self.later(out)
        return out


def variant_model(model, name: str):
    """A copy of `model` whose final projection is VARIANTS[name]."""
    weights, passes, psi = VARIANTS[name]
    if name == "today":
        return model
    if name == "final_only":  # the window arithmetic of a model without coarse stages
        out = with_projection(model, model.cfg.projection, None)
        out.project.load_state_dict(model.project.state_dict())
        return out.eval()
    out = copy.deepcopy(model)
    fields = {k: getattr(model.cfg, k) for k in model.cfg.__dataclass_fields__}
    out.cfg = _Config(**fields, extra=PatchProjection.TRIM * max(passes - 1, 0))
    out.project = FinalVariant(out.project, weights, passes, psi)
    return out.eval()


def sample_paths(model_name: str, texture: str, variant: str) -> list[Path]:
    return [OUT / model_name / f"{texture}_{variant}_{s}.png" for s in range(gq.SEEDS)]


def score_variant(model_name: str, texture: str, variant: str, model, evaluator) -> dict:
    from tilegen.imageio import read_image, write_image
    from train.train_generator import sample

    net = variant_model(model, variant)
    scores, shapes = [], []
    for seed, path in enumerate(sample_paths(model_name, texture, variant)):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, sample(net, gq.SIZE, gq.SIZE, seed))
        image = read_image(path)  # as a user gets it: 8-bit, as generator_row scores
        scores.append(evaluator(image)["debiased"])
        shapes.append(gq.structure_scorer(texture)(image))
    return {
        "model": model_name,
        "texture": texture,
        "variant": variant,
        "patch": scores,
        "structure": shapes,
    }


def same_png(a: Path, b: Path) -> bool:
    from PIL import Image

    return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def load(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def run(models: list[str], textures: list[str], variants: list[str]) -> None:
    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image
    from train.checkpoint import load_generator

    log = OUT / "results.jsonl"
    done = {(r["model"], r["texture"], r["variant"]) for r in load(log)}
    reference = {(r["variant"], r["texture"]): r for r in gq.load_rows() if "projected" in r}
    for m in models:
        for t in textures:
            todo = [v for v in variants if (m, t, v) not in done]
            if not todo:
                continue
            model, _ = load_generator(gq.OUT / m / f"{t}.pt")
            model.eval()
            evaluator = Evaluator(read_image(gq.exemplar_path(t)), n=gq.PATCHES)
            for v in todo:
                row = score_variant(m, t, v, model, evaluator)
                if v == "today":  # must be generator_quality's projected samples, bit for bit
                    ref = reference[(m, t)]
                    gen = [gq.OUT / m / f"{t}p_{s}.png" for s in range(gq.SEEDS)]
                    row["same_png"] = all(map(same_png, sample_paths(m, t, v), gen))
                    row["same_scores"] = np.allclose(
                        row["patch"], ref["projected_samples"], rtol=1e-9
                    ) and np.allclose(
                        row["structure"], ref["projected_structure_samples"], rtol=1e-9
                    )
                    assert row["same_png"] and row["same_scores"], (m, t, row)
                with open(log, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{m} {t} {v}: patch {statistics.mean(row['patch']):.6f} structure "
                    f"{statistics.mean(row['structure']):.2f}",
                    flush=True,
                )


def _cell(patch: list[float], shape: list[float]) -> str:
    return f"{statistics.mean(patch) * 1e4:.2f} / {statistics.mean(shape):.2f}"


def table(variants: list[str]) -> str:
    """Markdown: per model and texture, the network alone (results.jsonl) and each variant as
    'patch distance x 1e4 / structure' (means of the 3 seeds), then per model on how many
    textures each variant beats today (by 2% or more) and keeps the patch distance."""
    rows = load(OUT / "results.jsonl")
    got = {(r["model"], r["texture"], r["variant"]): r for r in rows}
    reference = {(r["variant"], r["texture"]): r for r in gq.load_rows() if "projected" in r}
    shown = [v for v in variants if any(k[2] == v for k in got)]
    lines = [
        "| model | texture | network alone | " + " | ".join(shown) + " |",
        "|---|---|" + "---:|" * (len(shown) + 1),
    ]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        for t in TEXTURES:
            if (m, t, "today") not in got:
                continue
            ref = reference[(m, t)]
            cells = [_cell(ref["samples"], ref["structure_samples"])]
            for v in shown:
                r = got.get((m, t, v))
                cells.append(_cell(r["patch"], r["structure"]) if r else "-")
            lines.append(f"| {m} | {t} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | variant | textures | structure better (< 0.98x today) | patch distance no worse "
        "(<= 1.02x today) | both | mean structure / today | mean patch distance / today |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in models:
        for v in shown:
            if v == "today":
                continue
            pairs = [
                (got[(m, t, v)], got[(m, t, "today")])
                for t in TEXTURES
                if (m, t, v) in got and (m, t, "today") in got
            ]
            if not pairs:
                continue
            s = [
                statistics.mean(a["structure"]) / statistics.mean(b["structure"]) for a, b in pairs
            ]
            p = [statistics.mean(a["patch"]) / statistics.mean(b["patch"]) for a, b in pairs]
            better = [x < 0.98 for x in s]  # 2%: below the seeds' spread is noise
            kept = [x <= 1.02 for x in p]
            lines.append(
                f"| {m} | {v} | {len(pairs)} | {sum(better)} | {sum(kept)} "
                f"| {sum(b and k for b, k in zip(better, kept))} | {statistics.mean(s):.3f} "
                f"| {statistics.mean(p):.3f} |"
            )
    return "\n".join(lines)


# --- (e) which Portilla-Simoncelli statistics carry the excess z^2 ----------------------------


def group_index(scorer) -> dict[str, list[tuple[str, int | None, torch.Tensor]]]:
    """For each group of GROUPS: (key, scale or None, indices into the statistics vector)."""
    ps = scorer.stats.model
    n = scorer.mean.shape[-1]
    d = ps.convert_to_dict(torch.arange(n, dtype=torch.float64)[None, None])
    out: dict = {}
    for g, keys in GROUPS.items():
        for k in keys:
            v = d[k][0, 0]
            if k in ("pixel_statistics", "var_highpass_residual"):
                parts = [(None, v)]
            else:  # the last axis is the scale (the reconstructed ones: scales + 1)
                parts = [(s, v[..., s]) for s in range(v.shape[-1])]
            for s, idx in parts:
                idx = idx[~torch.isnan(idx)].long()
                if idx.numel():
                    out.setdefault(g, []).append((k, s, idx))
    return out


def diagnose(model_name: str, texture: str, variants: list[str]) -> list[dict]:
    """z^2 by group and by scale for the network alone, each variant and a typical real piece
    (the mean over the scorer's 24 pieces, each against the other 23), all / unit^2 so that
    sqrt(sum) is the structure figure."""
    from tilegen.baselines import real_pieces
    from tilegen.imageio import read_image

    scorer = gq.structure_scorer(texture)
    idx = group_index(scorer)
    unit2 = scorer.unit**2
    real = real_pieces(read_image(gq.exemplar_path(texture)), gq.SIZE, gq.SIZE, 24, [0, 1])
    ref = scorer.stats.of_images(real)
    real_z2 = []
    for n in range(ref.shape[0]):
        others = torch.cat([ref[:n], ref[n + 1 :]])
        mean = others.mean(0)
        std = others.std(0, unbiased=True)
        spread = std + 1e-3 * std.median().clamp_min(1e-12)
        real_z2.append(((ref[n] - mean) / spread) ** 2 / unit2)
    real_z2 = torch.stack(real_z2).mean(0)  # per statistic: what a real piece scores on average
    images = {"network": [gq.OUT / model_name / f"{texture}_{s}.png" for s in range(gq.SEEDS)]}
    images.update({v: sample_paths(model_name, texture, v) for v in variants})
    z2s = {"real piece (mean)": real_z2}
    for name, paths in images.items():
        stats = scorer.stats.of_images([read_image(p) for p in paths])
        z2s[name] = (((stats - scorer.mean) / scorer.spread) ** 2 / unit2).mean(0)
    rows = []
    for name, z2 in z2s.items():
        row = {"model": model_name, "texture": texture, "image": name, "total": float(z2.sum())}
        for g, parts in idx.items():
            row[g] = float(sum(z2[i].sum() for _, _, i in parts))
            for _, s, i in parts:
                if s is not None:
                    key = f"scale {s}"
                    row[key] = row.get(key, 0.0) + float(z2[i].sum())
        rows.append(row)
    return rows


def diagnose_table(rows: list[dict]) -> str:
    groups = list(GROUPS)
    scales = sorted({k for r in rows for k in r if k.startswith("scale ")})
    lines = [
        "| model | texture | image | structure^2 | "
        + " | ".join(groups)
        + " | "
        + " | ".join(scales)
        + " |",
        "|---|---|---|" + "---:|" * (1 + len(groups) + len(scales)),
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['texture']} | {r['image']} | {r['total']:.2f} | "
            + " | ".join(f"{r[g]:.2f}" for g in groups)
            + " | "
            + " | ".join(f"{r.get(s, 0):.2f}" for s in scales)
            + " |"
        )
    return "\n".join(lines)


def picture(model_name: str, textures: list[str], columns: list[str], side: int = 128) -> Path:
    """a real piece | each of `columns` (variants, or "network": the network alone), seed 0,
    the top-left side^2 of each."""
    from PIL import Image

    from tilegen.baselines import real_pieces
    from tilegen.imageio import read_image

    n = 1 + len(columns)
    out = Image.new("RGB", (n * (side + 4) - 4, len(textures) * (side + 4) - 4), "white")
    for row, t in enumerate(textures):
        piece = real_pieces(read_image(gq.exemplar_path(t)), side, side, 1, seed=0)[0]
        piece = np.clip(np.round(piece[..., :3] * 255), 0, 255).astype(np.uint8)
        if piece.shape[-1] == 1:
            piece = piece[..., 0]
        cells = [Image.fromarray(piece).convert("RGB")]
        for v in columns:
            path = gq.OUT / model_name / f"{t}_0.png" if v == "network" else None
            cells.append(Image.open(path or sample_paths(model_name, t, v)[0]).convert("RGB"))
        for col, im in enumerate(cells):
            out.paste(im.crop((0, 0, side, side)), (col * (side + 4), row * (side + 4)))
    dest = ROOT / "docs/images/generator/projection_aggregation.jpg"
    out.save(dest, quality=90)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["ps0005", "base"])
    p.add_argument("--textures", nargs="+", default=TEXTURES)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--table", action="store_true", help="only print the table of every row")
    p.add_argument("--diagnose", nargs="*", metavar="VARIANT", help="(e) for these variants")
    p.add_argument("--picture", nargs="+", metavar="TEXTURE", help="the picture of these")
    p.add_argument(
        "--columns",
        nargs="+",
        default=["today", "iter2", "final_only"],
        help="the picture's columns after the real piece (variants, or network)",
    )
    args = p.parse_args()
    gq._threads(1)  # one torch thread: the machine is shared
    OUT.mkdir(parents=True, exist_ok=True)
    if args.picture:
        print(picture(args.models[0], args.picture, args.columns))
        return
    if args.diagnose is not None:
        rows = [
            r for m in args.models for t in args.textures for r in diagnose(m, t, args.diagnose)
        ]
        print(diagnose_table(rows))
        return
    if not args.table:
        run(args.models, args.textures, args.variants)
    print(table(list(VARIANTS)))


if __name__ == "__main__":
    main()
