"""PBR materials: per-map quality and cross-map consistency of `synth` and of a material model.

The exemplars are the shared CC0 sets (../shared/materials: pebbles, ground_dirt, bark; albedo,
normal, roughness, height, ao; 1024x1024, tileable) at half resolution (2x2 mean: 512x512, the
whole surface; features half as large, so a 256x256 output holds more of them), or with
`--exemplar crop` their top-left 512x512 crops at full resolution. Each result is unstacked into its
maps and every map is scored alone against the exemplar's map with tilegen.evaluate (debiased
patch-OT distance, 1000 patches x 2 draws, 4 scales), next to two sigma=1 blur baselines of
that map: of a top-left crop as large as the result (the bar, as in bench/generator_quality.py)
and of the whole exemplar (which no 256x256 height map can reach: see `floor`); and the
normals' agreement with the height map's slopes (normal~height, the mean correlation of n_x,
n_y with -dh/dx, -dh/dy) is compared with the exemplar's own (ratio; the bar is 0.8).

    python bench/material_quality.py synth [--size 256] [--iters 500]      # synth on every set
                                                  (cached in out/material_quality/; --fresh)
    python bench/material_quality.py weights [--size 128] [--iters 300]    # map weights compared
    python bench/material_quality.py model MODEL.pt [--set pebbles]        # samples of a model
    python bench/material_quality.py ... --picture                         # lit contact sheet
    python bench/material_quality.py preview [MODEL.pt]   # docs/images/material_preview.png
    python bench/material_quality.py floor | pieces        # what an ideal / a real piece scores

Each prints a markdown table (the one in bench/RESULTS.md, "PBR materials"); rows are also
appended to out/material_quality.jsonl. `--picture` writes docs/images/materials_<mode>.jpg:
per set, the exemplar's albedo and lit render, then the result's albedo, normal, height and lit
render.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tilegen.evaluator import MaterialEvaluator  # noqa: E402
from tilegen.material import (  # noqa: E402
    channel_weights,
    finish,
    layout_of,
    lit,
    read_material,
    spans,
    unstack,
)

SETS = ROOT.parent / "shared" / "materials"
NAMES = ("pebbles", "ground_dirt", "bark")
CROP = 512
EVAL = {"n": 1000, "seeds": 2, "scales": 4}
# Weight settings compared by `weights` (ROLE=W over DEFAULT_WEIGHTS; "ones": every map 1).
SETTINGS = {
    "ones": ["albedo=1", "normal=1", "height=1", "roughness=1", "ao=1"],
    "structure x2": ["albedo=1", "normal=2", "height=2", "roughness=1", "ao=1"],
    "structure x4": ["albedo=1", "normal=4", "height=4", "roughness=1", "ao=1"],
    "albedo x3": ["albedo=3", "normal=1", "height=1", "roughness=1", "ao=1"],
}


def exemplar(name: str, kind: str = "half") -> tuple[np.ndarray, dict]:
    """A set's 512x512 exemplar: the whole set at half resolution (2x2 mean, quantised to 8 bits
    as a file of it would be: the bundled model's is such a file), or its top-left crop."""
    m = read_material(SETS / name)
    full = m.stack()
    if kind == "crop":
        return full[:CROP, :CROP], layout_of(m)
    h, w, c = full.shape
    levels = np.rint(full.astype(np.float64) * 255)  # the 8-bit files' integers
    half = np.rint(levels.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))) / 255
    return half.astype(np.float32), layout_of(m)


def quantised(img: np.ndarray) -> np.ndarray:
    """As written to 8-bit files: scored as the user gets it."""
    return (np.rint(np.clip(img, 0, 1) * 255) / 255).astype(np.float32)


def score(ex: np.ndarray, layout: dict, images: dict[str, np.ndarray]) -> dict:
    """{name: MaterialEvaluator figures} for the images and two sigma=1 blur baselines: of the
    whole exemplar ("blur"), and of its top-left crop of the results' size ("crop_blur": a
    blurred real piece of the surface as large as the results, bench/generator_quality.py's
    baseline; a smooth height map's whole-exemplar blur scores below what any 256x256 piece of
    the exemplar itself can, see `floor`)."""
    from tilegen.baselines import gaussian_blur

    ev = MaterialEvaluator(ex, layout, **EVAL)
    out = {k: ev(quantised(finish(v, layout)), k) for k, v in images.items()}
    out["blur"] = ev(ev.baselines()["blur_sigma1"], "blur")
    h, w = next(iter(images.values())).shape[:2]
    out["crop_blur"] = ev(quantised(gaussian_blur(ex[:h, :w], 1.0)), "crop_blur")
    return out


