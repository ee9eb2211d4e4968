"""The scale every figure is read against: degraded copies of the exemplar (a sigma=1 blur, a
x0.7 contrast) and real pieces of it the size of an image (docs/EVALUATE.md)."""

from __future__ import annotations

import numpy as np

from tilegen.errors import UserError
from tilegen.imageio import as_saved
from tilegen.metrics import as_hwc


def gaussian_blur(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Separable Gaussian blur per channel: 2*ceil(4 sigma)+1 taps, normalised, reflect padding."""
    img = as_hwc(img)
    r = int(np.ceil(4 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    h, w = img.shape[:2]
    mode = "reflect" if min(h, w) > r else "symmetric" if min(h, w) >= r else "edge"
    p = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode=mode)
    rows = sum(k[i] * p[i : i + h] for i in range(2 * r + 1))
    out = sum(k[i] * rows[:, i : i + w] for i in range(2 * r + 1))
    return out.astype(np.float32)


def reduce_contrast(img: np.ndarray, factor: float = 0.7) -> np.ndarray:
    """mean + factor * (x - mean), per channel (the mean over the image)."""
    img = as_hwc(img)
    mean = img.mean(axis=(0, 1), keepdims=True, dtype=np.float64)
    return (mean + factor * (img - mean)).astype(np.float32)


def baseline_images(exemplar: np.ndarray, bits: int | None = 8) -> dict[str, np.ndarray]:
    """Two degraded copies of the exemplar: a sigma = 1 blur and a x0.7 contrast.

    Rounded to `bits` (8 or 16; 8: as `tilegen synth` writes by default; None: left in float), as
    the images they are read against come from image files: in float the blur's finest
    frequencies fall far below the 8-bit rounding floor, which would inflate its spectrum figure.
    """
    out = {
        "blur_sigma1": gaussian_blur(exemplar, 1.0),
        "contrast_0.7": reduce_contrast(exemplar, 0.7),
    }
    if bits is not None:
        out = {k: as_saved(v, bits) for k, v in out.items()}
    return out


def real_pieces(
    exemplar: np.ndarray, height: int, width: int, count: int = 8, seed: int | list[int] = 0
) -> list[np.ndarray]:
    """`count` real height x width pieces of the exemplar, cut at random places (from `seed`, an
    int or a list of ints: numpy's seed sequence).

    What the material itself scores at an output's size: a piece holds a quarter (or less) of
    the exemplar's coarse patches, so on an exemplar whose large structures vary from place to
    place a real piece scores far above an image optimised against the whole (synth), and the
    pieces differ from each other by 2.5-5.5x (bench/RESULTS.md, "Generator yardstick").
    """
    exemplar = as_hwc(exemplar, "the exemplar")
    h, w = exemplar.shape[:2]
    if height > h or width > w:
        raise UserError(
            f"a {height}x{width} piece does not fit in the {h}x{w} exemplar: real pieces are cut "
            "from it, so score them at a size no larger than the exemplar"
        )
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, h - height + 1, count)
    lefts = rng.integers(0, w - width + 1, count)
    return [exemplar[t : t + height, s : s + width] for t, s in zip(tops, lefts)]
