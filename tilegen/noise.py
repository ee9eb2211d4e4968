"""The coordinate-hashed noise field shared by training samples, export and the tiler.

Every noise value is a pure function of (seed, level, channel, y, x): no RNG state, so any
window of the infinite field can be computed alone, in any order, by any runtime. Only 32-bit
unsigned integer operations are used (xor, shifts, wrapping multiply), so shaders and ONNX graphs
reproduce it bit for bit. The exact specification is docs/NOISE.md (spec "tilegen-hash32", v1).

    mix(h)  = lowbias32:  h ^= h >> 16; h *= 0x7FEB352D; h ^= h >> 15; h *= 0x846CA68B; h ^= h >> 16
    h       = mix(mix(mix(mix(mix(seed) ^ level) ^ channel) ^ uint32(y)) ^ uint32(x))
    value   = (h >> 8) * 2**-24          # exact in float32, uniform on [0, 1)

y and x are signed 32-bit coordinates taken as their two's-complement uint32 bits.
"""

from __future__ import annotations

import numpy as np

from tilegen.windows import Arch, axis_window, level_periods

NOISE_SPEC = "tilegen-hash32"
NOISE_SPEC_VERSION = 1

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)


def mix32(h: np.ndarray) -> np.ndarray:
    """lowbias32 (Chris Wellons): a fast, well-mixing bijection on uint32."""
    h = np.asarray(h, dtype=np.uint32)
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * _M1
        h = h ^ (h >> np.uint32(15))
        h = h * _M2
        h = h ^ (h >> np.uint32(16))
    return h


def _as_u32(v: np.ndarray | int) -> np.ndarray:
    # Two's-complement bits of a signed coordinate: -1 -> 0xFFFFFFFF.
    return np.asarray(v, dtype=np.int64).astype(np.uint32)


def wrap(coords: np.ndarray, period: int | None) -> np.ndarray:
    """Coordinates modulo `period` (Python's sign convention), or unchanged for None."""
    return coords if period is None else np.mod(coords, period)


def noise_window(
    seed: int,
    level: int,
    channels: int,
    y0: int,
    x0: int,
    height: int,
    width: int,
    period: tuple[int, int] | None = None,
) -> np.ndarray:
    """Noise of one level on rows [y0, y0+height) x cols [x0, x0+width): float32 (C, H, W).

    `period` (py, px), in this level's pixels, wraps the coordinates so that the field (and so
    the generator's output) is periodic.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    ys = np.arange(y0, y0 + height, dtype=np.int64)
    xs = np.arange(x0, x0 + width, dtype=np.int64)
    if period is not None:
        ys, xs = wrap(ys, period[0]), wrap(xs, period[1])
    base = mix32(mix32(np.uint32(seed)) ^ np.uint32(level))
    out = np.empty((channels, height, width), dtype=np.float32)
    h = np.empty((height, width), dtype=np.uint32)
    tmp = np.empty_like(h)
    for c in range(channels):
        row = mix32(mix32(base ^ np.uint32(c))[None] ^ _as_u32(ys))  # (H,)
        np.bitwise_xor(row[:, None], _as_u32(xs)[None, :], out=h)
        _mix32_inplace(h, tmp)  # the last mix over the whole window, without temporaries
        np.right_shift(h, np.uint32(8), out=h)
        np.multiply(h, np.float32(2.0**-24), out=out[c], casting="unsafe")
    return out


def _mix32_inplace(h: np.ndarray, tmp: np.ndarray) -> None:
    """mix32 on a large window in place (same values; the tiler spends ~7% of a tile here)."""
    for shift, mult in ((16, _M1), (15, _M2)):
        np.right_shift(h, np.uint32(shift), out=tmp)
        np.bitwise_xor(h, tmp, out=h)
        np.multiply(h, mult, out=h)
    np.right_shift(h, np.uint32(16), out=tmp)
    np.bitwise_xor(h, tmp, out=h)


def tile_noise(
    arch: Arch,
    channels: int,
    seed: int,
    y0: int,
    x0: int,
    height: int,
    width: int,
    period: tuple[int, int] | None = None,
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Every level's noise window (1, C, H_k, W_k) for output tile [y0, y0+h) x [x0, x0+w), and
    the tile's offset inside the network's output (tilegen/windows.py has the arithmetic).

    `period` (py, px) is the output's period in full-resolution pixels (multiples of the stride).
    """
    ay, ax = axis_window(arch, y0, height), axis_window(arch, x0, width)
    if period is not None:
        periods = list(zip(level_periods(arch, period[0]), level_periods(arch, period[1])))
    else:
        periods = [None] * arch.levels
    noises = [
        noise_window(seed, k, channels, ys, xs, hs, ws, periods[k])[None]
        for k, ((ys, hs), (xs, ws)) in enumerate(zip(ay.noise, ax.noise))
    ]
    return noises, (ay.crop, ax.crop)