def rows(set_name: str, what: str, scored: dict, seconds: float) -> list[dict]:
    blur, crop_blur = scored.pop("blur"), scored.pop("crop_blur")
    out = []
    for name, r in scored.items():
        row = {"set": set_name, "what": what, "name": name, "seconds": round(seconds, 1)}
        for role, m in r["maps"].items():
            row[role] = m["debiased"]
            row[role + "_blur"] = blur["maps"][role]["debiased"]
            row[role + "_crop_blur"] = crop_blur["maps"][role]["debiased"]
        nh = r["consistency"].get("normal~height")
        if nh:
            row["nh_exemplar"], row["nh"], row["nh_ratio"] = (
                nh["exemplar"],
                nh["image"],
                nh["ratio"],
            )
        row["pairs"] = {k: v for k, v in r["consistency"].items() if k != "normal~height"}
        out.append(row)
    return out


def table(results: list[dict]) -> str:
    roles = [
        r for r in ("albedo", "normal", "roughness", "height", "ao") if any(r in x for x in results)
    ]
    head = "| set | result | " + " | ".join(f"{r} (crop blur; blur)" for r in roles)
    head += " | normal~height (exemplar) | ratio | s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def cell(x: dict, r: str) -> str:
        # "!": above the blur of a crop the result's size (rows from before it: the whole blur)
        crop = x.get(r + "_crop_blur")
        bar = x[r + "_blur"] if crop is None else crop
        first = "?" if crop is None else f"{crop:.2e}"
        return f"{x[r]:.2e} ({first}; {x[r + '_blur']:.2e})" + (" !" if x[r] >= bar else "")

    for x in results:
        cells = [cell(x, r) if r in x else "-" for r in roles]
        nh = f"{x['nh']:.2f} ({x['nh_exemplar']:.2f})" if "nh" in x else "-"
        ratio = f"{x['nh_ratio']:.2f}" if "nh" in x else "-"
        lines.append(
            f"| {x['set']} | {x['name']} | " + " | ".join(cells) + f" | {nh} | {ratio} | "
            f"{x['seconds']:.0f} |"
        )
    return "\n".join(lines)


def synth_one(
    ex: np.ndarray, layout: dict, size: int, iters: int, weights: list[str] | None, scales: int = 4
):
    from train.synth import SynthConfig, synthesize

    cfg = SynthConfig(size=(size, size), iters=iters, device="cpu")
    roles = [m["role"] for m in layout["maps"]]
    weights = [w for w in weights or [] if w.split("=")[0] in roles]  # ground_dirt has no ao
    cfg = replace(cfg, ot=replace(cfg.ot, scales=scales, weights=channel_weights(layout, weights)))
    t = time.perf_counter()
    img = synthesize(ex, cfg)
    return img, time.perf_counter() - t


def picture(results: dict[str, tuple[np.ndarray, np.ndarray, dict]], path: Path) -> None:
    """Per set one row: exemplar albedo, exemplar lit | result albedo, normal, height, lit."""
    from tilegen.imageio import write_image

    tiles, side, gap = [], 256, 8
    for ex, img, layout in results.values():
        e, m = unstack(ex[:side, :side], spans(layout)), unstack(img[:side, :side], spans(layout))
        grey = lambda a: np.repeat(a, 3, axis=2)  # noqa: E731
        row = [e["albedo"], lit(ex[:side, :side], layout), m["albedo"], m["normal"]]
        row += [grey(m["height"]) if "height" in m else m["albedo"], lit(img[:side, :side], layout)]
        h = min(r.shape[0] for r in row)
        pad = np.ones((h, gap, 3), np.float32)
        tiles.append(np.concatenate(sum([[r[:h], pad] for r in row], [])[:-1], axis=1))
    width = max(t.shape[1] for t in tiles)
    sheet = []
    for t in tiles:
        sheet += [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=1)]
        sheet += [np.ones((gap, width, 3), np.float32)]
    write_image(path, np.concatenate(sheet[:-1], axis=0))
    print(f"wrote {path}")


def preview(model: Path, size: int = 256, seed: int = 1) -> None:
    """The README's picture: a periodic sample of a material model as albedo | normal | height |
    lit, written to docs/images/material_preview.png."""
    from tilegen.imageio import write_image
    from train.checkpoint import load_generator
    from train.train_generator import sample

    gen, meta = load_generator(model, "cpu")
    layout = meta["material"]
    img = finish(sample(gen, size, size, seed, periodic=True), layout)
    m = unstack(img, spans(layout))
    row = [m["albedo"], m["normal"], np.repeat(m["height"], 3, axis=2), lit(img, layout)]
    pad = np.ones((size, 8, 3), np.float32)
    strip = np.concatenate([row[0], pad, row[1], pad, row[2], pad, row[3]], axis=1)
    path = ROOT / "docs" / "images" / "material_preview.png"
    write_image(path, strip)
    print(f"wrote {path}")


def floor(sets: list[str], size: int, kind: str) -> None:
    """Per map, what an ideal size x size output is expected to score (bench/synth_quality.py's
    size_floor: its patches a random sample of the exemplar's own), beside the map's blur."""
    sys.path.insert(0, str(ROOT / "bench"))
    from synth_quality import size_floor

    from tilegen.baselines import baseline_images
    from tilegen.evaluator import Evaluator

    for name in sets:
        ex, layout = exemplar(name, kind)
        cells = []
        for role, m in unstack(ex, spans(layout)).items():
            blur = Evaluator(m, **EVAL)(baseline_images(m)["blur_sigma1"])["debiased"]
            ideal = size_floor(m, size, seeds=EVAL["seeds"])["debiased"]
            cells.append(f"{role} floor {ideal:.2e} (blur {blur:.2e})")
        print(f"{name} {kind} {size}x{size}: " + "; ".join(cells), flush=True)


