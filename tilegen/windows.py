"""Window arithmetic: which noise each level needs for a requested output tile.

The generator (train/generator.py) is a pure function of a finite noise neighbourhood: valid
convolutions and nearest x2 upsampling, levels k = 0 (coarsest) .. K-1 (finest, full resolution):

    h_0 = block0(z_0)                                  block0 trims t0 pixels per side
    h_k = join_k(concat(up2(h_{k-1}), block_k(z_k)))   block_k trims tb, join_k trims tj

Every map of level k lives in one global frame, and up2 reads h_{k-1}[floor(Y / 2)]. A graph
evaluation whose level-k output covers [Y_k, Y_k + O_k) needs, with no cropping inside the graph,

    Y_k = 2 Y_{k-1} + tj        O_k = 2 O_{k-1} - 2 tj          (k >= 1)

so the full-resolution window starts on Y_{K-1} = 2^(K-1) Y_0 + tj (2^(K-1) - 1): windows follow
the upsampling grid. A tile [a, a+n) is served by the smallest such window containing it, then
cropped. An aligned tile (a multiple of 2^(K-1), and n too) costs only tj extra pixels per side.

A model may end with a patch projection (train/generator.py, PatchProjection): 4x4 patches on a
stride-2 grid, each replaced by an exemplar patch and the overlaps averaged. It trims tr = 2
pixels per side (pixels nearer the edge lie in fewer patches) and needs its grid on a fixed
global parity: it holds because Y_{K-1} = 2^(K-1) Y_0 + tj (2^(K-1) - 1) is even for K >= 2
and an even tj, and O_{K-1} = 2 O_{K-2} - 2 tj is even too.

Coarse projections (GeneratorConfig.coarse) come before the final one: stage k averages 2^k x 2^k
blocks, projects the pooled image's 4x4 patches on its own stride-2 grid and adds the change back,
upsampled bilinearly. Its blocks and grid must sit on fixed global coordinates: every network
output window is [A - tj, B + tj) with A, B multiples of the stride (from the formulas above), so
a stage first cuts its input to the nearest window aligned to 2^(k+1) pixels; `projection_crops`
has the arithmetic, and the whole chain still trims a fixed `tr` per side.

Periodic output with period P (a multiple of 2^(K-1)) wraps level k's noise modulo P / 2^(K-1-k).
This module is shared by training (sampling), export (metadata, parity checks) and the tiler.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    """What the window arithmetic needs to know of a generator."""

    levels: int  # K, number of noise inputs; K-1 upsamplings
    t0: int = 2  # trim per side of level 0's block
    tb: int = 2  # trim per side of each finer level's noise block
    tj: int = 2  # trim per side of each join block
    tr: int = 0  # trim per side of the final patch projection (0: the model has none)

    @property
    def stride(self) -> int:
        """2^(K-1): output pixels per coarsest-level pixel; the alignment of windows."""
        return 2 ** (self.levels - 1)


@dataclass(frozen=True)
class AxisWindow:
    """One axis of a graph evaluation: the output window and each level's noise window."""

    out_start: int  # Y_{K-1}
    out_size: int  # O_{K-1}
    crop: int  # offset of the requested tile inside the output window
    noise: tuple[tuple[int, int], ...]  # per level k: (start, size) of z_k


def axis_window(arch: Arch, start: int, size: int) -> AxisWindow:
    """The smallest aligned graph window covering output pixels [start, start+size)."""
    if size < 1:
        raise ValueError(f"tile size must be positive, got {size}")
    s, tj, tr = arch.stride, arch.tj, arch.tr
    offset = tj * (s - 1) + tr  # output start = s * Y_0 + offset
    shrink = 2 * tj * (s - 1) + 2 * tr  # output size = s * O_0 - shrink
    y0 = (start - offset) // s
    out_start = s * y0 + offset
    need = start + size - out_start
    o0 = max(-(-(need + shrink) // s), 2 * tj)  # ceil; 2*tj keeps every level's size >= 1
    ys, os_ = [y0], [o0]
    for _ in range(1, arch.levels):
        ys.append(2 * ys[-1] + tj)
        os_.append(2 * os_[-1] - 2 * tj)
    out_size = os_[-1] - 2 * tr
    assert ys[-1] + tr == out_start and out_size >= need and out_size > 0
    noise = [(ys[0] - arch.t0, os_[0] + 2 * arch.t0)]
    pad = tj + arch.tb
    noise += [(ys[k] - pad, os_[k] + 2 * pad) for k in range(1, arch.levels)]
    return AxisWindow(out_start, out_size, start - out_start, tuple(noise))


def period_fits(period: int, stride: int) -> bool:
    """The one rule for an output period: a positive multiple of the model's stride, so that
    every level's noise period (period / 2^(K-1-k)) is whole."""
    return period > 0 and period % stride == 0


def check_period(arch: Arch, period: int) -> None:
    """ValueError, in words, unless `period` suits the model (`period_fits`)."""
    if not period_fits(period, arch.stride):
        raise ValueError(
            f"a periodic size must be a positive multiple of {arch.stride} for this model, "
            f"got {period}"
        )


def level_periods(arch: Arch, period: int) -> tuple[int, ...]:
    """Noise period of each level for an output period `period` (full-resolution pixels)."""
    check_period(arch, period)
    return tuple(period // 2 ** (arch.levels - 1 - k) for k in range(arch.levels))


def output_size(arch: Arch, noise_sizes: list[int]) -> int:
    """Output size of a graph fed noise of these sizes (one axis); checks they are consistent."""
    o = noise_sizes[0] - 2 * arch.t0
    for k in range(1, arch.levels):
        o = 2 * o - 2 * arch.tj
        if noise_sizes[k] - 2 * (arch.tb + arch.tj) != o:
            raise ValueError(f"noise sizes {noise_sizes} do not follow the upsampling grid")
    return o - 2 * arch.tr


@dataclass(frozen=True)
class StageCrop:
    """Where one projection stage cuts its input (pixels per side, full resolution)."""

    factor: int  # 2^k: the stage projects the image pooled by factor x factor (1: the finest)
    crop_in: int  # cut before pooling, so that blocks and the patch grid are globally aligned
    crop_out: int  # cut from the stage's input to give its output


def projection_crops(
    stride: int, tj: int, coarse: list[int] | tuple[int, ...], finest_trim: int
) -> tuple[list[StageCrop], int]:
    """The crops of each coarse stage (levels in order, coarse first) and of the final projection
    (trimming `finest_trim` after its crop), and the chain's total trim per side `tr`.

    Margins m are counted inward from the stride-aligned window [A, B) (the network's output has
    m = -tj). A stage of factor f needs m_a = the next multiple of 2f (blocks of f, then its
    pooled patch grid on even pooled coordinates); its output loses 2 pooled pixels (2f, the
    projection's own trim) and f/2 more where the upsampled change reads past the pooled
    window's edge: m_out = m_a + 2f + f/2. The final projection needs an even start."""
    m = m0 = -tj
    stages = []
    for k in coarse:
        f = 2**k
        if k < 1 or 2 * f > stride:
            raise ValueError(f"coarse projection level {k}: use 1..{stride.bit_length() - 2}")
        m_a = -(-m // (2 * f)) * 2 * f
        m_out = m_a + 2 * f + f // 2
        stages.append(StageCrop(f, m_a - m, m_out - m))
        m = m_out
    m_a = -(-m // 2) * 2
    stages.append(StageCrop(1, m_a - m, m_a + finest_trim - m))
    return stages, m_a + finest_trim - m0
