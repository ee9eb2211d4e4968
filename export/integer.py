"""The integer-exact windowed graph of a quantised generator (train/quantize.py), built node by
node: the same inputs, output and window arithmetic as the float export (docs/FORMAT.md sections
2-4), so the tiler, the self-contained wrapper and every reader of format version 2 use it as
they use a float file.

Every convolution is written in the standard QDQ form,

    DequantizeLinear(x) , DequantizeLinear(w int8, per filter) , DequantizeLinear(b int32)
        -> Conv -> QuantizeLinear(y)  -> DequantizeLinear -> LeakyRelu(13107/2^16) -> QuantizeLinear

with power-of-two scales only. onnxruntime fuses each convolution into QLinearConv and each
activation into a lookup table (QLinearLeakyRelu), integer kernels that use this CPU's int8
instructions; a runtime that does not fuse them runs the float32 operators on values that are
exact multiples of their scales, where every sum stays below 2^24 (train/quantize.py checks it):
exactly the same numbers either way, and halves round to even in both (ONNX's QuantizeLinear).
The noise is quantised first (QuantizeLinear by 2^-8), the upsampling is Resize (nearest) on
uint8, the joins' residual is float32 on exact values (a Resize (linear) with weights 1/4, 3/4).

The projection scores uint8 patch rows against int8 columns 127 - y_j with MatMulInteger (int32,
exact; the bias joins the product as a few constant columns, `bias_digits`) in a Loop over
chunks of rows (export/chunked.py), takes the first argmin in blocks, and overlap-adds the
chosen patches, divided by 1020 (a correctly rounded Div): the graph's output is float32 in
[0, 1] as before. Coarse projection stages before it (`_coarse_stage`) use the same projection
(`_project`) on block means rounded to whole levels, and add the change back upsampled by a
transposed convolution with whole-number weights, rounded to whole levels again.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.chunked import CHUNK_ROWS, _loop_nodes, integer_scores, keyed_fits
from tilegen.contract import ModelInfo
from train.generator import PatchProjection
from train.quantize import LEAK, IntegerGenerator, IntegerStage, QConv, QParams, upsample_kernel

ARITHMETIC_VERSION = 1


def arithmetic(qg: IntegerGenerator) -> dict:
    """The `tilegen.arithmetic` metadata of an integer model (docs/FORMAT.md section 11)."""
    return {
        "kind": "integer",
        "version": ARITHMETIC_VERSION,
        "activations": "uint8, one power-of-two scale and zero point a tensor",
        "weights": "int8, one power-of-two scale a filter",
        "leaky_slope": [13107, 65536],
        "noise": "QuantizeLinear(z, 2^-8, 0)",
        "levels": "the last convolution's output: whole 8-bit levels",
        "projection": "MatMulInteger scores" if qg.targets is not None else None,
        # the pooling factors of the coarse projection stages before the final one
        "coarse_stages": [stage.factor for stage in qg.stages],
    }


def integer_kernel(c: QConv) -> bool:
    """Whether onnxruntime should run this convolution as QLinearConv (int8): only where it is
    faster than its float32 kernel on the same exact values: filters of at least 16 outputs and
    16 inputs per tap (the joins: 2-3x faster); the noise blocks' 3 -> 8 and 8 -> 8 filters run
    2-3x slower in int8 (docs/FORMAT.md, section 11)."""
    o, i = c.weight.shape[:2]
    return o >= 16 and i >= 16


class _Graph:
    """Nodes and initializers with unique names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, dtype, hint: str = "c") -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            n = self.name(hint)
            self.inits.append(numpy_helper.from_array(arr, n))
            self._consts[key] = n
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    # quantisation ----------------------------------------------------------------------------
    def scale(self, q: QParams) -> str:
        return self.const(q.scale, np.float32, "scale")

    def zero(self, q: QParams) -> str:
        return self.const(q.zero, np.uint8, "zero")

    def quantize(self, x: str, q: QParams) -> str:
        return self.op("QuantizeLinear", x, self.scale(q), self.zero(q))

    def dequantize(self, x: str, q: QParams) -> str:
        return self.op("DequantizeLinear", x, self.scale(q), self.zero(q))

    def conv(self, c: QConv, x: str, extra: str | None = None) -> str:
        """QDQ convolution, requantised; then (c.act) the leaky ReLU, plus `extra` (a float
        residual) before its requantisation. Filters of few channels get float32 weights
        instead of DequantizeLinear'd int8 ones (the same exact values): onnxruntime then runs
        its float kernel, which is faster there than QLinearConv (`integer_kernel`)."""
        o = c.weight.shape[0]
        w_scale = (2.0 ** -c.w_exp.astype(np.float64)).astype(np.float32)
        b_scale = (2.0 ** -(c.x.exp + c.w_exp).astype(np.float64)).astype(np.float32)
        if integer_kernel(c):
            w = self.op("DequantizeLinear", self.const(c.weight, np.int8, "w"),
                        self.const(w_scale, np.float32, "w_scale"),
                        self.const(np.zeros(o, np.int8), np.int8, "w_zero"), axis=0)  # fmt: skip
            b = self.op("DequantizeLinear", self.const(c.bias, np.int32, "b"),
                        self.const(b_scale, np.float32, "b_scale"),
                        self.const(np.zeros(o, np.int32), np.int32, "b_zero"), axis=0)  # fmt: skip
            y = self.op("Conv", self.dequantize(x, c.x), w, b)
        else:
            # sum (q - z) v 2^-(e+f) + u 2^-(e+f) = sum q v' + u' with v' = v 2^-(e+f) and
            # u' = (u - z sum v) 2^-(e+f): exact in float32, on the uint8 input cast to float
            # (DequantizeLinear -> Conv would let onnxruntime requantise with scales of its own).
            v = c.weight.astype(np.float64)
            w = self.const(v * b_scale[:, None, None, None], np.float32, "w_f")
            u = c.bias - c.x.zero * c.weight.astype(np.int64).reshape(o, -1).sum(1)
            b = self.const(u * b_scale, np.float32, "b_f")
            y = self.op("Conv", self.op("Cast", x, to=TensorProto.FLOAT), w, b)
        y = self.quantize(y, c.y)
        if c.act is None:
            return y
        a = self.op("LeakyRelu", self.dequantize(y, c.y), alpha=LEAK)
        if extra is not None:
            a = self.op("Add", a, extra)
        return self.quantize(a, c.act)

    def block(self, layers: list[QConv], x: str, extra: str | None = None) -> str:
        for i, c in enumerate(layers):
            x = self.conv(c, x, extra if i == len(layers) - 1 else None)
        return x

    def crop(self, x: str, t: int) -> str:
        """x[:, :, t:-t, t:-t]."""
        return self.op("Slice", x, self.const([t, t], np.int64), self.const([-t, -t], np.int64),
                       self.const([2, 3], np.int64))  # fmt: skip


