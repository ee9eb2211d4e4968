"""The README's world pictures from the README's world command's output.

    tilegen world tilegen/assets/world/layout.png --label ... --cell 32 -o world.png --seed 1
    python bench/world_picture.py world.png

Writes docs/images/world_example.jpg (the layout, upscaled without smoothing, beside the world,
both 768 pixels wide) and docs/images/world_transition.png (a 384x384 crop at full resolution
where the most labels meet: the transitions' texture as painted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ROOT / "tilegen" / "assets" / "world" / "layout.png"
IMAGES = ROOT / "docs" / "images"


def busiest_crop(labels: np.ndarray, cell: int, side: int) -> tuple[int, int]:
    """Top-left pixel of the side x side crop whose layout cells hold the most labels (then the
    most boundaries), on a grid of half crops."""
    k = side // cell
    best, where = (-1, -1), (0, 0)
    for y in range(0, labels.shape[0] - k + 1, max(1, k // 2)):
        for x in range(0, labels.shape[1] - k + 1, max(1, k // 2)):
            block = labels[y : y + k, x : x + k]
            edges = int((block[1:] != block[:-1]).sum() + (block[:, 1:] != block[:, :-1]).sum())
            score = (len(np.unique(block)), edges)
            if score > best:
                best, where = score, (y * cell, x * cell)
    return where


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("world", type=Path, help="the README command's world.png")
    p.add_argument("--crop", type=int, default=384)
    args = p.parse_args()
    world = Image.open(args.world).convert("RGB")
    layout = Image.open(LAYOUT)
    cell = world.width // layout.width
    half = 768
    left = layout.convert("RGB").resize((half, half), Image.NEAREST)
    right = world.resize((half, half), Image.LANCZOS)
    pair = Image.new("RGB", (2 * half + 8, half), "white")
    pair.paste(left, (0, 0))
    pair.paste(right, (half + 8, 0))
    pair.save(IMAGES / "world_example.jpg", quality=85, optimize=True)
    y, x = busiest_crop(np.asarray(layout), cell, args.crop)
    world.crop((x, y, x + args.crop, y + args.crop)).save(IMAGES / "world_transition.png")
    print(f"wrote world_example.jpg and world_transition.png (crop at y={y}, x={x})")


if __name__ == "__main__":
    main()
