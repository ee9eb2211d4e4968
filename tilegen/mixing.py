"""Mixing several models' outputs inside a world's transitions (tilegen world --mix).

    out = mix(pieces, weights, mode, means, height)     # pieces: (C, h, w) float32 per label

- "linear": sum_i w_i x_i. Halfway between two independent textures it keeps only 1/sqrt(2)
  of their contrast: the transition looks washed out (bench/RESULTS.md, "Worlds").
- "variance": Heitz & Neyret's variance-preserving blend, mean + sum_i w_i (x_i - mean_i) /
  sqrt(sum_i w_i^2) with mean = sum_i w_i mean_i: the contrast of the inputs is kept through the
  transition. The default for textures.
- "height": the engines' height-based blend for materials with a height map: the material
  whose height plus weight is highest shows (pebbles stand out of the sand before it ends),
  b_i = w_i * max(h_i + w_i - top + DEPTH, 0), out = sum_i b_i x_i / sum_i b_i. The factor w_i
  keeps it continuous where a label's weight falls to 0. The default for materials.

Where one label has weight 1 its pixels are kept unchanged (`keep_alone`), so a pixel reads the
same in a window of one label and in a window with a transition: tiles stay exact. Every
operation is elementwise float32 in a fixed label order; a label of weight 0 adds exact zeros.
"""

from __future__ import annotations

import numpy as np

MODES = ("variance", "linear", "height")
DEPTH = 0.2  # height units: how far below the top a material still shows, mixed


def mix(
    pieces: list[np.ndarray],
    weights: np.ndarray,
    mode: str,
    means: list[list[float]] | None = None,
    height: int | None = None,
) -> np.ndarray:
    """The mixed (C, h, w) float32 of per-label pieces under per-pixel weights (n, h, w)."""
    if mode == "linear":
        out = _weighted(pieces, weights)
    elif mode == "variance":
        out = _variance(pieces, weights, means)
    elif mode == "height":
        out = _height(pieces, weights, height)
    else:
        raise ValueError(f"unknown mix {mode!r}")
    return out


def keep_alone(out: np.ndarray, pieces: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """`out` with each label's own pixels wherever its weight is 1 (applied last, after any
    finishing of the mix, so that those bytes equal a one-label window's)."""
    for piece, w in zip(pieces, weights):
        np.copyto(out, piece, where=(w == 1)[None])
    return out


def _weighted(pieces: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    out = pieces[0] * weights[0][None]
    for piece, w in zip(pieces[1:], weights[1:]):
        out += piece * w[None]
    return out


def _variance(pieces, weights, means) -> np.ndarray:
    mu = [np.asarray(m, np.float32)[:, None, None] for m in means]
    norm = weights[0] * weights[0]
    for w in weights[1:]:
        norm += w * w
    scale = np.float32(1.0) / np.sqrt(norm)
    out = (pieces[0] - mu[0]) * (weights[0] * scale)[None]
    mean = mu[0] * weights[0][None]
    for piece, m, w in zip(pieces[1:], mu[1:], weights[1:]):
        out += (piece - m) * (w * scale)[None]
        mean += m * w[None]
    return out + mean


def _height(pieces, weights, channel: int) -> np.ndarray:
    scores = [np.where(w > 0, p[channel] + w, -np.inf) for p, w in zip(pieces, weights)]
    top = scores[0].copy()
    for s in scores[1:]:
        np.maximum(top, s, out=top)
    base = top - np.float32(DEPTH)
    b = [w * np.maximum(s - base, 0) for s, w in zip(scores, weights)]
    total = b[0].copy()
    for bi in b[1:]:
        total += bi
    out = _weighted(pieces, np.stack(b))
    return out / np.maximum(total, np.float32(1e-12))[None]
