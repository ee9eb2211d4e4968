"""The `--self-contained` form: an ONNX graph that computes its own noise and returns one tile.

A windowed tilegen model (export/onnx_export.py) takes the noise windows z0..z{K-1} as inputs; a
runtime must then implement the tilegen-hash32 noise (docs/NOISE.md) and the window arithmetic
(tilegen/windows.py) itself. The self-contained form moves both into the graph:

    inputs   seed  int64 scalar (taken modulo 2**32; pass 0 <= seed < 2**32)
             y0    int64 scalar, top row of the tile in the texture's global pixel frame
             x0    int64 scalar, left column (any sign: the texture is infinite)
    output   image float32 [1, C_out, H, W]: output pixels [y0, y0+H) x [x0, x0+W)

Two variants. The fixed-tile form (`tile` given): H, W (metadata tilegen.tile) and, for periodic
textures, the period (tilegen.period, [py, px] in full-resolution pixels, multiples of the model's
stride 2^(K-1)) are fixed at export. The dynamic form (`tile` None, format version 2) takes them
as inputs too, and returns its contract as a second output (for runtimes that cannot read
metadata_props, such as onnxruntime's JavaScript API):

    inputs   seed, y0, x0 as above; height, width (int64 scalars >= 1): the tile size;
             period_y, period_x (int64 scalars): the output period, 0 = not periodic
    outputs  image    float32 [1, C_out, height, width]
             contract uint8 [N]: UTF-8 JSON of tilegen.contract.runtime_contract

The result
is the tiler's tile for the same (seed, y0, x0): the graph computes the same windows as
tilegen.windows.axis_window (Python floor division, done as (a - mod(a, s)) / s because ONNX's
integer Div truncates), fills them with the same uint32 operations as tilegen.noise.noise_window
(BitShift, BitwiseXor and wrapping Mul on uint32, opset >= 18), runs the unchanged generator
graph on windows of the same sizes and crops. In onnxruntime it is bit-identical to the windowed
path (tested).

This module needs only `onnx`: it rewires an exported windowed graph, it never calls torch.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tilegen.contract import CONTRACT_OUTPUT, ModelInfo, runtime_contract, to_metadata
from tilegen.errors import UserError
from tilegen.noise import NOISE_SPEC
from tilegen.windows import Arch, level_periods

M1, M2 = 0x7FEB352D, 0x846CA68B  # lowbias32 multipliers (tilegen/noise.py)
MIN_OPSET = 18  # BitwiseXor
WINDOW = "window"  # the generator's uncropped output inside the self-contained graph


class _Builder:
    """Appends nodes and constants with unique names under one prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}{hint}_{self._n}"

    def const(self, value, dtype) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self._name("c")
            self.inits.append(numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def i64(self, v) -> str:
        return self.const(v, np.int64)

    def u32(self, v) -> str:
        return self.const(v, np.uint32)

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    # int64 scalar arithmetic ------------------------------------------------------------
    def add(self, a: str, b: str) -> str:
        return self.op("Add", a, b)

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", a, b)

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", a, b)

    def mod(self, a: str, b: str) -> str:
        """Python-style modulo (sign of the divisor): ONNX Mod with fmod=0."""
        return self.op("Mod", a, b, fmod=0)

    def floordiv(self, a: str, s: int) -> str:
        """Python's a // s for s > 0 (ONNX integer Div truncates towards zero)."""
        r = self.mod(a, self.i64(s))
        return self.op("Div", self.sub(a, r), self.i64(s))

    # the tilegen-hash32 mix ----------------------------------------------------------------
    def mix32(self, h: str) -> str:
        """lowbias32 on uint32: h ^= h >> 16; h *= M1; h ^= h >> 15; h *= M2; h ^= h >> 16."""
        for shift, mult in ((16, M1), (15, M2), (16, None)):
            h = self.op("BitwiseXor", h, self.op("BitShift", h, self.u32(shift), direction="RIGHT"))
            if mult is not None:
                h = self.op("Mul", h, self.u32(mult))  # wraps modulo 2^32
        return h

    def to_u32(self, v: str) -> str:
        """int64 -> its low 32 bits as uint32 (two's complement), exactly, in any runtime."""
        return self.op("Cast", self.mod(v, self.i64(2**32)), to=TensorProto.UINT32)


def _axis(b: _Builder, arch: Arch, start: str, size: int | str):
    """In-graph tilegen.windows.axis_window: per-level noise (start, size) and the crop offset,
    as int64 scalar tensors. `size` is a number (fixed tile) or an int64 scalar tensor's name."""
    s, tj, tr = arch.stride, arch.tj, arch.tr
    offset, shrink = tj * (s - 1) + tr, 2 * tj * (s - 1) + 2 * tr
    q = b.floordiv(b.sub(start, b.i64(offset)), s)  # Y_0
    out_start = b.add(b.mul(q, b.i64(s)), b.i64(offset))
    crop = b.sub(start, out_start)
    size = b.i64(size) if isinstance(size, int) else size
    need = b.add(crop, size)  # >= 1, so Div is a floor: ceil(m / s) = (m + s - 1) / s
    o0 = b.op("Div", b.add(need, b.i64(shrink + s - 1)), b.i64(s))
    o0 = b.op("Max", o0, b.i64(2 * tj))
    noise = [(b.sub(q, b.i64(arch.t0)), b.add(o0, b.i64(2 * arch.t0)))]
    pad = tj + arch.tb
    for k in range(1, arch.levels):
        f = 2**k  # Y_k = f Y_0 + tj (f - 1), O_k = f O_0 - 2 tj (f - 1)
        yk = b.add(b.mul(q, b.i64(f)), b.i64(tj * (f - 1) - pad))
        ok = b.add(b.mul(o0, b.i64(f)), b.i64(-2 * tj * (f - 1) + 2 * pad))
        noise.append((yk, ok))
    return noise, crop


def _coords(b: _Builder, start: str, size: str, period: int | str | None, shape: list[int]) -> str:
    """uint32 coordinates start .. start+size-1 (wrapped modulo `period`), reshaped. A `period`
    tensor (int64 scalar) wraps only where it is positive."""
    c = b.op("Range", start, b.add(start, size), b.i64(1))
    if isinstance(period, int):
        c = b.mod(c, b.i64(period))
    elif period is not None:
        wrapped = b.mod(c, b.op("Max", period, b.i64(1)))  # never Mod by 0
        c = b.op("Where", b.op("Greater", period, b.i64(0)), wrapped, c)
    return b.op("Reshape", b.to_u32(c), b.i64(shape))


def _level_periods(b: _Builder, arch: Arch, period: str) -> list[str]:
    """In-graph level_periods for a period input P (0: not periodic): P / 2^(K-1-k), or 0."""
    positive = b.op("Max", period, b.i64(0))
    return [b.op("Div", positive, b.i64(2 ** (arch.levels - 1 - k))) for k in range(arch.levels)]


def noise_subgraph(
    b: _Builder,
    arch: Arch,
    channels: int,
    tile: tuple[int | str, int | str],
    period: tuple[int, int] | tuple[str, str] | None,
    seed: str,
    y0: str,
    x0: str,
) -> tuple[list[str], str, str]:
    """Nodes computing z0..z{K-1} (float32 [1, C, H_k, W_k]) for the tile at (y0, x0), and the
    crop offsets (cy, cx). Output tensors are named z0..z{K-1}. Tile sides and period are numbers
    (fixed at export) or int64 scalar tensor names (inputs; a period of 0 does not wrap)."""
    ny, cy = _axis(b, arch, y0, tile[0])
    nx, cx = _axis(b, arch, x0, tile[1])
    if period is None:
        periods = [(None, None)] * arch.levels
    elif isinstance(period[0], str):
        periods = list(zip(_level_periods(b, arch, period[0]), _level_periods(b, arch, period[1])))
    else:
        periods = list(zip(level_periods(arch, period[0]), level_periods(arch, period[1])))
    seed_h = b.mix32(b.to_u32(seed))
    chans = b.u32(np.arange(channels).reshape(channels, 1, 1))
    names = []
    for k in range(arch.levels):
        base = b.mix32(b.op("BitwiseXor", seed_h, b.u32(k)))
        chan = b.mix32(b.op("BitwiseXor", base, chans))  # (C, 1, 1)
        ys = _coords(b, *ny[k], periods[k][0], [1, -1, 1])
        xs = _coords(b, *nx[k], periods[k][1], [1, 1, -1])
        row = b.mix32(b.op("BitwiseXor", chan, ys))  # (C, H, 1)
        h = b.mix32(b.op("BitwiseXor", row, xs))  # (C, H, W)
        top = b.op("Cast", b.op("BitShift", h, b.u32(8), direction="RIGHT"), to=TensorProto.FLOAT)
        value = b.op("Mul", top, b.const(2.0**-24, np.float32))  # exact: top < 2^24
        names.append(b.op("Unsqueeze", value, b.i64([0]), out=f"z{k}"))
    return names, cy, cx


def build_self_contained(
    windowed: onnx.ModelProto,
    info: ModelInfo,
    tile: tuple[int, int] | None,
    period: tuple[int, int] | None = None,
) -> onnx.ModelProto:
    """The self-contained model around a windowed tilegen graph (inputs z0.., output "image"):
    the fixed-tile form for a `tile` (H, W), the dynamic form (tile size and period as inputs)
    for `tile` None."""
    arch = info.arch
    dynamic = tile is None
    tile, period = _check_request(windowed, info, tile, period)
    meta_info = replace(info, form="self-contained", tile=tile, period=period)
    names = meta_info.graph_inputs()
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, []) for n in names]
    b = _Builder("noise/")
    if dynamic:
        size, per = ("height", "width"), ("period_y", "period_x")
    else:
        size, per = tile, period
    _, cy, cx = noise_subgraph(b, arch, info.noise_channels, size, per, "seed", "y0", "x0")
    gen = _generator_graph(windowed)
    c = _Builder("crop/")
    outputs = _crop_outputs(c, meta_info, size, cy, cx)
    _check_names(b, c, gen, info, names)

    graph = helper.make_graph(
        b.nodes + list(gen.node) + c.nodes,
        "tilegen_self_contained",
        inputs,
        outputs,
        initializer=b.inits + list(gen.initializer) + c.inits,
    )
    graph.doc_string = _graph_doc(tile, period)
    model = helper.make_model(
        graph,
        opset_imports=list(windowed.opset_import),
        ir_version=windowed.ir_version,
        producer_name=windowed.producer_name,
        producer_version=windowed.producer_version,
    )
    model.functions.extend(windowed.functions)
    model.doc_string = windowed.doc_string.replace("(windowed)", "(self-contained)")
    for k, v in to_metadata(meta_info).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    return model