def _network(g: _Graph, qg: IntegerGenerator, inputs: list[str]) -> str:
    """The network's output: whole 8-bit levels, uint8 (1, C, H, W)."""
    scales2 = g.const([1, 1, 2, 2], np.float32, "x2")
    z = [g.quantize(name, qg.noise_q) for name in inputs]
    h = g.block(qg.blocks[0], z[0])
    for k in range(1, qg.cfg.levels):
        up = g.op("Resize", h, "", scales2, mode="nearest", nearest_mode="floor",
                  coordinate_transformation_mode="asymmetric")  # fmt: skip
        joined = g.op("Concat", up, g.block(qg.blocks[k], z[k]), axis=1)
        extra = None
        if qg.residual:
            weighted = g.op("Mul", g.dequantize(h, qg.level_q[k - 1]),
                            g.const(qg.residual, np.float32))  # fmt: skip
            smooth = g.op("Resize", weighted, "", scales2, mode="linear",
                          coordinate_transformation_mode="half_pixel")  # fmt: skip
            extra = g.crop(smooth, 2)
        h = g.block(qg.joins[k - 1], joined, extra)
    return g.conv(qg.to_image, h)


def _projection(g: _Graph, qg: IntegerGenerator, levels: str, chunk: int) -> str:
    """The projection stages of whole levels, coarse ones first (`_coarse_stage`), then the
    final one: float32 (1, C, H - 2 tr, W - 2 tr) in [0, 1]."""
    for k, stage in enumerate(qg.stages):
        levels = _coarse_stage(g, stage, levels, chunk, f"chunked{k}_")
    if qg.crop:
        levels = g.crop(levels, qg.crop)
    summed = _project(g, qg.targets, qg.bias, levels, chunk, f"chunked{len(qg.stages)}_")
    return g.op("Div", summed, g.const(4.0 * 255.0, np.float32))


