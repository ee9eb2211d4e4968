"""How close an image is to an exemplar's texture: `tilegen evaluate` (docs/EVALUATE.md).

Torch-free: numpy and POT (`ot`, imported only when a patch distance is computed). Three figures,
each comparing distributions, never pixels at the same place, so images of any size compare:

1. Debiased multiscale patch-OT distance (docs/DESIGN.md section 6). Per pyramid level l and seed s,
   with A1, A2 two independent draws of n random p x p patches of the exemplar's level l and
   B1, B2 two of the image's, and W2^2 the exact squared 2-Wasserstein distance between the
   uniform empirical measures (POT `ot.emd2`, squared Euclidean cost) divided by the patch
   dimension D = C p^2 (so it reads as a mean squared error per pixel and channel):

       d(l, s) = W2^2(A1, B1) - (W2^2(A1, A2) + W2^2(B1, B2)) / 2

   `debiased` = mean over l and s of d(l, s); `plain` = mean of W2^2(A1, B1). The plain figure
   is dominated by the sampling error of two finite samples in D = 48 dimensions, which a
   low-variance (blurred, low-contrast) copy of the exemplar shrinks: the subtraction removes it.
   Same texture: E[d] = 0 exactly (all four draws come from one distribution).
2. Colour W1: mean over channels of the 1-D Wasserstein-1 distance between the two images'
   pixel-value distributions (exact: the area between the two empirical CDFs).
3. Spectrum: RMS difference, in decades (log10), of the radially averaged log power spectra of
   the luminance, over common frequency rings in cycles/pixel.

All inputs are float (H, W, C) arrays in [0, 1] (2-D arrays count as C = 1).

Materials (tilegen/material.py): every map is scored alone against the exemplar's map (its own
channels, its own sigma=1 blur baseline), and the cross-map consistency (normals against the
height map's slopes, grey maps against each other) is compared with the exemplar's own
(`MaterialEvaluator`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tilegen import memory, options
from tilegen.errors import Interrupted, UserError

# 4-tap Gaussian, sigma 1, taps at -1.5 -0.5 0.5 1.5, normalised: train/patch_ot.py's kernel.
_GAUSS4 = np.exp(-0.5 * (np.arange(4, dtype=np.float64) - 1.5) ** 2)
_GAUSS4 = (_GAUSS4 / _GAUSS4.sum()).astype(np.float32)

# Rec. 709 luma weights for the spectrum of RGB(A) images.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)

# Draw tags: A1, A2 come from the exemplar, B1, B2 from the image; every (seed, repeat, level,
# tag) has its own random stream, so all four draws are independent and results are exact
# functions of the inputs and `seed`.
_A1, _A2, _B1, _B2 = range(4)


def _ot():
    try:
        import ot
    except ImportError:
        raise UserError("POT is not installed: pip install pot")
    return ot


def _as_hwc(img: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] < 1:  # C > 4: a material's stacked maps
        raise UserError(f"{what} has shape {img.shape}: expected (H, W, C) with C >= 1")
    if min(img.shape[:2]) < 1:
        raise UserError(f"{what} is empty: shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def _check_channels(exemplar: np.ndarray, image: np.ndarray, name: str = "the image") -> None:
    if exemplar.shape[2] != image.shape[2]:
        raise UserError(
            f"the exemplar has {exemplar.shape[2]} channels but {name} has {image.shape[2]}: "
            "compare images of the same kind (grayscale, RGB, RGBA)"
        )


# --- pyramid and patches ----------------------------------------------------------------------


def _downsample(img: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H//2, W//2, C): reflect-pad 1, separable 4x4 Gaussian, stride 2.

    Output row i = sum_k g[k] * padded[2i + k], the same as train.patch_ot.downsample with
    periodic=False (torch's "reflect" padding is numpy's "reflect": the edge is not repeated).
    """
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    ho, wo = img.shape[0] // 2, img.shape[1] // 2
    rows = sum(_GAUSS4[k] * p[k : k + 2 * ho : 2] for k in range(4))
    out = sum(_GAUSS4[k] * rows[:, k : k + 2 * wo : 2] for k in range(4))
    return np.ascontiguousarray(out, dtype=np.float32)