def _check_request(
    windowed: onnx.ModelProto,
    info: ModelInfo,
    tile: tuple[int, int] | None,
    period: tuple[int, int] | None,
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(tile, period) as ints, or UserError naming the option that cannot be built; ValueError
    if `windowed` is not a windowed tilegen graph."""
    if tile is None and period is not None:
        raise UserError(
            "--period belongs to the fixed-tile form (--tile H W): the dynamic form takes the "
            "period as its inputs period_y, period_x"
        )
    if tile is not None:
        tile = (int(tile[0]), int(tile[1]))
        if tile[0] < 1 or tile[1] < 1:
            raise UserError(f"--tile {tile[0]} {tile[1]}: both sides must be positive")
    if period is not None:
        period = (int(period[0]), int(period[1]))
        try:
            level_periods(info.arch, period[0]), level_periods(info.arch, period[1])
        except ValueError as e:
            raise UserError(f"--period {period[0]}x{period[1]}: {e}")
    opset = max(o.version for o in windowed.opset_import if o.domain in ("", "ai.onnx"))
    if opset < MIN_OPSET:
        raise UserError(
            f"the self-contained form needs opset >= {MIN_OPSET} (BitwiseXor), got {opset}"
        )
    gin = [i.name for i in windowed.graph.input]
    if gin != info.input_names() or [o.name for o in windowed.graph.output] != ["image"]:
        raise ValueError(f"not a windowed tilegen graph: inputs {gin}")
    return tile, period


def _generator_graph(windowed: onnx.ModelProto) -> onnx.GraphProto:
    """The generator, unchanged, reading z0.. from the noise nodes; its output renamed WINDOW."""
    gen = onnx.GraphProto()
    gen.CopyFrom(windowed.graph)
    for node in gen.node:
        node.output[:] = [WINDOW if o == "image" else o for o in node.output]
        node.input[:] = [WINDOW if i == "image" else i for i in node.input]
    return gen


def _crop_outputs(
    c: _Builder, meta_info: ModelInfo, size: tuple[int, int] | tuple[str, str], cy: str, cx: str
) -> list[onnx.ValueInfoProto]:
    """Nodes cropping WINDOW at (cy, cx) to `size` as "image" (and, for the dynamic form, the
    contract output); the graph's output declarations."""
    starts = c.op(
        "Concat", c.op("Unsqueeze", cy, c.i64([0])), c.op("Unsqueeze", cx, c.i64([0])), axis=0
    )
    if meta_info.dynamic:
        sizes = c.op("Concat", *(c.op("Unsqueeze", n, c.i64([0])) for n in size), axis=0)
    else:
        sizes = c.i64(list(size))
    ends = c.add(starts, sizes)
    c.op("Slice", WINDOW, starts, ends, c.i64([2, 3]), out="image")
    outputs = [
        helper.make_tensor_value_info(
            "image", TensorProto.FLOAT, [1, meta_info.out_channels, *size]
        )
    ]
    if meta_info.dynamic:  # the contract, for runtimes that cannot read metadata_props
        doc = json.dumps(runtime_contract(meta_info)).encode()
        c.op("Identity", c.const(np.frombuffer(doc, np.uint8), np.uint8), out=CONTRACT_OUTPUT)
        outputs.append(
            helper.make_tensor_value_info(CONTRACT_OUTPUT, TensorProto.UINT8, [len(doc)])
        )
    return outputs


def _check_names(
    b: _Builder, c: _Builder, gen: onnx.GraphProto, info: ModelInfo, names: list[str]
) -> None:
    """ValueError if a noise or crop tensor would shadow one of the generator's."""
    ours = {n.output[0] for n in b.nodes + c.nodes} | {t.name for t in b.inits + c.inits}
    theirs = {o for n in gen.node for o in n.output} | {t.name for t in gen.initializer}
    clash = (ours - set(info.input_names()) - {"image"}) & theirs
    if clash or set(names) & theirs:
        raise ValueError(f"name clash between noise and generator graphs: {sorted(clash)[:5]}")


def _graph_doc(tile: tuple[int, int] | None, period: tuple[int, int] | None) -> str:
    """The graph's doc_string: what the form computes, for someone reading the ONNX file."""
    if tile is None:
        return (
            f"tilegen self-contained texture tile: {NOISE_SPEC} noise computed in-graph; output "
            "pixels [y0, y0+height) x [x0, x0+width) for the given seed, periodic with period "
            "period_y x period_x when they are positive (multiples of the stride); output "
            "'contract': this model's contract as UTF-8 JSON"
        )
    th, tw = tile
    return (
        f"tilegen self-contained texture tile: {NOISE_SPEC} noise computed in-graph; "
        f"output pixels [y0, y0+{th}) x [x0, x0+{tw}) for the given seed"
        + (f", periodic with period {period[0]}x{period[1]}" if period else "")
    )
