"""The integer-exact generator: a trained network quantised to 8-bit integers after training.

A float32 network gives each runtime's own last bits (a convolution's sums in another order round
differently), and the patch projection turns one 8-bit level of difference into another exemplar
patch. Here every value the network computes is an integer times a power of two, so every runtime
computes the same numbers exactly:

    activations  a = (q - z) 2^-e         q uint8, zero point z, one power-of-two scale a tensor
    weights      w = v 2^-f_o             v int8 (|v| <= 127), one power-of-two scale a filter
    biases       b = u 2^-(e + f_o)       u integer, the scale of the filter's sums

A convolution's sum  sum_i (q_i - z) v_i + u  is an integer below 2^24 in magnitude (<= 216
products of 255 x 127 and the bias: checked when quantising), so float32 represents every partial
sum exactly, in any order, and an integer kernel (int32 accumulation) gets the same number. Its
output is requantised by a power of two with rounding half to even, then saturated:

    y = clamp(rint(sum 2^(g - e - f_o)) + z_y, 0, 255)                (y's scale 2^-g)

the leaky ReLU acts on y's real value with slope LEAK = 13107 / 2^16 (0.19999695, within 3e-6 of
the 0.2 the network was trained with: a slope with a 14-bit numerator keeps every product with an
8-bit value exact), and is requantised the same way. Joins add `residual` (0.5) x the coarser level
upsampled bilinearly (weights 1/4 and 3/4: exact) before requantising. The last convolution's
scale is one 8-bit level (2^0, zero point 0): the network's output *is* the projection's input in
whole levels, and the projection (train/generator.py) is exact on whole levels already. Coarse
projection stages (`coarse_levels`) sum blocks of levels, project the rounded block means and
add the change back upsampled, all in integer units with power-of-two denominators, rounded to
whole levels for the next stage.

`calibrate` chooses every scale and zero point from the float network's ranges on training noise
and rounds the weights (post-training quantisation); `IntegerGenerator.levels` is the reference
implementation of the arithmetic above (torch in float64, where every value is an exact integer
multiple of its scale), which export/integer.py writes as an ONNX graph and the tests compare
byte for byte. docs/FORMAT.md section 11 states the contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from train.generator import (
    PatchProjection,
    TextureGenerator,
    fold,
    is_folded,
    training_noise,
)

LEAK = 13107 / 65536  # the leaky ReLU's slope: 0.2 to 3e-6, exact on every 8-bit value
NOISE_EXP = 8  # noise in [0, 1) -> rint(z 2^8), saturated: whole levels 0..255 of 2^-8
MAX_SUM = 2**24  # every convolution sum stays below this in magnitude (float32 is exact there)
WEIGHT_MAX = 127


@dataclass(frozen=True)
class QParams:
    """An activation tensor's quantisation: real value = (q - zero) * 2^-exp, q in 0..255."""

    exp: int
    zero: int

    @property
    def scale(self) -> float:
        return 2.0**-self.exp

    def to_dict(self) -> dict:
        return {"exp": self.exp, "zero": self.zero}


@dataclass
class QConv:
    """One quantised convolution (valid, stride 1) and what follows it.

    weight int8 (O, I, k, k) with filter scales 2^-w_exp[o]; bias in units 2^-(x.exp + w_exp[o]);
    x: its input's quantisation; y: its output's (before the activation); act: after the leaky
    ReLU (None: no activation, e.g. the last convolution)."""

    weight: np.ndarray
    w_exp: np.ndarray
    bias: np.ndarray
    x: QParams
    y: QParams
    act: QParams | None

    def max_sum(self) -> int:
        """The largest |partial sum| this convolution can reach on any uint8 input, in either
        form the export writes: sum (q - z) v + u, or sum q v + (u - z sum v) (export/
        integer.py); below MAX_SUM, so float32 holds every partial sum exactly."""
        v = self.weight.astype(np.int64).reshape(self.weight.shape[0], -1)
        zmax = max(self.x.zero, 255 - self.x.zero)
        centred = np.abs(v).sum(1) * zmax + np.abs(self.bias)
        shifted = np.abs(v).sum(1) * 255 + np.abs(self.bias - self.x.zero * v.sum(1))
        return int(np.maximum(centred, shifted).max())


