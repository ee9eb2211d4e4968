"""Where each label of a world shows: the layout upsampled smoothly, displaced by seeded noise.

    field = Field(layout.labels, size, seed, blend, periodic)   # a LabelGrid (or an array)
    present, weights = field.weights(y0, x0, h, w)     # weights (n, h, w) float32, sum 1

Every value is a pure function of (seed, global pixel coordinates, layout), so any window of
the field equals the same pixels of the whole, and a periodic world wraps (DESIGN.md section 9):

- Layout coordinates: pixel (y, x) sits at u = (y + 0.5) * Hl / H in cells (cell i spans
  [i, i + 1)). They are displaced by a domain warp: value noise from the project's hash field
  (docs/NOISE.md, at levels WARP_LEVEL + k, channel 0 for rows and 1 for columns) on lattices of
  2, 1, 1/2, ... cells down to about 8 pixels, amplitudes halving, smooth (C1) interpolation.
  Boundaries are therefore curved and irregular at every scale, and leave the cell edges.
- Each label's indicator is sampled at the displaced point through a cubic B-spline over the
  layout cells (smooth, never negative, no overshoot): f_l in [0, 1], summing to 1.
- Label l's weight rises from 0 to 1 across about `blend` pixels around the place where it
  stops being the largest f: r_l = clip(0.5 + (f_l - max_{j != l} f_j) * S, 0, 1), a smoothstep
  of it, normalised. S follows from the B-spline's slope (2/3 per cell at a straight edge), so
  a straight boundary's transition is `blend` pixels wide; where r_l = 1 the label is alone.

The weights are computed on a global grid of GRID pixels and interpolated bilinearly (the warp
is smooth at that scale; exact 0s and 1s stay exact): 1/16 of the work, the same values
whichever window asks. Only
elementwise float64 arithmetic is used (no transcendental functions, no reductions whose order
depends on the window), so the values are bit-identical across tilings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tilegen.layout import ArrayLabels, LabelGrid
from tilegen.noise import noise_window

WARP_LEVEL = 0x57524C44  # "WRLD": the warp's noise levels, far from any model's (0 .. 15)
GRID = 4  # pixels between the field's grid points
AMPLITUDE = 0.5  # cells: the coarsest octave's displacement; each finer octave half of it
FINEST = 8.0  # pixels: the finest lattice spacing of the warp
BSPLINE_SLOPE = 2.0 / 3.0  # per cell: the largest slope of a B-spline-smoothed step


def _bspline(t: np.ndarray) -> list[np.ndarray]:
    """The four cubic B-spline weights of taps -1, 0, 1, 2 at fractional position t."""
    t2, t3 = t * t, t * t * t
    s = 1.0 - t
    return [s * s * s / 6.0, (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
            (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0, t3 / 6.0]  # fmt: skip


@dataclass(frozen=True)
class Octave:
    level: int  # hash level
    freq: float  # lattice points per cell
    amplitude: float  # cells


@dataclass
class Field:
    labels: LabelGrid  # (Hl, Wl) label per layout cell, read through `cells` (an array: wrapped)
    size: tuple[int, int]  # output pixels (H, W)
    seed: int
    blend: float  # transition width in pixels
    periodic: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.labels, np.ndarray):
            self.labels = ArrayLabels(self.labels)
        hl, wl = self.labels.shape
        self.scale = (hl / self.size[0], wl / self.size[1])  # cells per pixel
        self.cell = math.sqrt(self.size[0] / hl * self.size[1] / wl)  # pixels per cell
        self.sharpness = self.cell / (2.0 * BSPLINE_SLOPE * max(self.blend, 1e-3))
        self.octaves = self._octaves()
        self.reach = sum(o.amplitude for o in self.octaves) + 2.0  # cells: warp + taps

    def _octaves(self) -> list[Octave]:
        out, k = [], 0
        while True:
            freq = 2.0 ** (k - 1)
            if k and self.cell / freq < FINEST:
                return out
            hl, wl = self.labels.shape
            if not self.periodic or (hl * freq).is_integer() and (wl * freq).is_integer():
                out.append(Octave(WARP_LEVEL + k, freq, AMPLITUDE * 0.5**k))
            k += 1

    # --- the grid -----------------------------------------------------------------------------

    def _grid(self, start: int, size: int) -> np.ndarray:
        """Global grid indices covering pixels [start, start + size) (with the next point)."""
        return np.arange(start // GRID, (start + size - 1) // GRID + 2, dtype=np.int64)

    def _cells(self, g: np.ndarray, axis: int) -> np.ndarray:
        """Layout coordinate (cells) of grid points g along an axis, wrapped when periodic."""
        px = g * GRID
        if self.periodic:
            px = np.mod(px, self.size[axis])
        return (px + 0.5) * self.scale[axis]

    def _warp(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(du, dv) in cells at grid points (u rows (gh,), v columns (gw,))."""
        du = np.zeros((u.size, v.size))
        dv = np.zeros((u.size, v.size))
        hl, wl = self.labels.shape
        for o in self.octaves:
            ty, tx = u * o.freq, v * o.freq
            iy, ix = np.floor(ty).astype(np.int64), np.floor(tx).astype(np.int64)
            sy, sx = _smooth(ty - iy), _smooth(tx - ix)
            y0, x0 = int(iy.min()), int(ix.min())
            period = (int(hl * o.freq), int(wl * o.freq)) if self.periodic else None
            lat = noise_window(self.seed, o.level, 2, y0, x0, int(iy.max()) - y0 + 2,
                               int(ix.max()) - x0 + 2, period).astype(np.float64)  # fmt: skip
            ry, rx = (iy - y0)[:, None], (ix - x0)[None, :]
            for c, d in ((0, du), (1, dv)):
                top = lat[c, ry, rx] + (lat[c, ry, rx + 1] - lat[c, ry, rx]) * sx
                bot = lat[c, ry + 1, rx] + (lat[c, ry + 1, rx + 1] - lat[c, ry + 1, rx]) * sx
                d += (top + (bot - top) * sy[:, None] - 0.5) * (2.0 * o.amplitude)
        return du, dv

    # --- the soft indicators ------------------------------------------------------------------

    def indicators(self, y0: int, x0: int, h: int, w: int) -> tuple[list[int], np.ndarray]:
        """(labels present, f (n, gh, gw)) at the grid points covering the window: each present
        label's B-spline-smoothed indicator at the warped position."""
        gy, gx = self._grid(y0, h), self._grid(x0, w)
        u, v = self._cells(gy, 0), self._cells(gx, 1)
        du, dv = self._warp(u, v)
        cu, cv = u[:, None] + du - 0.5, v[None, :] + dv - 0.5  # cell-centre coordinates
        iu, iv = np.floor(cu).astype(np.int64), np.floor(cv).astype(np.int64)
        wu, wv = _bspline(cu - iu), _bspline(cv - iv)
        r0, c0 = int(iu.min()) - 1, int(iv.min()) - 1
        block = self._block(r0, c0, int(iu.max()) + 3 - r0, int(iv.max()) + 3 - c0)
        present = [int(i) for i in np.unique(block)]
        f = np.zeros((len(present), gy.size, gx.size))
        if len(present) == 1:
            f[0] = 1.0
            return present, f
        for a in range(4):
            for b in range(4):
                lab = block[iu + (a - 1) - r0, iv + (b - 1) - c0]
                wt = wu[a] * wv[b]
                for n, label in enumerate(present):
                    f[n] += np.where(lab == label, wt, 0.0)
        return present, f

    def _block(self, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
        """Layout cells [r0, r0 + rows) x [c0, c0 + cols), wrapped (periodic) or clamped."""
        hl, wl = self.labels.shape
        ry, rx = np.arange(r0, r0 + rows), np.arange(c0, c0 + cols)
        if self.periodic:
            ry, rx = np.mod(ry, hl), np.mod(rx, wl)
        else:
            ry, rx = np.clip(ry, 0, hl - 1), np.clip(rx, 0, wl - 1)
        return self.labels.cells(ry, rx)

    def reaching(self, y0: int, x0: int, h: int, w: int) -> list[int]:
        """The labels whose indicator can be non-zero in the window, from the layout alone (no
        warp computed): the cells within the warp's largest displacement and the taps of the
        grid points around the window."""
        r, (sy, sx) = self.reach, self.scale
        y0, x0, h, w = y0 - GRID, x0 - GRID, h + 2 * GRID, w + 2 * GRID
        u0, u1 = (y0 + 0.5) * sy - r, (y0 + h - 0.5) * sy + r
        v0, v1 = (x0 + 0.5) * sx - r, (x0 + w - 0.5) * sx + r
        r0, c0 = math.floor(u0 - 0.5), math.floor(v0 - 0.5)
        rows, cols = math.floor(u1) - r0 + 1, math.floor(v1) - c0 + 1
        hl, wl = self.labels.shape
        if self.periodic:  # a span of a whole period reads each cell once
            r0, rows = (0, hl) if rows >= hl else (r0, rows)
            c0, cols = (0, wl) if cols >= wl else (c0, cols)
        block = self._block(r0, c0, rows, cols)
        return [int(i) for i in np.unique(block)]

    # --- weights ------------------------------------------------------------------------------

    def weights(self, y0: int, x0: int, h: int, w: int) -> tuple[list[int], np.ndarray]:
        """(labels present, weights (n, h, w) float32) for pixels [y0, y0+h) x [x0, x0+w):
        each pixel's weights are >= 0 and sum to 1; a label alone at a pixel has weight 1."""
        near = self.reaching(y0, x0, h, w)
        if len(near) == 1:
            return near, np.ones((1, h, w), np.float32)
        present, f = self.indicators(y0, x0, h, w)
        if len(present) == 1:
            return present, np.ones((1, h, w), np.float32)
        return present, _upsample(self._grid_weights(f), y0, x0, h, w)

    def _grid_weights(self, f: np.ndarray) -> np.ndarray:
        """Weights at the grid points from the indicators f (n, gh, gw): exactly 1 and 0 where
        one label is far enough ahead, so that bilinear upsampling keeps them exact."""
        top = f.max(axis=0)
        second = np.partition(f, -2, axis=0)[-2]
        out = np.empty(f.shape, np.float64)
        for n in range(f.shape[0]):
            other = np.where(f[n] < top, top, second)
            out[n] = _smooth(np.clip(0.5 + (f[n] - other) * self.sharpness, 0.0, 1.0))
        total = out[0].copy()
        for n in range(1, f.shape[0]):
            total += out[n]
        return (out / total).astype(np.float32)


def _smooth(t: np.ndarray) -> np.ndarray:
    """3t^2 - 2t^3: C1 interpolation, symmetric (s(1 - t) = 1 - s(t))."""
    return t * t * (3.0 - 2.0 * t)


def _upsample(f: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Grid values (n, gh, gw) float32 (grid point i at pixel (y0 // GRID + i) * GRID) ->
    pixels (n, h, w), bilinearly (a + (b - a) t), rows then columns."""
    return _lerp_axis(_lerp_axis(f, y0, h, 1), x0, w, 2)


def _lerp_axis(f: np.ndarray, start: int, size: int, axis: int) -> np.ndarray:
    """Linear interpolation along one axis from grid points to pixels [start, start + size),
    one strided slice per phase (pixel mod GRID) instead of gathers."""
    shape = list(f.shape)
    shape[axis] = size
    out = np.empty(shape, np.float32)
    first = start // GRID
    for phase in range(GRID):
        j = (phase - start) % GRID  # first pixel of this phase
        if j >= size:
            continue
        count = (size - j + GRID - 1) // GRID
        g = (start + j) // GRID - first
        a = np.take(f, range(g, g + count), axis=axis)
        b = np.take(f, range(g + 1, g + 1 + count), axis=axis)
        dest = [slice(None)] * f.ndim
        dest[axis] = slice(j, size, GRID)
        out[tuple(dest)] = a + (b - a) * np.float32(phase / GRID)
    return out