def _coarse_stage(g: _Graph, stage: IntegerStage, levels: str, chunk: int, prefix: str) -> str:
    """A coarse stage of whole levels (uint8) to whole levels (uint8), train.quantize's
    `coarse_levels`: float32 on integers below 2^22 (exact in any order), and power-of-two
    QuantizeLinear scales that round halves to even and saturate as torch's round and clamp."""
    f, t = stage.factor, PatchProjection.TRIM
    c = stage.targets.shape[1] // (PatchProjection.PATCH**2)
    x = g.crop(levels, stage.crop_in) if stage.crop_in else levels
    sums = g.op("Conv", g.op("Cast", x, to=TensorProto.FLOAT),
                g.const(np.ones((c, 1, f, f)), np.float32, "block"), group=c,
                strides=[f, f])  # fmt: skip
    pooled = g.quantize(sums, QParams(-2 * (f.bit_length() - 1), 0))  # rint(S / f^2)
    summed = _project(g, stage.targets, stage.bias, pooled, chunk, prefix)
    # the change P(d) - d in units of 1/(4 f^2): f^2 Q - 4 S
    change = g.op("Sub", g.op("Mul", summed, g.const(f * f, np.float32)),
                  g.op("Mul", g.crop(sums, t), g.const(4.0, np.float32)))  # fmt: skip
    kernel = np.broadcast_to(upsample_kernel(f), (c, 1, 2 * f, 2 * f))
    up = g.op("ConvTranspose", change, g.const(kernel, np.float32, "bilinear"), group=c,
              strides=[f, f])  # fmt: skip
    unit = 16 * f**4  # the upsampled change's unit: 1/(4 f^2) x 1/(2f)^2
    base = g.op("Mul", g.op("Cast", g.crop(levels, stage.crop_out), to=TensorProto.FLOAT),
                g.const(unit, np.float32))  # fmt: skip
    total = g.op("Add", base, g.crop(up, f))
    return g.quantize(total, QParams(-(unit.bit_length() - 1), 0))


def _project(
    g: _Graph, targets: np.ndarray, bias: np.ndarray, levels: str, chunk: int, prefix: str
) -> str:
    """A patch projection of whole levels (uint8), every stage's (train.quantize's
    `projected_sums`): the chosen patches overlap-added, TRIM cut: float32 (1, C, H - 4, W - 4)
    sums of 4 whole levels. `prefix` names its Loop's nodes."""
    p, block = PatchProjection.PATCH, 50
    d = targets.shape[1]
    c = d // (p * p)
    # columns 127 - y_j (int8) and the bias as int8 digits (`bias_digits`), J padded to a
    # multiple of `block` with columns that never win
    y = targets.astype(np.int64)
    j = y.shape[0]
    pad = -j % block
    # a padding column scores x.127 + (max bias + 1): above x.(127 - y_j) + e_j for every x
    bias = np.concatenate([bias, np.full(pad, bias.max() + 1)])
    constants, digits = bias_digits(bias)
    weights = np.concatenate(
        [np.concatenate([127 - y.T, np.full((d, pad), 127)], 1), digits], 0
    ).astype(np.int8)
    # rows (N, D + k): every 4x4 patch on the stride-2 grid, then the digits' constant
    # multipliers; the weights' first D rows follow the rows' order of patch values
    rows, hw, order = _patch_rows(g, levels, c, constants)
    weights = np.concatenate([weights[order], weights[d:]])
    score = integer_scores(g.const(weights, np.int8, "columns"))
    bound = 255 * int(np.abs(weights.astype(np.int64)).sum(0).max())  # rows are uint8
    keyed = weights.shape[1] if keyed_fits(bound, weights.shape[1], block) else 0
    index = g.name("chosen")
    g.nodes.extend(_loop_nodes(prefix, rows, "", index, chunk, block, score, keyed))
    return _overlap_add(g, y, c, g.op("Reshape", index, hw))