@dataclass
class IntegerStage:
    """A coarse projection stage (train/generator.py, CoarseProjection) in whole levels: the
    input (cut by crop_in) summed over factor x factor blocks, the block means rounded to whole
    levels and projected onto `targets` with scores `bias` (as the final projection), and the
    change added back upsampled bilinearly, the sum rounded to whole levels (`coarse_levels`)."""

    factor: int
    crop_in: int
    crop_out: int
    targets: np.ndarray  # (J, C*16) uint8 levels of the exemplar pooled by `factor`
    bias: np.ndarray  # (J,) int64: e_j, as IntegerGenerator.bias


@dataclass
class IntegerGenerator:
    """A TextureGenerator's network in integer arithmetic, and its final patch projection."""

    cfg: object  # GeneratorConfig
    blocks: list[list[QConv]]  # per level: conv3x3, conv3x3, conv1x1
    joins: list[list[QConv]]  # levels 1..K-1
    level_q: list[QParams]  # h_k's quantisation (noise block k+1 outputs share it: the concat)
    to_image: QConv  # y = whole levels (exp 0, zero 0), no activation
    residual: float
    targets: np.ndarray | None = None  # (J, C*16) uint8 levels: the projection's y_j
    bias: np.ndarray | None = None  # (J,) int64: e_j ~ (||y_j||^2 - psi_j) / 2 (project_levels)
    crop: int = 0  # pixels the final projection cuts first (the coarse stages' alignment)
    noise_q: QParams = field(default_factory=lambda: QParams(NOISE_EXP, 0))
    stages: list[IntegerStage] = field(default_factory=list)  # coarse stages, coarse first

    @property
    def arch(self):
        return self.cfg.arch

    def convs(self) -> list[QConv]:
        return (
            [c for b in self.blocks for c in b]
            + [c for j in self.joins for c in j]
            + [self.to_image]
        )

    # --- the reference arithmetic (torch, float64: every value an exact multiple) ---------------

    @torch.no_grad()
    def levels(self, *noises) -> torch.Tensor:
        """The network's output in whole 8-bit levels (B, C, H, W), as float64 integers."""
        z = [torch.as_tensor(n, dtype=torch.float64) for n in noises]
        h = _run_block(self.blocks[0], quantize(z[0], self.noise_q))
        for k in range(1, self.cfg.levels):
            up = F.interpolate(h, scale_factor=2.0, mode="nearest")
            n = _run_block(self.blocks[k], quantize(z[k], self.noise_q))
            joined = torch.cat([up, n], dim=1)
            extra = None
            if self.residual:
                prev = self.level_q[k - 1]
                real = (h - prev.zero) * prev.scale * self.residual
                up2 = F.interpolate(real, scale_factor=2.0, mode="bilinear", align_corners=False)
                extra = up2[:, :, 2:-2, 2:-2]
            h = _run_block(self.joins[k - 1], joined, extra)
        return _conv_out(self.to_image, h)

    @torch.no_grad()
    def image(self, *noises) -> torch.Tensor:
        """The model's output image in [0, 1] (float32), as the ONNX graph returns it: the
        projection of the levels after the coarse stages, or the levels / 255 without a
        projection."""
        lv = self.levels(*noises)
        if self.targets is None:
            return (lv / 255.0).float()
        for stage in self.stages:
            lv = coarse_levels(lv, stage)
        return project_levels(lv, self.targets, self.bias, self.crop)


def quantize(real: torch.Tensor, q: QParams) -> torch.Tensor:
    """QuantizeLinear: clamp(rint(real 2^exp) + zero, 0, 255) (halves to even: torch.round)."""
    return torch.clamp(torch.round(real * 2.0**q.exp) + q.zero, 0, 255)


def dequantize(v: torch.Tensor, q: QParams) -> torch.Tensor:
    return (v - q.zero) * q.scale


def leaky(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t >= 0, t, t * LEAK)


def _conv_out(c: QConv, x: torch.Tensor) -> torch.Tensor:
    """The convolution's requantised output y (uint8 values as float64)."""
    w = torch.from_numpy(c.weight.astype(np.float64))
    s = F.conv2d(x - c.x.zero, w) + torch.from_numpy(c.bias.astype(np.float64))[None, :, None, None]
    shift = torch.from_numpy((c.y.exp - c.x.exp - c.w_exp).astype(np.float64))
    return torch.clamp(torch.round(s * (2.0**shift)[None, :, None, None]) + c.y.zero, 0, 255)


