"""`tilegen world`: cost against one model's generate, transitions against cell edges, mixes.

    python bench/world_cost.py                     # the bundled example, a 16x16-cell crop at 128
    python bench/world_cost.py --crop 24 --cell 128 --threads 2 --repeat 3
    python bench/world_cost.py --scale 2 --crop 32    # the layout at twice its resolution
    python bench/world_cost.py --scale 2 --crop 128 --repeat 1 --cost-only   # all of it: 16384^2

1. Cost. The top-left `--crop` x `--crop` cells of the layout (tilegen/assets/world/layout.png,
   three labels, 64x64; with `--scale S` each of its cells S x S cells: the same map at S times
   its resolution, regions S times larger in cells) painted at `--cell` pixels per cell into a
   store (no pyramid), beside `generate` of each of its three models at the same size, shards
   and threads, and beside the same world with each label painted by a copy of the grass
   model (what the world's machinery adds to one model), all alternated `--repeat` times in
   this process (the machine may be shared: the fastest run of each is compared, in wall time
   and in this process's CPU time). Models may differ in cost, so the world is compared with
   its models' own `generate` at the share of the output where each label's weight is the
   largest, and with the grass model's. Also the pixels each model was evaluated on, over the
   output's.
2. Edges. Over the whole layout at `--cell`, the share of transition-centre pixels (the two
   largest weights within 0.1 of each other) lying within 2 pixels of a layout cell edge, beside
   the share of all pixels lying there (chance), for the warped field and for the same field
   without the warp (the plain B-spline upsampling, whose boundaries follow cell edges).
3. Mixes. In the crop's transitions (largest weight below 0.7), the local contrast (standard
   deviation of the luminance minus its 9x9 mean) over that of the labels' own pixels, for the
   variance-preserving and the linear mix; and for the height mix, the bundled pebbles material
   (`tilegen sample`, two seeds, albedo and height) across a 256-pixel ramp: albedo contrast in
   the middle half for height, variance and linear, and the share of those pixels where one
   material shows alone (its b_i above 0.9 of the sum).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ASSETS = ROOT / "tilegen" / "assets"
OUT = ROOT / "bench" / "out" / "world"
LEGEND = {"#3a7d2c": ASSETS / "default.onnx", "#8a6a45": ASSETS / "world" / "dirt_pebbles.onnx",
          "#5b4636": ASSETS / "world" / "bark.onnx"}  # fmt: skip


def labels_arg() -> list[str]:
    return [f"{k}={v}" for k, v in LEGEND.items()]


def scaled_layout(scale: int = 1) -> Path:
    """The bundled layout with each cell repeated scale x scale times (a palette PNG)."""
    from PIL import Image

    if scale == 1:
        return ASSETS / "world" / "layout.png"
    im = Image.open(ASSETS / "world" / "layout.png")
    path = OUT / f"layout_x{scale}.png"
    im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST).save(path)
    return path


def crop_layout(cells: int, scale: int = 1) -> Path:
    from PIL import Image

    im = Image.open(scaled_layout(scale))
    path = OUT / f"layout_x{scale}_{cells}.png"
    im.crop((0, 0, cells, cells)).save(path)
    return path


def timed_store(cfg) -> tuple[float, float]:
    """(wall, CPU) seconds of one store: CPU time (this process's threads) is what other jobs
    on a shared machine disturb least."""
    from tilegen.tiler import generate

    shutil.rmtree(cfg.output, ignore_errors=True)
    t, cpu = time.perf_counter(), time.process_time()
    generate(cfg)
    return time.perf_counter() - t, time.process_time() - cpu


def dominant_shares(spec) -> list[float]:
    """Per label, the share of the output's pixels where its weight is the largest."""
    from tilegen.grid import tiles
    from tilegen.layout import parse_labels, read_layout
    from tilegen.warp import Field

    lay = read_layout(spec.layout, parse_labels(labels_arg()))
    field = Field(lay.labels, spec.size, 1, spec.blend, spec.periodic)
    counts = np.zeros(len(spec.models))
    for t in tiles(0, 0, *spec.size, 512):
        present, w = field.weights(t.y, t.x, t.h, t.w)
        top = w.argmax(axis=0)
        for i, label in enumerate(present):
            counts[label] += int((top == i).sum())
    return (counts / counts.sum()).tolist()


def copies_of_grass() -> list[str]:
    """The legend with every label painted by its own copy of the grass model: a world that
    costs what the world machinery adds to one model."""
    out = []
    for i, key in enumerate(LEGEND):
        copy = OUT / f"grass_copy{i}.onnx"
        shutil.copyfile(LEGEND["#3a7d2c"], copy)
        out.append(f"{key}={copy}")
    return out


def cost(args) -> dict:
    """Each model's own `generate`, the world, and the world of three grass copies, alternated
    `--repeat` times: (wall, CPU) seconds per run."""
    from tilegen import world as worlds
    from tilegen.tiler import GenerateConfig

    layout = str(crop_layout(args.crop, args.scale))
    spec = worlds.plan_world(layout, labels_arg(), cell=args.cell, blend=args.blend)
    copies = worlds.plan_world(layout, copies_of_grass(), cell=args.cell, blend=args.blend)
    common = dict(size=spec.size, seed=1, threads=args.threads, device="cpu", progress=False,
                  pyramid=False, log=lambda m: None)  # fmt: skip
    runs = {Path(m).name: GenerateConfig(model=m, output=str(OUT / "one.zarr"), **common)
            for m in spec.models}  # fmt: skip
    for name, s in (("world", spec), ("world of grass copies", copies)):
        runs[name] = GenerateConfig(model=s.models[0], output=str(OUT / "world.zarr"), world=s,
                                    **common)  # fmt: skip
    times: dict[str, list] = {name: [] for name in runs}
    rendered = None
    for _ in range(args.repeat):
        for name, cfg in runs.items():
            worlds._WORLDS.clear()
            times[name].append(timed_store(cfg))
            if name == "world":
                rendered = next(iter(worlds._WORLDS.values())).rendered
    mp = spec.size[0] * spec.size[1] / 1e6
    evaluated = [r / (mp * 1e6) for r in rendered]
    return {"spec": spec, "mp": mp, "times": times, "evaluated": evaluated,
            "shares": dominant_shares(spec)}  # fmt: skip


def edge_share(labels: np.ndarray, cell: int, blend: float, window: int = 1024) -> tuple:
    """(share of transition centres within 2 px of a cell edge, chance) over the whole field."""
    from tilegen.grid import tiles
    from tilegen.warp import Field

    size = (labels.shape[0] * cell, labels.shape[1] * cell)
    field = Field(labels, size, 1, blend)
    centres = near = 0
    for t in tiles(0, 0, *size, window):
        present, w = field.weights(t.y, t.x, t.h, t.w)
        if len(present) < 2:
            continue
        top = np.sort(w, axis=0)
        ys, xs = np.nonzero(top[-1] - top[-2] < 0.1)
        ys, xs = ys + t.y, xs + t.x
        d = np.minimum(
            np.minimum(ys % cell, cell - ys % cell), np.minimum(xs % cell, cell - xs % cell)
        )
        centres += ys.size
        near += int((d < 2).sum())
    edge = 1 - ((cell - 4) / cell) ** 2  # pixels within 2 of a horizontal or vertical edge line
    return near / max(centres, 1), edge, centres


def edges(args) -> dict:
    from tilegen import warp
    from tilegen.layout import parse_labels, read_layout

    labels = read_layout(scaled_layout(args.scale), parse_labels(labels_arg())).labels
    warped = edge_share(labels, args.cell, args.blend)
    keep = warp.AMPLITUDE
    warp.AMPLITUDE = 0.0
    try:
        plain = edge_share(labels, args.cell, args.blend)
    finally:
        warp.AMPLITUDE = keep
    return {"warped": warped, "plain": plain, "layout": labels.shape}


def local_contrast(rgb: np.ndarray) -> np.ndarray:
    """|luminance - its 9x9 box mean| per pixel of (3, h, w)."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    pad = np.pad(lum, 4, mode="reflect")
    c = np.cumsum(np.cumsum(np.pad(pad, ((1, 0), (1, 0))), 0), 1)
    h, w = lum.shape
    box = (c[9 : 9 + h, 9 : 9 + w] - c[:h, 9 : 9 + w] - c[9 : 9 + h, :w] + c[:h, :w]) / 81
    return lum - box


def mixes(spec, threads: int) -> dict:
    """Local contrast in the crop's transitions over the labels' own, per mix."""
    from dataclasses import replace

    from tilegen.grid import tiles
    from tilegen.world import World

    out = {}
    for mix in ("variance", "linear"):
        world = World(replace(spec, mix=mix), 1, threads, "cpu")
        inside, across = [], []
        for t in tiles(0, 0, *spec.size, 512):
            present, w = world.field.weights(t.y, t.x, t.h, t.w)
            if len(present) < 2:
                continue
            hp = local_contrast(world.window(1, t.y, t.x, t.h, t.w))
            top = w.max(axis=0)
            inside.append(hp[top == 1])
            across.append(hp[top < 0.7])
        out[mix] = float(np.concatenate(across).std() / np.concatenate(inside).std())
    return out


def material_sample(seed: int) -> np.ndarray:
    """A 256x256 sample of the bundled pebbles material (`tilegen sample`, torch): albedo and
    height stacked as (4, 256, 256) float32 in [0, 1]."""
    from tilegen.imageio import read_image

    folder = OUT / f"pebbles_s{seed}"
    if not (folder / "height.png").is_file():
        cmd = (f"tilegen sample {ASSETS / 'pebbles_material.pt'} -o {folder} --size 256 256 "
               f"--seed {seed} > /dev/null")  # fmt: skip
        os.system(cmd)
    albedo, height = read_image(folder / "albedo.png"), read_image(folder / "height.png")
    return np.concatenate([albedo[..., :3], height[..., :1]], axis=2).transpose(2, 0, 1)


def height_mix() -> dict:
    """Two seeds of the pebbles material across a horizontal ramp: albedo contrast in the middle
    half over the materials' own, and the share of pixels where one shows alone."""
    from tilegen import mixing

    a, b = material_sample(1).astype(np.float32), material_sample(2).astype(np.float32)
    ramp = np.broadcast_to(np.linspace(0, 1, 256, dtype=np.float32)[None, :], (256, 256))
    weights = np.stack([1 - ramp, ramp]).astype(np.float32)
    height = 3
    means = [a.mean(axis=(1, 2)).tolist(), b.mean(axis=(1, 2)).tolist()]
    own = np.concatenate([local_contrast(a[:3]).ravel(), local_contrast(b[:3]).ravel()]).std()
    mid = slice(64, 192)
    out = {}
    for mode in ("height", "variance", "linear"):
        mixed = mixing.mix([a, b], weights, mode, means, height)
        out[mode] = float(local_contrast(mixed[:3])[:, mid].std() / own)
    s = [np.where(w > 0, p[height] + w, -np.inf) for p, w in zip((a, b), weights)]
    top = np.maximum(*s)
    bi = [w * np.maximum(si - top + mixing.DEPTH, 0) for si, w in zip(s, weights)]
    out["alone"] = float((np.maximum(*bi) / (bi[0] + bi[1]) > 0.9)[:, mid].mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crop", type=int, default=16, help="layout cells per side painted")
    p.add_argument("--cell", type=int, default=128)
    p.add_argument("--scale", type=int, default=1, help="layout cells per bundled layout cell")
    p.add_argument("--blend", type=float, default=32.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--cost-only", action="store_true", help="only part 1 (for whole layouts)")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    c = cost(args)
    h, w_ = c["spec"].size
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{h}x{w_} ({c['mp']:.1f} MP), {args.threads} threads")  # fmt: skip
    best = {}  # name -> (wall, CPU) of the fastest run of each
    for name, runs in c["times"].items():
        best[name] = (min(t[0] for t in runs), min(t[1] for t in runs))
        shown = [f"{a:.1f}/{b:.1f}" for a, b in runs]
        print(f"{name}: {best[name][0] / c['mp']:.2f} s/MP wall, {best[name][1] / c['mp']:.2f} "
              f"CPU s/MP; runs (wall/CPU s) {shown}")  # fmt: skip
    names = [Path(m).name for m in c["spec"].models]
    mixture = [sum(s * best[n][k] for s, n in zip(c["shares"], names)) for k in (0, 1)]
    print(f"labels' shares (largest weight): {[round(s, 3) for s in c['shares']]}; their "
          f"models' own generate at those shares: {mixture[0] / c['mp']:.2f} s/MP wall, "
          f"{mixture[1] / c['mp']:.2f} CPU s/MP")  # fmt: skip
    world, grass, copies = best["world"], best[names[0]], best["world of grass copies"]
    print(f"world / its models' own generate at their shares: wall {world[0] / mixture[0]:.2f}, "
          f"CPU {world[1] / mixture[1]:.2f}")  # fmt: skip
    print(f"world / the grass model's generate: wall {world[0] / grass[0]:.2f}, CPU "
          f"{world[1] / grass[1]:.2f}")  # fmt: skip
    print(f"world of three grass copies / the grass model's generate: wall "
          f"{copies[0] / grass[0]:.2f}, CPU {copies[1] / grass[1]:.2f}")  # fmt: skip
    print(f"pixels evaluated per output pixel, per model: "
          f"{[round(e, 3) for e in c['evaluated']]} (sum {sum(c['evaluated']):.3f})")  # fmt: skip
    if args.cost_only:
        return
    e = edges(args)
    for name in ("warped", "plain"):
        share, chance, n = e[name]
        print(
            f"edges ({name}, layout {e['layout']} at {args.cell}): {share:.3f} of {n} "
            f"transition-centre pixels within 2 px of a cell edge; chance {chance:.3f}"
        )
    m = mixes(c["spec"], args.threads)
    print(
        f"transition contrast / own contrast: variance {m['variance']:.3f}, "
        f"linear {m['linear']:.3f}"
    )
    h = height_mix()
    print(
        f"pebbles material, two seeds across a ramp, albedo contrast / own: height "
        f"{h['height']:.3f}, variance {h['variance']:.3f}, linear {h['linear']:.3f}; one "
        f"material alone at {h['alone']:.2f} of the middle half (height mix)"
    )


if __name__ == "__main__":
    main()
