"""Write the bundled example layout, tilegen/assets/world/layout.png (64x64, 3 colours).

Grass (#3a7d2c) everywhere, dirt (#8a6a45) in winding patches and a path, bark (#5b4636) in a
few woods: two smooth random fields thresholded, so that the regions have the shapes of a real
land-cover map and their edges follow the layout's pixel grid (what `tilegen world` must hide).

    python examples/world_layout.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"grass": (0x3A, 0x7D, 0x2C), "dirt": (0x8A, 0x6A, 0x45), "bark": (0x5B, 0x46, 0x36)}


def smooth_field(rng: np.random.Generator, size: int, passes: int) -> np.ndarray:
    """White noise box-blurred `passes` times (periodic), normalised to zero mean, unit std."""
    f = rng.standard_normal((size, size))
    for _ in range(passes):
        f = sum(np.roll(f, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    return (f - f.mean()) / f.std()


def layout(size: int = 64, seed: int = 4) -> np.ndarray:
    """(size, size) labels: 0 grass, 1 dirt, 2 bark."""
    rng = np.random.default_rng(seed)
    dirt, woods = smooth_field(rng, size, 6), smooth_field(rng, size, 8)
    labels = np.zeros((size, size), np.uint8)
    labels[dirt > 0.9] = 1
    y = np.arange(size)[:, None]
    x = np.arange(size)[None, :]
    path = np.abs(y - (size * 0.55 + size * 0.18 * np.sin(x / size * 2 * np.pi))) < 1.5
    labels[path] = 1
    labels[woods > 0.8] = 2
    return labels


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "tilegen" / "assets" / "world" / "layout.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(layout(), "P")
    im.putpalette([c for rgb in COLOURS.values() for c in rgb])
    im.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