def _run_block(layers: list[QConv], x: torch.Tensor, extra: torch.Tensor | None = None):
    """conv -> requantise -> leaky -> requantise, three times; `extra` (a real-valued residual)
    is added to the last layer's activation before its requantisation."""
    for i, c in enumerate(layers):
        y = _conv_out(c, x)
        a = leaky(dequantize(y, c.y))
        if extra is not None and i == len(layers) - 1:
            a = a + extra
        x = quantize(a, c.act)
    return x


def project_levels(
    levels: torch.Tensor, targets: np.ndarray, bias: np.ndarray, crop: int = 0
) -> torch.Tensor:
    """The final patch projection on whole levels (`projected_sums`), divided by 4 x 255 in
    float32 (correctly rounded): the output image in [0, 1]."""
    if crop:
        levels = levels[:, :, crop:-crop, crop:-crop]
    return projected_sums(levels, targets, bias).float() / 1020.0


def projected_sums(levels: torch.Tensor, targets: np.ndarray, bias: np.ndarray) -> torch.Tensor:
    """A patch projection of whole levels, every stage's: each 4x4 patch x_i on the stride-2
    grid (uint8) takes the target y_j with the first minimal integer score

        s_ij = <x_i, 127 - y_j> + e_j,    e_j ~ (||y_j||^2 - psi_j) / 2

    which is (||x_i - y_j||^2 - psi_j) / 2 up to a constant of the row (||x_i||^2 / 2 - 127
    sum(x_i)): PatchProjection's argmin with psi rounded to whole levels^2 of the parity of
    ||y_j||^2. |s_ij| < 2^22. Returns the chosen patches overlap-added, TRIM cut: sums of 4 whole
    levels (float64 integers)."""
    p, s, t = PatchProjection.PATCH, PatchProjection.STRIDE, PatchProjection.TRIM
    b, c = levels.shape[:2]
    rows = F.unfold(levels, p, stride=s)  # (B, C*16, L)
    h, w = (levels.shape[2] - p) // s + 1, (levels.shape[3] - p) // s + 1
    rows = rows.permute(0, 2, 1).reshape(-1, c * p * p)
    y = torch.from_numpy(targets.astype(np.float64))
    scores = rows @ (127.0 - y).T + torch.from_numpy(bias.astype(np.float64))[None]
    chosen = y[scores.argmin(dim=1)]  # exact integer scores: the first minimum, as ONNX's
    patches = chosen.reshape(b, h * w, c * p * p).permute(0, 2, 1)
    summed = F.fold(patches, (levels.shape[2], levels.shape[3]), p, stride=s)
    return summed[:, :, t:-t, t:-t]


def upsample_kernel(f: int) -> np.ndarray:
    """The 2f x 2f kernel of bilinear x f upsampling (pixel centres (u + 1/2) / f - 1/2) as a
    transposed convolution of stride f, in units of 1/(2f)^2: the outer product of
    2f - |2m + 1 - 2f| (f = 2: 1 3 3 1), whole numbers, so every sum is exact."""
    m = np.arange(2 * f)
    tent = 2 * f - np.abs(2 * m + 1 - 2 * f)
    return np.outer(tent, tent).astype(np.int64)