def gaussian_pyramid_np(img: np.ndarray, scales: int) -> list[np.ndarray]:
    """[img, img/2, img/4, ...] (finest first, `scales` levels) of a float (H, W, C) image.

    The pyramid of train.patch_ot.gaussian_pyramid(periodic=False), in numpy. Each level needs
    a side of at least 2 to make the next (reflect padding of 1 pixel).
    """
    levels = [_as_hwc(img)]
    for _ in range(scales - 1):
        if min(levels[-1].shape[:2]) < 2:
            raise UserError(
                f"image of {img.shape[0]}x{img.shape[1]} is too small for {scales} scales"
            )
        levels.append(_downsample(levels[-1]))
    return levels


def random_patches(img: np.ndarray, patch: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random p x p patches of (H, W, C) as rows (n, C*p*p), channel-major like torch unfold.

    Top-left corners are drawn uniformly, with replacement, from the (H-p+1)(W-p+1) stride-1
    positions (no wrap-around): n i.i.d. samples of the image's patch distribution.
    """
    img = _as_hwc(img)
    h, w, c = img.shape
    if h < patch or w < patch:
        raise UserError(f"image of {h}x{w} is smaller than the {patch}x{patch} patch")
    ys = rng.integers(0, h - patch + 1, n)
    xs = rng.integers(0, w - patch + 1, n)
    windows = np.lib.stride_tricks.sliding_window_view(img, (patch, patch), axis=(0, 1))
    return windows[ys, xs].reshape(n, c * patch * patch)  # (n, C, p, p) -> rows


def usable_levels(shapes: list[tuple[int, ...]], scales: int, patch: int) -> int:
    """How many of the first `scales` pyramid levels hold a full patch in every given image."""
    levels = 0
    for level in range(scales):
        if all(min(s[0] >> level, s[1] >> level) >= patch for s in shapes):
            levels = level + 1
        else:
            break
    return levels


# --- exact W2^2 ---------------------------------------------------------------------------------


def w2_squared(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W2^2 between the uniform empirical measures on the rows of a and b, divided by D.

    Network simplex (POT `ot.emd2`) on the squared Euclidean cost, in float64.
    """
    ot = _ot()
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    np.maximum(cost, 0.0, out=cost)
    wa = np.full(a.shape[0], 1.0 / a.shape[0])
    wb = np.full(b.shape[0], 1.0 / b.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, log = ot.emd2(wa, wb, cost, numItermax=10**8, log=True)
    if log.get("warning"):
        raise UserError(f"exact OT did not converge: {log['warning']}")
    return float(value) / a.shape[1]


PARALLEL = {"max": 8}  # exact-OT problems at once; EvaluateJob lowers it to what memory holds


def _pmap(fn, jobs: list) -> list:
    """Run fn over jobs on a few threads (POT releases the GIL); results are order-exact.
    Ctrl-C returns at once: running problems are abandoned, queued ones never start."""
    workers = min(len(jobs), os.cpu_count() or 1, PARALLEL["max"])
    if workers <= 1:
        return [fn(j) for j in jobs]
    ex = ThreadPoolExecutor(workers)
    try:
        return list(ex.map(fn, jobs))
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        ex.shutdown(wait=False)


def _rng(seed: int, rep: int, level: int, tag: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, rep, level, tag]))