def pieces(sets: list[str], size: int, count: int = 12) -> None:
    """`count` real size x size pieces of each exemplar, cut at random places
    (tilegen.baselines.real_pieces, seed 0), and their sigma = 1 blurs, scored like results: per
    map the median piece and the median blurred piece as multiples of the crop's blur (the
    bar), and normal~height's median as a ratio to the whole exemplar's."""
    from tilegen.baselines import gaussian_blur, real_pieces

    for name in sets:
        ex, layout = exemplar(name)
        cut = real_pieces(ex, size, size, count, seed=0)
        images = {f"piece {k}": p for k, p in enumerate(cut)}
        images |= {f"blurred {k}": quantised(gaussian_blur(p, 1.0)) for k, p in enumerate(cut)}
        scored = score(ex, layout, images)
        bar = scored.pop("crop_blur")["maps"]
        scored.pop("blur")
        cells = []
        for role in bar:
            each = [scored[f"piece {k}"]["maps"][role]["debiased"] for k in range(count)]
            blurred = [scored[f"blurred {k}"]["maps"][role]["debiased"] for k in range(count)]
            b = bar[role]["debiased"]
            cells.append(
                f"{role} {np.median(each) / b:.2f} ({min(each) / b:.2f}-{max(each) / b:.2f}; "
                f"blurred {np.median(blurred) / b:.2f})"
            )
        nh = [scored[f"piece {k}"]["consistency"].get("normal~height") for k in range(count)]
        if nh[0]:
            cells.append(f"normal~height {np.median([x['ratio'] for x in nh]):.2f}")
        print(f"{name}, {count} pieces: " + "; ".join(cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("synth", "weights", "model", "preview", "floor", "pieces"))
    ap.add_argument("model", nargs="?", help="model: a material .pt")
    ap.add_argument("--sets", nargs="*", default=list(NAMES))
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--scales", type=int, default=4, help="synth: loss scales (4: the default)")
    ap.add_argument("--samples", type=int, default=3, help="model: samples (seeds 0..N-1)")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), help="weights: which")
    ap.add_argument("--picture", action="store_true")
    ap.add_argument("--exemplar", choices=("half", "crop"), default="half")
    ap.add_argument("--fresh", action="store_true", help="synth: ignore cached results")
    a = ap.parse_args()
    if a.mode == "preview":
        return preview(Path(a.model or ROOT / "tilegen" / "assets" / "pebbles_material.pt"))
    if a.mode == "floor":
        return floor(a.sets, a.size or 256, a.exemplar)
    if a.mode == "pieces":
        return pieces(a.sets, a.size or 256)
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    results, shown, done = [], {}, 0
    for name in a.sets:
        ex, layout = exemplar(name, a.exemplar)
        if a.mode == "synth":
            size, iters = a.size or 256, a.iters or 500
            tag = f"{a.exemplar}_{size}_{iters}" + ("" if a.scales == 4 else f"_s{a.scales}")
            cache = out / "material_quality" / f"synth_{name}_{tag}.npz"
            if cache.is_file() and not a.fresh:  # synth takes 5-11 minutes a set here
                img, sec = np.load(cache)["image"], float(np.load(cache)["seconds"])
            else:
                img, sec = synth_one(ex, layout, size, iters, None, a.scales)
                cache.parent.mkdir(exist_ok=True)
                np.savez(cache, image=img, seconds=sec)
            results += rows(name, "synth", score(ex, layout, {"synth": img}), sec)
            shown[name] = (ex, img, layout)
        elif a.mode == "weights":
            for s in a.settings:
                img, sec = synth_one(ex, layout, a.size or 128, a.iters or 300, SETTINGS[s])
                results += rows(name, "weights", score(ex, layout, {s: img}), sec)
                shown[f"{name} {s}"] = (ex, img, layout)
                print(table(results[-1:]), flush=True)
        else:
            from train.checkpoint import load_generator
            from train.train_generator import sample

            gen, meta = load_generator(a.model, "cpu")
            layout = meta["material"]
            size, t = a.size or 256, time.perf_counter()
            imgs = {f"model seed {s}": sample(gen, size, size, s) for s in range(a.samples)}
            sec = (time.perf_counter() - t) / a.samples
            results += rows(name, "model", score(ex, layout, imgs), sec)
            shown[name] = (ex, imgs["model seed 0"], layout)
        with open(out / "material_quality.jsonl", "a") as f:
            for r in results[done:]:
                f.write(json.dumps(r) + "\n")
        done = len(results)
    print(table(results))
    if a.picture:
        picture(shown, ROOT / "docs" / "images" / f"materials_{a.mode}.jpg")


if __name__ == "__main__":
    main()