def block_sums(levels: torch.Tensor, stage: IntegerStage) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, r): the sums of the stage's f x f blocks of whole levels (cut by crop_in first) and
    their means rounded to whole levels (halves to even), the levels the stage projects."""
    f, c = stage.factor, stage.crop_in
    x = levels[:, :, c:-c, c:-c] if c else levels
    sums = F.avg_pool2d(x, f) * (f * f)  # float64: means of integers, exact
    return sums, torch.round(sums / (f * f))


def coarse_levels(levels: torch.Tensor, stage: IntegerStage) -> torch.Tensor:
    """A coarse stage on whole levels (B, C, H, W), in integers, as the ONNX graph computes it:

        S = the sums of f x f blocks of the input cut by crop_in     (integers <= 255 f^2)
        r = rint(S / f^2)                                            (whole levels, halves even)
        Q = projected_sums(r)                                        (sums of 4 levels, TRIM cut)
        c = f^2 Q - 4 S                       the change P(d) - d in units of 1/(4 f^2)
        u = c upsampled by f (upsample_kernel, then f cut per side)   units of 1/(16 f^4)
        out = rint((16 f^4 x + u) / (16 f^4))  saturated to 0..255   (x: the input cut by crop_out)

    CoarseProjection's arithmetic with the projected image in quarter levels instead of
    Div-rounded floats, and the sum rounded to whole levels, which every later stage scores
    anyway. Every intermediate is an integer below 2^22: exact in float32 in any order."""
    f, t, o = stage.factor, PatchProjection.TRIM, stage.crop_out
    ch = levels.shape[1]
    sums, pooled = block_sums(levels, stage)
    change = projected_sums(pooled, stage.targets, stage.bias) * (f * f) - 4 * sums[..., t:-t, t:-t]
    k = torch.from_numpy(upsample_kernel(f).astype(np.float64)).expand(ch, 1, 2 * f, 2 * f)
    up = F.conv_transpose2d(change, k, stride=f, groups=ch)[:, :, f:-f, f:-f]
    unit = 16 * f**4
    total = levels[:, :, o:-o, o:-o] * unit + up
    return torch.clamp(torch.round(total / unit), 0, 255)


def half_bias(y2: np.ndarray, psi_levels2: np.ndarray) -> np.ndarray:
    """e_j = round((||y_j||^2 - psi_j) / 2), psi in whole levels^2 (floats allowed)."""
    return np.rint((y2 - psi_levels2) / 2.0).astype(np.int64)


# --- calibration -------------------------------------------------------------------------------


def _layers(seq) -> list[torch.nn.Conv2d]:
    return [seq[i] for i in range(0, len(seq), 3)]


@torch.no_grad()
def float_trace(model: TextureGenerator, noises: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor the quantisation needs, from the folded float network: 'b{k}.{i}.y' (conv
    output) and '.a' (after the leaky ReLU) for noise block k's layer i, 'j{k}.{i}.y/a' for join
    k, 'h{k}' (level k's features after the join and residual), 'image' (the to_image output)."""
    out: dict[str, torch.Tensor] = {}

    def block(seq, x, name, extra=None):
        for i, conv in enumerate(_layers(seq)):
            y = conv(x)
            a = F.leaky_relu(y, 0.2)
            out[f"{name}.{i}.y"] = y
            if extra is not None and i == 2:
                a = a + extra
            out[f"{name}.{i}.a"] = a
            x = a
        return x

    h = block(model.noise_blocks[0], noises[0], "b0")
    out["h0"] = h
    for k in range(1, model.cfg.levels):
        up = F.interpolate(h, scale_factor=2.0, mode="nearest")
        n = block(model.noise_blocks[k], noises[k], f"b{k}")
        extra = model.residual_term(h, model.cfg.residual) if model.cfg.residual else None
        h = block(model.joins[k - 1], torch.cat([up, n], dim=1), f"j{k}", extra)
        out[f"h{k}"] = h
    out["image"] = model.to_image(h) * 255.0  # in levels
    return out