class PatchOTScorer:
    """The debiased patch-OT distance of many images to one exemplar.

    The exemplar's pyramid and its own W2^2(A1, A2) terms are computed once and reused for every
    image scored (they do not depend on the image).
    """

    def __init__(
        self,
        exemplar: np.ndarray,
        scales: int = 4,
        patch: int = 4,
        n: int = 2000,
        seeds: int = 3,
        seed: int = 0,
    ):
        if scales < 1 or patch < 1 or n < 1 or seeds < 1:
            raise UserError("scales, patch, patches (n) and seeds must all be positive")
        self.exemplar = _as_hwc(exemplar, "the exemplar")
        self.scales, self.patch, self.n, self.seeds, self.seed = scales, patch, n, seeds, seed
        self.max_levels = usable_levels([self.exemplar.shape], scales, patch)
        if self.max_levels == 0:
            h, w = self.exemplar.shape[:2]
            raise UserError(f"the exemplar ({h}x{w}) is smaller than the {patch}x{patch} patch")
        self.pyramid = gaussian_pyramid_np(self.exemplar, self.max_levels)
        self._self_terms: dict[tuple[int, int], float] = {}
        self._a1: dict[tuple[int, int], np.ndarray] = {}

    def _draw_a(self, level: int, rep: int, tag: int) -> np.ndarray:
        return random_patches(
            self.pyramid[level], self.patch, self.n, _rng(self.seed, rep, level, tag)
        )

    def score(self, image: np.ndarray, name: str = "the image") -> dict:
        """{"debiased", "plain", "per_level", "per_level_plain", "levels", "notes"}."""
        image = _as_hwc(image, name)
        _check_channels(self.exemplar, image, name)
        levels = usable_levels([self.exemplar.shape, image.shape], self.scales, self.patch)
        if levels == 0:
            h, w = image.shape[:2]
            raise UserError(f"{name} ({h}x{w}) is smaller than the {self.patch}x{self.patch} patch")
        notes = []
        if levels < self.scales:
            p, s = self.patch, self.scales
            if levels == self.max_levels:
                h, w = self.exemplar.shape[:2]
                notes.append(
                    f"the exemplar ({h}x{w}) holds {p}x{p} patches on only {levels} of {s} "
                    f"pyramid levels: the patch figures use {levels}"
                )
            else:
                h, w = image.shape[:2]
                notes.append(
                    f"{name} ({h}x{w}) holds {p}x{p} patches on only {levels} of {s} pyramid "
                    f"levels: its patch figures use {levels}"
                )
        pyr = gaussian_pyramid_np(image, levels)
        keys = [(lv, rep) for lv in range(levels) for rep in range(self.seeds)]

        # Independent OT problems: W2(A1,B1), W2(B1,B2) per key, W2(A1,A2) once per exemplar.
        jobs = []
        for lv, rep in keys:
            a1 = self._a1.get((lv, rep))
            if a1 is None:
                a1 = self._a1[(lv, rep)] = self._draw_a(lv, rep, _A1)
            b1 = random_patches(pyr[lv], self.patch, self.n, _rng(self.seed, rep, lv, _B1))
            b2 = random_patches(pyr[lv], self.patch, self.n, _rng(self.seed, rep, lv, _B2))
            jobs += [("ab", lv, rep, a1, b1), ("bb", lv, rep, b1, b2)]
            if (lv, rep) not in self._self_terms:
                jobs.append(("aa", lv, rep, a1, self._draw_a(lv, rep, _A2)))
        values = _pmap(lambda j: w2_squared(j[3], j[4]), jobs)
        got = {}
        for (kind, lv, rep, _, _), v in zip(jobs, values):
            if kind == "aa":
                self._self_terms[(lv, rep)] = v
            else:
                got[(kind, lv, rep)] = v

        per_level, per_level_plain = [], []
        for lv in range(levels):
            ab = [got[("ab", lv, r)] for r in range(self.seeds)]
            bb = [got[("bb", lv, r)] for r in range(self.seeds)]
            aa = [self._self_terms[(lv, r)] for r in range(self.seeds)]
            d = [x - 0.5 * (y + z) for x, y, z in zip(ab, aa, bb)]
            per_level.append(float(np.mean(d)))
            per_level_plain.append(float(np.mean(ab)))
        return {
            "debiased": float(np.mean(per_level)),
            "plain": float(np.mean(per_level_plain)),
            "per_level": per_level,
            "per_level_plain": per_level_plain,
            "levels": levels,
            "notes": notes,
        }