def _patch_rows(g: _Graph, levels: str, c: int, constants: np.ndarray):
    """(rows, hw, order): rows (N, 16C + k) uint8, every 4x4 patch of `levels` (1, C, H, W)
    on the stride-2 grid and then the k `constants`; hw, the patch grid (h, w) = (H/2 - 1,
    W/2 - 1), N = h w; order, the (channel, row, column) unfold index of each patch column.

    Patch (i, j) is the 2x2 cells (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1) of the image
    cut into 2x2 cells: one Transpose into cells, four Slices and a Concat, only moving bytes,
    where a convolution with one-hot filters multiplied every value (bench/RESULTS.md, "Integer
    model")."""
    i64 = np.int64
    half = g.op("Div", g.op("Gather", g.op("Shape", levels), g.const([2, 3], i64)),
                g.const([2], i64))  # fmt: skip
    first = g.op("Slice", half, g.const([0], i64), g.const([1], i64))
    second = g.op("Slice", half, g.const([1], i64), g.const([2], i64))
    split = g.op("Concat", g.const([c], i64), first, g.const([2], i64), second,
                 g.const([2], i64), axis=0)  # (C, H/2, 2, W/2, 2)  # fmt: skip
    cells = g.op("Reshape", g.op("Transpose", g.op("Reshape", levels, split), perm=[1, 3, 0, 2, 4]),
                 g.const([0, 0, 4 * c], i64))  # (H/2, W/2, C x 2 x 2)  # fmt: skip
    big = np.iinfo(i64).max
    parts = [
        g.op("Slice", cells, g.const([a, b], i64),
             g.const([big if a else -1, big if b else -1], i64))
        for a in (0, 1) for b in (0, 1)
    ]  # fmt: skip
    hw = g.op("Sub", half, g.const([1], i64))
    k = len(constants)
    parts.append(g.op("Expand", g.const(constants, np.uint8, "constants"),
                      g.op("Concat", hw, g.const([k], i64), axis=0)))  # fmt: skip
    rows = g.op("Reshape", g.op("Concat", *parts, axis=2), g.const([-1, 16 * c + k], i64))
    return rows, hw, patch_order(c)


def patch_order(c: int) -> np.ndarray:
    """The (channel, row, column) unfold index of each patch value in `_patch_rows`' order:
    cells (0, 0), (0, 1), (1, 0), (1, 1), each (channel, row, column) of its 2x2 pixels."""
    return np.array([ch * 16 + (2 * a + r) * 4 + 2 * b + t
                     for a in (0, 1) for b in (0, 1)
                     for ch in range(c) for r in (0, 1) for t in (0, 1)])  # fmt: skip


def _overlap_add(g: _Graph, targets: np.ndarray, c: int, chosen: str) -> str:
    """The sum of the 4 chosen patches over each pixel, TRIM cut: float32 (1, C, 2h - 2,
    2w - 2) of whole levels (sums of 4 at most 1020: exact), from `chosen` (h, w), the index of
    the target patch on each point of the stride-2 grid.

    With 4x4 patches on a stride-2 grid, the 2x2 cell (I, J) of the cut output is covered by
    quadrant (a, b) of the patch at (I + 1 - a, J + 1 - b) for a, b in {0, 1}: four Gathers of
    the targets' uint8 quadrants (4C values each), cast and added on the patch grid, then one
    Transpose into pixels. The same sums as a Transpose of all 16C values to channels and a
    ConvTranspose with one-hot filters, in less time (bench/RESULTS.md, "Integer model")."""
    y = targets.reshape(len(targets), c, 4, 4).astype(np.uint8)
    summed, big = None, np.iinfo(np.int64).max
    for a in (0, 1):
        for b in (0, 1):
            quadrant = y[:, :, 2 * a : 2 * a + 2, 2 * b : 2 * b + 2].reshape(len(targets), -1)
            at = g.op("Slice", chosen, g.const([1 - a, 1 - b], np.int64),
                      g.const([-a or big, -b or big], np.int64))  # fmt: skip
            table = g.const(quadrant, np.uint8, "quadrant")
            part = g.op("Cast", g.op("Gather", table, at, axis=0), to=TensorProto.FLOAT)
            summed = part if summed is None else g.op("Add", summed, part)
    # (h-1, w-1, C*4) -> (h-1, w-1, C, 2, 2) -> (C, h-1, 2, w-1, 2) -> (1, C, 2h-2, 2w-2)
    cells = g.op("Reshape", summed, g.const([0, 0, c, 2, 2], np.int64))
    pixels = g.op("Transpose", cells, perm=[2, 0, 3, 1, 4])
    size = g.op("Mul", g.op("Shape", summed, end=2), g.const([2], np.int64))
    return g.op("Reshape", pixels, g.op("Concat", g.const([1, c], np.int64), size, axis=0))


