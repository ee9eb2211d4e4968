"""The figures of how close an image is to an exemplar's texture (docs/EVALUATE.md).

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

All figures at once, for many images and for materials: tilegen/evaluator.py; the scale to read
them against: tilegen/baselines.py.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tilegen.errors import UserError

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


def as_hwc(img: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] < 1:  # C > 4: a material's stacked maps
        raise UserError(f"{what} has shape {img.shape}: expected (H, W, C) with C >= 1")
    if min(img.shape[:2]) < 1:
        raise UserError(f"{what} is empty: shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def check_channels(exemplar: np.ndarray, image: np.ndarray, name: str = "the image") -> None:
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
    levels = [as_hwc(img)]
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
    img = as_hwc(img)
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
        self.exemplar = as_hwc(exemplar, "the exemplar")
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
        image = as_hwc(image, name)
        check_channels(self.exemplar, image, name)
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
    exemplar, image = as_hwc(exemplar, "the exemplar"), as_hwc(image)
    check_channels(exemplar, image)
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
    y = _luminance(as_hwc(img))
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
    exemplar, image = as_hwc(exemplar, "the exemplar"), as_hwc(image)
    check_channels(exemplar, image)
    m = min(*exemplar.shape[:2], *image.shape[:2])
    if m < 4:
        raise UserError(f"images of {m} pixels across are too small for a spectrum")
    n_bins = m // 4
    a = radial_log_spectrum(exemplar, n_bins)
    b = radial_log_spectrum(image, n_bins)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))