def patch_ot_distance(
    exemplar: np.ndarray,
    image: np.ndarray,
    scales: int = 4,
    patch: int = 4,
    n: int = 2000,
    seeds: int = 3,
    seed: int = 0,
) -> dict:
    """Debiased (and plain) multiscale patch-OT distance; see the module docstring.

    Returns {"debiased", "plain", "per_level" (debiased, finest first), "per_level_plain",
    "levels" (pyramid levels used: fewer than `scales` when an image is too small, with a note
    in "notes")}. Values are W2^2 / (C p^2): mean squared error per pixel and channel.
    """
    return PatchOTScorer(exemplar, scales, patch, n, seeds, seed).score(image)


# --- colour and spectrum ------------------------------------------------------------------------


def _w1_1d(u: np.ndarray, v: np.ndarray) -> float:
    """Exact W1 between two 1-D empirical distributions: integral of |F_u - F_v|."""
    u, v = np.sort(u.ravel()), np.sort(v.ravel())
    allv = np.concatenate([u, v])
    allv.sort()
    deltas = np.diff(allv)
    cu = np.searchsorted(u, allv[:-1], side="right") / u.size
    cv = np.searchsorted(v, allv[:-1], side="right") / v.size
    return float(np.sum(np.abs(cu - cv) * deltas))


def color_w1(exemplar: np.ndarray, image: np.ndarray) -> float:
    """Mean over channels of W1 between the per-channel pixel-value distributions.

    W1(F, G) = integral |F(x) - G(x)| dx = integral_0^1 |F^-1(t) - G^-1(t)| dt, exact for the
    empirical distributions (images may differ in size). In intensity units ([0, 1] scale).
    """
    exemplar, image = _as_hwc(exemplar, "the exemplar"), _as_hwc(image)
    _check_channels(exemplar, image)
    c = exemplar.shape[2]
    vals = [
        _w1_1d(exemplar[:, :, k].astype(np.float64), image[:, :, k].astype(np.float64))
        for k in range(c)
    ]
    return float(np.mean(vals))


def _luminance(img: np.ndarray) -> np.ndarray:
    """Rec. 709 luma for RGB(A) (alpha ignored); the first channel for gray(+alpha)."""
    img = img.astype(np.float64)
    if img.shape[2] >= 3:
        return img[:, :, :3] @ _LUMA
    return img[:, :, 0]


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window 0.5 - 0.5 cos(2 pi k / n)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n) if n > 1 else np.ones(1)