def bias_digits(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(constants (k,), digits int8 (k, J)) with sum_i constants_i digits_ij = bias_j - centre
    for every j: the score's bias as k more columns of MatMulInteger's product, so that its
    int32 sums are the whole scores and no (N, J) Add follows (a shift by one constant leaves
    each row's argmin unchanged). Digits of 255 (as many as the bias's range needs) and one
    of 1 for the remainder, each in [-127, 127]."""
    centre = (int(bias.max()) + int(bias.min())) // 2
    e = bias.astype(np.int64) - centre
    q = np.round(e / 255.0).astype(np.int64)  # e = 255 q + r, |r| <= 127
    r = e - 255 * q
    n = max(1, -(-int(np.abs(q).max()) // 127))  # digits of 255 splitting q, each |.| <= 127
    parts = [np.sign(q) * np.minimum(np.maximum(np.abs(q) - 127 * i, 0), 127) for i in range(n)]
    digits = np.stack([*parts, r]).astype(np.int8)
    return np.array([255] * n + [1]), digits


def integer_graph(
    qg: IntegerGenerator, info: ModelInfo, chunk_rows: int = CHUNK_ROWS, opset: int = 18
) -> onnx.ModelProto:
    """The windowed ONNX model of an integer generator, with `info`'s metadata (and
    tilegen.arithmetic), checked by onnx's checker; not written anywhere."""
    from export.onnx_export import ir_version_for
    from tilegen.contract import to_metadata

    g = _Graph()
    names = info.input_names()
    levels = _network(g, qg, names)
    if qg.targets is None:
        out = g.op("Div", g.op("Cast", levels, to=TensorProto.FLOAT),
                   g.const(255.0, np.float32))  # fmt: skip
    else:
        out = _projection(g, qg, levels, chunk_rows)
    g.nodes.append(helper.make_node("Identity", [out], ["image"], name="output"))
    c = qg.cfg.noise_channels
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, f"{n}_height", f"{n}_width"])
        for n in names
    ]
    output = helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, [1, qg.cfg.out_channels, "height", "width"]
    )
    graph = helper.make_graph(g.nodes, "tilegen_windowed", inputs, [output], g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = ir_version_for(opset)
    from tilegen import __version__

    proto.producer_name, proto.producer_version = "tilegen", __version__
    proto.doc_string = (
        f"tilegen texture generator ({info.form}), integer-exact (docs/FORMAT.md section 11), "
        f"opset {opset}. Contract: metadata_props tilegen.*, docs/FORMAT.md."
    )
    for k, v in to_metadata(replace(info, arithmetic=arithmetic(qg))).items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(proto)
    return proto


def network_only(qg: IntegerGenerator) -> IntegerGenerator:
    """The same integer network without its projection (its output: the levels / 255)."""
    from dataclasses import replace

    return replace(qg, cfg=replace(qg.cfg, projection=0), targets=None, bias=None, stages=[])


def levels_session(qg: IntegerGenerator, threads: int = 1):
    """noises -> the network's whole levels (numpy float64), by onnxruntime on the integer
    graph: the reference's numbers (the graph is exact), many times faster than torch."""
    from export.onnx_export import session

    net = network_only(qg)
    info = ModelInfo(arch=net.cfg.arch, noise_channels=net.cfg.noise_channels,
                     out_channels=net.cfg.out_channels)  # fmt: skip
    sess = session(integer_graph(net, info), threads)

    def levels_of(noises: list[np.ndarray]) -> np.ndarray:
        feeds = {f"z{k}": np.asarray(z, np.float32) for k, z in enumerate(noises)}
        return np.rint(sess.run(["image"], feeds)[0].astype(np.float64) * 255.0)

    return levels_of


def verify_integer(qg: IntegerGenerator, path, report=None, seed: int = 0):  # -> ParityReport
    """onnxruntime on the integer file at `path` against the reference arithmetic
    (IntegerGenerator.image) on the export's parity windows: every output value must be equal
    (a one-line UserError otherwise)."""
    from export.onnx_export import PARITY_CASES, ParityReport, _info_of, session
    from tilegen.errors import UserError
    from tilegen.model import noise_feeds

    report = report or ParityReport()
    info = _info_of(path)
    sess = session(path)
    p = 2 * info.arch.stride
    cases = [(origin, size, None) for origin, size in PARITY_CASES]
    cases.append(((-p // 2, 3), (p, p), (p, p)))
    for (y0, x0), (h, w), period in cases:
        feeds, _ = noise_feeds(info, seed, y0, x0, h, w, period)
        got = sess.run(["image"], feeds)[0]
        want = qg.image(*feeds.values()).numpy()
        what = f"tile {h}x{w} at ({y0}, {x0})" + (f", period {p}x{p}" if period else "")
        if got.shape != want.shape or not np.array_equal(got, want):
            d = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            raise UserError(
                f"integer check failed: onnxruntime differs from the reference arithmetic by "
                f"{d:.3g} on {what} (it must be exact)"
            )
        report.cases.append((what + " vs the integer reference", 0.0))
    return report


def float_deviation(model, qg: IntegerGenerator, size: int = 256, seed: int = 0) -> float:
    """Mean |difference| in 8-bit levels between the float network's output (rounded) and the
    integer network's on one size^2 window: how far quantisation moved the network."""
    import torch

    from export.onnx_export import prepared
    from tilegen.noise import tile_noise
    from train.generator import without_projection

    net = without_projection(prepared(model))
    noises, _ = tile_noise(qg.arch, qg.cfg.noise_channels, seed, 0, 0, size, size)
    with torch.no_grad():
        f = net(*[torch.from_numpy(z) for z in noises])
    f = torch.round(f.clamp(0, 1) * 255).double()
    return float((f - qg.levels(*noises)).abs().mean())


def export_integer_verified(
    model,
    info: ModelInfo,
    path,
    *,
    opset: int = 18,
    overwrite: bool = False,
    log=lambda message: None,
    fit_samples: int = 96,
):
    """`tilegen export --integer`: quantise `model` (train/quantize.py), write its integer
    graph in `info.form`, check onnxruntime against the reference arithmetic (exact) and, for
    the self-contained form, its tiles against the tiler's (exact), then move it into place
    with its sidecar. Returns (proto, ParityReport, the mean level deviation from the float
    network)."""
    from pathlib import Path

    from export.onnx_export import (
        ParityReport,
        _check_outputs,
        verify_self_contained,
        write_verified,
    )
    from tilegen.errors import UserError
    from train.quantize import quantize_generator

    path = Path(path)
    _check_outputs(path, overwrite)
    try:
        qg = quantize_generator(model, log, fit_samples)
    except ValueError as e:
        raise UserError(f"cannot export an integer model: {e}")
    plain = replace(info, form="windowed", tile=None, period=None)
    windowed = integer_graph(qg, plain, opset=opset)
    proto = windowed
    if info.form == "self-contained":
        from export.self_contained import build_self_contained

        proto = build_self_contained(windowed, replace(info, arithmetic=arithmetic(qg)),
                                     info.tile, info.period)  # fmt: skip

    def check(file: Path, windowed_file: Path) -> tuple[ParityReport, float]:
        report = verify_integer(qg, windowed_file, ParityReport())
        if info.form == "self-contained":
            verify_self_contained(None, file, windowed, tile_tol=0.0, report=report)
        return report, float_deviation(model, qg)

    report, deviation = write_verified(path, proto, windowed, check)
    return proto, report, deviation