def range_params(lo: float, hi: float) -> QParams:
    """The finest power-of-two scale whose 256 levels cover [lo, hi] (and 0), and its zero."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = max(hi - lo, 1e-8)
    exp = math.floor(math.log2(255.0 / span))
    while True:
        s = 2.0**-exp
        # the zero point rounded up, not to nearest: rounding down would leave lo just below
        # the grid at every scale (lo = -0.5038 gave zero 32 of 1/64, then 16 of 1/32, ...)
        zero = int(min(max(math.ceil(-lo / s - 1e-9), 0), 255))
        if (0 - zero) * s <= lo + 1e-12 * s and (255 - zero) * s >= hi - 1e-12 * s:
            return QParams(exp, zero)
        exp -= 1


def _quantile_range(t: torch.Tensor, q: float) -> tuple[float, float]:
    flat = t.flatten().double()
    if q >= 1.0 or flat.numel() < 1000:
        return float(flat.min()), float(flat.max())
    k = max(1, int(flat.numel() * (1 - q)))
    return float(-torch.topk(-flat, k).values[-1]), float(torch.topk(flat, k).values[-1])


# A window's range without its 0.1% most extreme values at either end: grids fitted to whole
# ranges spent levels on rare values and cost wood_grain 4% of its structure figure
# (bench/RESULTS.md, "Integer model").
CALIBRATION_QUANTILE = 0.999


def activation_grid(tensors: list[torch.Tensor], quantile: float = CALIBRATION_QUANTILE) -> QParams:
    """The grid of one activation tensor from its values in the calibration windows: the
    finest power-of-two grid covering each window's range without the `1 - quantile` most
    extreme fraction of its values at either end (1.0: the whole range). Values outside the
    grid saturate, as QuantizeLinear does."""
    lo, hi = zip(*(_quantile_range(t, quantile) for t in tensors))
    return range_params(min(lo), max(hi))


def quantize_conv(
    conv: torch.nn.Conv2d, x: QParams, y: QParams, act: QParams | None, scale_out: float = 1.0
) -> QConv:
    """conv's float weights (times scale_out) on the grid of x: int8 filters, each with the
    power-of-two scale that keeps |v| <= 127, biases rounded to the filters' sum units."""
    w = conv.weight.detach().double().cpu().numpy() * scale_out
    b = conv.bias.detach().double().cpu().numpy() * scale_out
    o = w.shape[0]
    top = np.abs(w.reshape(o, -1)).max(1)
    # the finest 2^-f with |w| / 2^-f <= 127
    f = np.floor(np.log2(WEIGHT_MAX / np.maximum(top, 1e-30))).astype(np.int64)
    v = np.rint(w * (2.0**f)[:, None, None, None])
    v = np.clip(v, -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    u = np.rint(b * 2.0 ** (x.exp + f)).astype(np.int64)
    q = QConv(v, f, u, x, y, act)
    if q.max_sum() >= MAX_SUM:
        raise ValueError(f"a convolution's sums reach {q.max_sum()} >= 2^24: not exact in float32")
    return q


@torch.no_grad()
def calibrate(
    model: TextureGenerator,
    samples: int = 8,
    size: int = 256,
    seed: int = 0,
    quantile: float = CALIBRATION_QUANTILE,
) -> IntegerGenerator:
    """Post-training quantisation of a trained generator (folded first): every tensor's
    power-of-two scale and zero point from the float network's range on `samples` windows of
    training noise (size^2 outputs; `activation_grid`, clipped at `quantile`), weights
    rounded per filter. The projections' targets and bias (the coarse stages' and the final
    one's) are taken as they are (whole levels). Re-levelling is not supported yet
    (ValueError)."""
    m = _float_copy(model)
    cfg = m.cfg
    g = torch.Generator().manual_seed(seed)
    traces = [
        float_trace(m, [z.double() for z in training_noise(cfg, 1, size, g)])
        for _ in range(samples)
    ]

    def params(*names: str) -> QParams:
        return activation_grid([t[n] for t in traces for n in names], quantile)

    noise_q = QParams(NOISE_EXP, 0)
    # the concat of level k joins h_{k-1} (upsampled) and noise block k's output: one grid
    level_q = []
    for k in range(cfg.levels):
        names = [f"h{k}"] + ([f"b{k + 1}.2.a"] if k + 1 < cfg.levels else [])
        level_q.append(params(*names))

    def block(seq, name: str, x: QParams, out: QParams) -> list[QConv]:
        layers = []
        for i, conv in enumerate(_layers(seq)):
            yq = params(f"{name}.{i}.y")
            act = out if i == 2 else params(f"{name}.{i}.a")
            layers.append(quantize_conv(conv, x, yq, act))
            x = act
        return layers

    blocks = [
        block(m.noise_blocks[k], f"b{k}", noise_q, level_q[k - 1] if k else level_q[0])
        for k in range(cfg.levels)
    ]
    joins = [
        block(m.joins[k - 1], f"j{k}", level_q[k - 1], level_q[k]) for k in range(1, cfg.levels)
    ]
    to_image = quantize_conv(m.to_image, level_q[-1], QParams(0, 0), None, scale_out=255.0)
    targets, bias = _integer_projection(m.project) if m.project is not None else (None, None)
    stages = [
        IntegerStage(st.factor, st.crop_in, st.crop_out, *_integer_projection(st.project))
        for st in m.coarse
    ]
    return IntegerGenerator(
        cfg, blocks, joins, level_q, to_image, float(cfg.residual), targets, bias,
        m.project.crop if m.project is not None else 0, noise_q, stages,
    )  # fmt: skip


def _float_copy(model: TextureGenerator) -> TextureGenerator:
    """A folded float64 CPU copy of `model` to calibrate on; ValueError for what the integer
    form cannot express."""
    import copy

    if model.project is not None and model.project.relevel is not None:
        raise ValueError("the integer form does not support a re-levelled projection yet")
    m = copy.deepcopy(model).cpu().double().eval()
    if not is_folded(m):
        fold(m)
    if m.cfg.residual and (m.cfg.residual * 2**20) % 1:
        raise ValueError(f"residual {m.cfg.residual} is not a short binary fraction")
    return m


def _integer_projection(project: PatchProjection) -> tuple[np.ndarray, np.ndarray]:
    """The projection's targets as uint8 and its bias as half_bias's e_j: targets and bias are
    whole levels already, so rounding only changes their type."""
    targets = project.targets.cpu().numpy().round().astype(np.uint8)
    y2 = (targets.astype(np.int64) ** 2).sum(1)
    psi = y2 - project.bias.cpu().numpy().round().astype(np.int64)
    return targets, half_bias(y2, psi)


def sample_tile_integer(
    qg: IntegerGenerator,
    seed: int,
    y0: int,
    x0: int,
    height: int,
    width: int,
    period: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Output pixels [y0, y0+height) x [x0, x0+width) of the integer model's texture for `seed`
    (float32 (1, C, height, width) in [0, 1]), as train.generator.sample_tile does for a float
    model: the reference every runtime's bytes must equal."""
    from tilegen.noise import tile_noise

    noises, (cy, cx) = tile_noise(qg.arch, qg.cfg.noise_channels, seed, y0, x0, height, width,
                                  period)  # fmt: skip
    return qg.image(*noises)[:, :, cy : cy + height, cx : cx + width]


@torch.no_grad()
def refit_potentials(
    qg: IntegerGenerator,
    samples: int = 96,
    size: int = 128,
    steps: int = 30,
    seed: int = 0,
    levels_of=None,
) -> IntegerGenerator:
    """Every projection stage's potentials psi fitted again, warm-started from the float
    model's, to the integer network's own output as the stages before it leave it (the same
    targets): psi makes a projection the optimal transport map from the distribution of the
    patches it receives, and the quantised network's patches are not quite the float network's.
    As train.train_generator.fit_projection does it (averaged ascent, `samples` windows of
    size^2 at noise seeds far from users', coarse stages first: each on its rounded block means,
    then applied to the windows), in place. `levels_of(noises)` computes the network's levels
    (default: `qg.levels`, the reference; export/integer.py passes onnxruntime on the integer
    graph, the same numbers faster)."""
    from tilegen.noise import tile_noise
    from train.patch_ot import SemiDiscreteOT, extract_patches

    if qg.targets is None:
        return qg
    gen = torch.Generator().manual_seed(seed)
    windows = []
    for s in torch.randint(2**20, 2**31, (samples,), generator=gen).tolist():
        noises, (at, _) = tile_noise(qg.arch, qg.cfg.noise_channels, s, 0, 0, size, size)
        lv = torch.as_tensor(levels_of(noises)) if levels_of else qg.levels(*noises)
        windows.append((lv.double(), at + qg.arch.tr))

    def refit(targets: np.ndarray, bias: np.ndarray, images) -> np.ndarray:
        y = torch.from_numpy(targets.astype(np.float32)) / 255.0
        ot = SemiDiscreteOT(y)
        y2 = (targets.astype(np.int64) ** 2).sum(1)
        ot.psi = torch.from_numpy((y2 - 2 * bias).astype(np.float32)) / 255.0**2
        for image in images:
            patches = extract_patches((image / 255.0).float(), PatchProjection.PATCH,
                                      periodic=False)  # fmt: skip
            ot.ascend(patches, steps, 1.0, 4096, gen)
        return half_bias(y2, ot.psi.double().numpy() * 255.0**2)

    for stage in qg.stages:
        pooled = (block_sums(lv, stage)[1] for lv, _ in windows)
        stage.bias = refit(stage.targets, stage.bias, pooled)
        windows = [(coarse_levels(lv, stage), at - stage.crop_out) for lv, at in windows]
    # the final stage sees output pixels [0, size)^2
    qg.bias = refit(
        qg.targets, qg.bias, (lv[:, :, a : a + size, a : a + size] for lv, a in windows)
    )
    return qg


def quantize_generator(
    model: TextureGenerator, log=lambda message: None, fit_samples: int = 96
) -> IntegerGenerator:
    """`calibrate`, then `refit_potentials` on `fit_samples` windows with onnxruntime on the
    integer network: what `tilegen export --integer` does (1-2 minutes on one core)."""
    import time

    t = time.perf_counter()
    qg = calibrate(model)
    log(f"quantised the network to 8 bits in {time.perf_counter() - t:.0f} s")
    if qg.targets is not None:
        from export.integer import levels_session

        t = time.perf_counter()
        refit_potentials(qg, samples=fit_samples, levels_of=levels_session(qg))
        log(f"fitted the projection's potentials to it in {time.perf_counter() - t:.0f} s")
    return qg