def radial_log_spectrum(img: np.ndarray, n_bins: int) -> np.ndarray:
    """Mean of log10 power over `n_bins` equal-width rings of radial frequency in (0, 0.5].

    Luminance, mean removed, periodic-Hann-windowed; power |FFT|^2 / sum(window^2) (a
    periodogram: an estimate of the power spectral density per pixel, independent of the image
    size); frequencies in cycles/pixel. Empty rings are NaN.
    """
    y = _luminance(_as_hwc(img))
    h, w = y.shape
    win = _hann(h)[:, None] * _hann(w)[None, :]
    y = (y - y.mean()) * win
    power = np.abs(np.fft.fft2(y)) ** 2 / np.sum(win * win)
    fr = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    ring = np.ceil(fr * (2 * n_bins) - 1e-9).astype(np.int64) - 1  # (k/2n, (k+1)/2n] -> k
    keep = (fr > 0) & (ring < n_bins)
    logp = np.log10(power[keep] + 1e-12)
    sums = np.bincount(ring[keep], weights=logp, minlength=n_bins)
    counts = np.bincount(ring[keep], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def spectrum_distance(exemplar: np.ndarray, image: np.ndarray) -> float:
    """RMS difference (in decades, log10) of the radially averaged log power spectra.

    The rings are 2/m cycles/pixel wide, m the smallest side of either image, so every ring
    holds samples of both; the RMS runs over the rings where both have samples.
    """
    exemplar, image = _as_hwc(exemplar, "the exemplar"), _as_hwc(image)
    _check_channels(exemplar, image)
    m = min(*exemplar.shape[:2], *image.shape[:2])
    if m < 4:
        raise UserError(f"images of {m} pixels across are too small for a spectrum")
    n_bins = m // 4
    a = radial_log_spectrum(exemplar, n_bins)
    b = radial_log_spectrum(image, n_bins)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


# --- degraded copies: the scale every figure is read against -----------------------------------


def gaussian_blur(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Separable Gaussian blur per channel: 2*ceil(4 sigma)+1 taps, normalised, reflect padding."""
    img = _as_hwc(img)
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
    img = _as_hwc(img)
    mean = img.mean(axis=(0, 1), keepdims=True, dtype=np.float64)
    return (mean + factor * (img - mean)).astype(np.float32)


def baseline_images(exemplar: np.ndarray, bits: int | None = 8) -> dict[str, np.ndarray]:
    """Two degraded copies of the exemplar: a sigma = 1 blur and a x0.7 contrast.

    Rounded to `bits` (8: as `tilegen synth` writes by default; None: left in float), because
    the images they are read against come from image files: in float the blur's finest
    frequencies fall far below the 8-bit rounding floor, which would inflate its spectrum figure.
    """
    out = {
        "blur_sigma1": gaussian_blur(exemplar, 1.0),
        "contrast_0.7": reduce_contrast(exemplar, 0.7),
    }
    if bits is not None:
        top = 2**bits - 1
        out = {
            k: (np.rint(np.clip(v, 0.0, 1.0) * top) / top).astype(np.float32)
            for k, v in out.items()
        }
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
    exemplar = _as_hwc(exemplar, "the exemplar")
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


# --- everything ---------------------------------------------------------------------------------


class Evaluator:
    """All figures for many images against one exemplar (the exemplar's terms are shared).

    structure=True adds the structure figure (`structure_scorer`: Portilla-Simoncelli
    statistics against real pieces of the exemplar the image's size; 1.0 is a typical real
    piece). It needs torch and plenoptic; without them, or for an image too small for it, the
    figure is left out with a note.
    """

    def __init__(
        self, exemplar: np.ndarray, scales=4, patch=4, n=2000, seeds=3, seed=0, structure=False
    ):
        self.exemplar = _as_hwc(exemplar, "the exemplar")
        self.patch_ot = PatchOTScorer(self.exemplar, scales, patch, n, seeds, seed)
        self.structure, self.seed = structure, seed
        self._structure: dict[tuple[int, int], object] = {}  # one scorer per image size

    def __call__(self, image: np.ndarray, name: str = "the image") -> dict:
        image = _as_hwc(image, name)
        _check_channels(self.exemplar, image, name)
        out = self.patch_ot.score(image, name)
        notes = out.pop("notes")
        out["color_w1"] = color_w1(self.exemplar, image)
        out["spectrum"] = spectrum_distance(self.exemplar, image)
        if self.structure:
            scorer = self.structure_scorer(*image.shape[:2])
            if isinstance(scorer, str):
                notes.append(scorer)
            else:
                out["structure"] = scorer(image)
        out["notes"] = notes
        return out

    def structure_scorer(self, height: int, width: int):
        """The structure scorer for images of this size (cached), or a note saying why there
        is none (torch or plenoptic missing, an image too small or larger than the exemplar)."""
        key = (height, width)
        if key not in self._structure:
            self._structure[key] = structure_scorer(self.exemplar, height, width, self.seed)
        return self._structure[key]


def structure_scorer(exemplar: np.ndarray, height: int, width: int, seed: int = 0):
    """train.structure.StructureScorer for height x width images, or a one-line note
    when it cannot be had: the statistic needs torch (this module does not import it)."""
    try:
        from train.structure import StructureScorer
    except ImportError:
        return "no structure figure: it needs torch and plenoptic (pip install 'tilegen[train]')"
    try:
        return StructureScorer(exemplar, height, width, seed=seed)
    except UserError as e:
        return f"no structure figure for {height}x{width} images: {e}"


class MaterialEvaluator:
    """A material's figures: every map alone (an Evaluator per map) and the cross-map
    consistency compared with the exemplar's (tilegen.material.compare_consistency)."""

    def __init__(self, exemplar: np.ndarray, layout: dict, **kw):
        from tilegen.material import consistency, spans, unstack

        self.layout, self.spans = layout, spans(layout)
        self.maps = unstack(_as_hwc(exemplar, "the exemplar"), self.spans)
        self.per_map = {role: Evaluator(m, **kw) for role, m in self.maps.items()}
        self.exemplar_consistency = consistency(self.maps)

    def __call__(self, image: np.ndarray, name: str = "the image") -> dict:
        """{"maps": {role: Evaluator's figures}, "consistency": {figure: {exemplar, image,
        ratio}}}."""
        from tilegen.material import compare_consistency, consistency, unstack

        image = _as_hwc(image, name)
        if image.shape[2] != self.spans[-1][2]:
            raise UserError(
                f"{name} has {image.shape[2]} channels, the material {self.spans[-1][2]} "
                f"({', '.join(r for r, _, _ in self.spans)}): compare a material with a material"
            )
        maps = unstack(image, self.spans)
        scored = {r: self.per_map[r](m, f"{name} [{r}]") for r, m in maps.items()}
        mine = consistency(maps)
        return {"maps": scored, "consistency": compare_consistency(self.exemplar_consistency, mine)}

    def baselines(self, bits: int | None = 8) -> dict[str, np.ndarray]:
        """The sigma=1 blur and x0.7-contrast copies of the stacked exemplar (each map's own)."""
        stacked = np.concatenate([self.maps[r] for r, _, _ in self.spans], axis=2)
        return baseline_images(stacked, bits)


def evaluate(
    exemplar: np.ndarray,
    image: np.ndarray,
    scales: int = 4,
    patch: int = 4,
    n: int = 2000,
    seeds: int = 3,
    seed: int = 0,
) -> dict:
    """{"debiased", "plain", "per_level", "per_level_plain", "levels", "color_w1", "spectrum",
    "notes"}: every figure of `image` against `exemplar` (docs/EVALUATE.md)."""
    return Evaluator(exemplar, scales, patch, n, seeds, seed)(image)


# --- the CLI's table ----------------------------------------------------------------------------

COLUMNS = ("patch-OT debiased", "plain W2^2", "colour W1", "spectrum", "structure")


_WIDTHS = tuple(max(len(c), 9) for c in COLUMNS)


def table_header(name_width: int, structure: bool = False) -> str:
    cols = COLUMNS if structure else COLUMNS[:-1]
    return f"{'image':<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, _WIDTHS))


def table_row(name: str, result: dict, name_width: int, structure: bool = False) -> str:
    cells = [
        f"{result['debiased']:.3e}",
        f"{result['plain']:.3e}",
        f"{result['color_w1']:.4f}",
        f"{result['spectrum']:.3f}",
    ]
    if structure:
        cells.append(f"{result['structure']:.2f}" if "structure" in result else "-")
    return f"{name:<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, _WIDTHS))


# --- the command ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class EvaluateJob:
    """`tilegen evaluate`: its defaults, its checks (naming the option) and the run."""

    exemplar: Path
    images: list[Path] = field(default_factory=list)
    json_out: bool = False
    baselines: bool = False
    pieces: int = 0  # real pieces of the exemplar, the first image's size (their median)
    seeds: int = 3
    patches: int = 2000
    scales: int = 4
    seed: int = 0
    max_memory: float | None = None
    normal: str | None = None  # a material's normal convention (default: from file names, gl)

    def check(self) -> None:
        if self.normal is not None:
            options.choice("--normal", self.normal, ("gl", "dx"))
        if not self.images and not self.baselines:
            raise UserError("give at least one IMAGE to score, or --baselines")
        options.positive("--pieces", self.pieces, allow_zero=True)
        if self.pieces and not self.images:
            raise UserError("--pieces cuts pieces the size of the first IMAGE: give one")
        for option in ("seeds", "patches", "scales"):
            options.positive(f"--{option}", getattr(self, option))
        options.seed(self.seed)
        memory.set_limit(self.max_memory)
        per_job = memory.evaluate_bytes(self.patches, 1)
        memory.require(per_job, f"exact OT on --patches {self.patches}", "use fewer --patches")
        PARALLEL["max"] = max(1, min(8, (memory.available() - memory.BASE) // per_job))

    def settings(self) -> dict:
        """The scoring settings, as the JSON output records them."""
        return {"scales": self.scales, "patch": 4, "patches": self.patches,
                "seeds": self.seeds, "seed": self.seed}  # fmt: skip

    def run(self, echo: Callable[[str], None]) -> None:
        """Score every image (all read before the work), echoing the table row by row."""
        from tilegen.imageio import read_image
        from tilegen.material import read_exemplar

        self.check()
        ex, layout = read_exemplar(self.exemplar, None, self.normal)
        if layout is not None:
            return _material_run(self, ex, layout, echo)
        rows = [(str(p), "image", read_image(p)) for p in self.images]
        if self.baselines:
            rows += baseline_rows(ex, baseline_images(ex))
        rows += piece_rows(ex, rows, self.pieces, self.seed)
        structure = bool(self.pieces)  # beside the pieces: both read against real pieces
        score = Evaluator(
            ex, self.scales, 4, self.patches, self.seeds, self.seed, structure=structure
        )
        width = max(len("image"), *(len(r[0]) for r in rows))
        table = not self.json_out
        if table:
            h, w, c = ex.shape
            n = self.scales
            echo(f"exemplar {self.exemplar} ({h}x{w}, {c} channels); {n} scales of 4x4 patches,")
            echo(f"{self.patches} patches x {self.seeds} draws, seed {self.seed}")
            if structure:
                echo(STRUCTURE_LINE)
            echo(table_header(width, structure))
        results, notes = [], []
        for i, (name, kind, _), r in median_of_pieces(scored_rows(rows, score)):
            notes += r["notes"]
            results.append({"name": name, "kind": kind, **r})
            if table:
                if kind != "image" and i > 0 and rows[i - 1][1] == "image":
                    echo("-" * len(table_header(width, structure)))
                echo(table_row(name, r, width, structure))
        if table:
            for note in dict.fromkeys(notes):
                echo(f"note: {note}")
            return
        doc = {"exemplar": str(self.exemplar), "settings": self.settings(), "results": results}
        echo(json.dumps(doc, indent=2))


STRUCTURE_LINE = (
    "structure: Portilla-Simoncelli statistics (luminance, up to 5 scales, 4 orientations), "
    "z-scored against 24 real pieces the image's size; 1.0 = a typical real piece"
)

_BASELINE_NAMES = {"blur_sigma1": "blur sigma=1", "contrast_0.7": "contrast x0.7"}


def baseline_rows(exemplar: np.ndarray, baselines: dict[str, np.ndarray]) -> list[tuple]:
    """The --baselines rows: the exemplar itself, then each degraded copy."""
    rows = [("exemplar (self)", "self", exemplar)]
    return rows + [(_BASELINE_NAMES[k], "baseline", v) for k, v in baselines.items()]


def piece_rows(exemplar: np.ndarray, rows: list[tuple], count: int, seed: int) -> list[tuple]:
    """The --pieces rows: `count` real pieces of the exemplar the size of the first image
    (`real_pieces`), each named after the one row they become (median_of_pieces)."""
    if not count:
        return []
    h, w = rows[0][2].shape[:2]
    name = f"real pieces {h}x{w} (median of {count})"
    return [(name, "piece", p) for p in real_pieces(exemplar, h, w, count, seed)]


def _median(results: list):
    """The element-wise median of equally shaped results (dicts of figures, lists per level);
    what is not a number (notes, level counts) is the first result's."""
    first = results[0]
    if isinstance(first, dict):
        return {k: _median([r[k] for r in results]) for k in first}
    if isinstance(first, list) and first and isinstance(first[0], float):
        return [float(np.median(v)) for v in zip(*results)]
    if isinstance(first, float):
        return float(np.median(results))
    return first


def median_of_pieces(scored: Iterator[tuple[int, tuple, dict]]) -> Iterator[tuple]:
    """scored_rows with the "piece" rows replaced by one row of their median figures, which
    keeps every piece's debiased figure ("pieces": numbers, or {map: number} for materials)."""
    pieces, at = [], 0
    for i, row, r in scored:
        if row[1] != "piece":
            yield i, row, r
            continue
        at = at or i
        pieces.append((row, r))
    if pieces:
        results = [r for _, r in pieces]
        every = [
            {k: m["debiased"] for k, m in r["maps"].items()} if "maps" in r else r["debiased"]
            for r in results
        ]
        yield at, (pieces[0][0][0], "pieces", None), {**_median(results), "pieces": every}


def scored_rows(rows: list[tuple], score: Callable) -> Iterator[tuple[int, tuple, dict]]:
    """(i, row, score(row's image)) for each (name, kind, image) row; Ctrl-C says how far it
    got (nothing is saved, so the fix is to rerun)."""
    for i, row in enumerate(rows):
        try:
            result = score(row[2], row[0])
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted while scoring {row[0]}: {i} of {len(rows)} rows were scored "
                "(nothing is saved); rerun the same command"
            )
        yield i, row, result


def read_material_image(path: Path, layout: dict, normal: str | None) -> np.ndarray:
    """An image to score against a material: a folder of the same maps (tilegen's -o DIR),
    stacked; its normals in `normal`, else as its file name says, else the exemplar's."""
    from tilegen.material import layout_of, read_material

    if not Path(path).is_dir():
        raise UserError(
            f"{path}: the exemplar is a material, so give folders of its maps (as synth -o DIR "
            "writes them), not an image"
        )
    m = read_material(path, normal, default=layout.get("normal", "gl"))
    want, got = [x["role"] for x in layout["maps"]], [x["role"] for x in layout_of(m)["maps"]]
    if want != got:
        raise UserError(f"{path} holds the maps {got}, the exemplar {want}: give the same maps")
    return m.stack()


def _material_run(job: EvaluateJob, ex: np.ndarray, layout: dict, echo) -> None:
    """`tilegen evaluate` on a material: a row per map of every image (each map scored alone
    against the exemplar's), then the consistency figures beside the exemplar's own."""
    rows = [(str(p), "image", read_material_image(p, layout, job.normal)) for p in job.images]
    structure = bool(job.pieces)
    score = MaterialEvaluator(
        ex, layout, scales=job.scales, n=job.patches, seeds=job.seeds, seed=job.seed,
        structure=structure,
    )  # fmt: skip
    if job.baselines:
        rows += baseline_rows(ex, score.baselines())
    rows += piece_rows(ex, rows, job.pieces, job.seed)
    roles = [m["role"] for m in layout["maps"]]
    width = max(len("image"), *(len(f"{r[0]} [{role}]") for r in rows for role in roles))
    table = not job.json_out
    if table:
        h, w, _ = ex.shape
        echo(f"exemplar {job.exemplar} ({h}x{w}, material: {', '.join(roles)}); every map scored")
        echo(f"alone, {job.scales} scales of 4x4 patches, {job.patches} patches x {job.seeds} "
             f"draws, seed {job.seed}")  # fmt: skip
        if structure:
            echo(STRUCTURE_LINE)
        echo(table_header(width, structure))
    results, lines = [], []
    for _, (name, kind, _), r in median_of_pieces(scored_rows(rows, score)):
        results.append({"name": name, "kind": kind, **r})
        if table:
            for role, m in r["maps"].items():
                echo(table_row(f"{name} [{role}]", m, width, structure))
            if r["consistency"]:
                lines.append(f"{name}: " + consistency_text(r["consistency"]))
    if table:
        notes = [n for r in results for m in r["maps"].values() for n in m.get("notes", [])]
        for note in dict.fromkeys(notes):
            echo(f"note: {note}")
        echo("consistency (this image / the exemplar's own; ratio 1 = as consistent):")
        for line in lines:
            echo("  " + line)
        return
    doc = {"exemplar": str(job.exemplar), "material": layout, "settings": job.settings(),
           "results": results}  # fmt: skip
    echo(json.dumps(doc, indent=2))


def consistency_text(figures: dict[str, dict]) -> str:
    """'normal~height 0.61 / 0.74 (x0.82); roughness~height -0.40 / -0.52 (x0.77)'."""
    return "; ".join(
        f"{k} {v['image']:.2f} / {v['exemplar']:.2f} (x{v['ratio']:.2f})"
        for k, v in figures.items()
    )
