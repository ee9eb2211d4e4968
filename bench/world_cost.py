"""`tilegen world`: cost against one model's generate, transitions against cell edges, mixes.

    python bench/world_cost.py                     # the bundled example, a 16x16-cell crop at 128
    python bench/world_cost.py --crop 24 --cell 128 --threads 2 --repeat 3

1. Cost. The top-left `--crop` x `--crop` cells of the layout (tilegen/assets/world/layout.png,
   three labels) painted at `--cell` pixels per cell into a store, and the bundled default model's
   `generate` of the same size, same shards, same threads, alternated `--repeat` times in this
   process (the machine may be shared: the fastest of each is compared, in wall time and in
   this process's CPU time). Also the pixels each model was evaluated on, over the output's.
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


def crop_layout(cells: int) -> Path:
    from PIL import Image

    im = Image.open(ASSETS / "world" / "layout.png")
    path = OUT / f"layout_{cells}.png"
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


def cost(args) -> dict:
    from tilegen import world as worlds
    from tilegen.tiler import GenerateConfig

    spec = worlds.plan_world(str(crop_layout(args.crop)), labels_arg(), cell=args.cell,
                             blend=args.blend)  # fmt: skip
    common = dict(size=spec.size, seed=1, threads=args.threads, device="cpu", progress=False,
                  pyramid=False, log=lambda m: None)  # fmt: skip
    single = GenerateConfig(model=str(LEGEND["#3a7d2c"]), output=str(OUT / "one.zarr"), **common)
    world = GenerateConfig(model=spec.models[0], output=str(OUT / "world.zarr"), world=spec,
                           **common)  # fmt: skip
    times = {"generate": [], "world": []}
    for _ in range(args.repeat):
        times["generate"].append(timed_store(single))
        worlds._WORLDS.clear()
        times["world"].append(timed_store(world))
    w = next(iter(worlds._WORLDS.values()))
    mp = spec.size[0] * spec.size[1] / 1e6
    evaluated = [r / (mp * 1e6) for r in w.rendered]
    return {"spec": spec, "mp": mp, "times": times, "evaluated": evaluated}


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

    labels = read_layout(ASSETS / "world" / "layout.png", parse_labels(labels_arg())).labels
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
    p.add_argument("--blend", type=float, default=32.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    c = cost(args)
    g, w = min(t[0] for t in c["times"]["generate"]), min(t[0] for t in c["times"]["world"])
    gc, wc = min(t[1] for t in c["times"]["generate"]), min(t[1] for t in c["times"]["world"])
    h, w_ = c["spec"].size
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{h}x{w_} ({c['mp']:.1f} MP), {args.threads} threads")  # fmt: skip
    for name, (wall, cpu) in (("generate (default.onnx)", (g, gc)), ("world (3 labels)", (w, wc))):
        runs = [f"{a:.1f}/{b:.1f}" for a, b in c["times"][name.split()[0]]]
        print(
            f"{name}: {wall / c['mp']:.2f} s/MP wall, {cpu / c['mp']:.2f} CPU s/MP; runs "
            f"(wall/CPU s) {runs}"
        )
    print(f"CPU-time ratio world/generate: {wc / gc:.2f}")
    print(
        f"ratio world/generate: {w / g:.2f}; pixels evaluated per output pixel, per model: "
        f"{[round(e, 3) for e in c['evaluated']]} (sum {sum(c['evaluated']):.3f})"
    )
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
