"""Reading and describing a tilegen .onnx file with `onnx` alone (no torch, no onnxruntime).

`load` validates a file the way every consumer should: readable protobuf (a truncated file is
refused: writers put tilegen.format_version as the LAST metadata entry, the last field of the
file, so any cut loses it or breaks the message), tilegen metadata of a format this tilegen reads
(tilegen/contract.py), a graph that passes onnx's checker, and the inputs/outputs its form
promises. Every problem is a one-line UserError.

`describe` gives what `tilegen inspect` prints: the metadata, the parameters, the convolution cost
per level (multiply-accumulates counted from each Conv's weight initializer and its output size,
which is propagated from the noise windows of tilegen.windows.axis_window through the graph), and
the noise windows a given output tile needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from tilegen.contract import FORMAT_VERSION, PREFIX, ModelInfo, check_model_file, from_metadata
from tilegen.errors import UserError, one_line
from tilegen.windows import axis_window, level_periods

REFERENCE_TILE = 1024  # output tile the per-megapixel cost is quoted at (window halo included)


@dataclass
class Inspected:
    path: str
    proto: onnx.ModelProto
    info: ModelInfo
    metadata: dict[str, str]  # the tilegen.* entries, verbatim


def expected_inputs(info: ModelInfo) -> list[str]:
    return info.graph_inputs()


def load(path: str | os.PathLike) -> Inspected:
    """Parse and validate a tilegen .onnx file; one-line UserError for anything unusable."""
    p = check_model_file(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # google.protobuf DecodeError and friends
        raise UserError(f"{p} is not a readable ONNX model (truncated or damaged: {one_line(e)})")
    props = {e.key: e.value for e in proto.metadata_props}
    if not proto.graph.node and not props:
        raise UserError(f"{p} is not an ONNX model (no graph, no metadata)")
    info = from_metadata(props, source=str(p))  # foreign / truncated / newer / damaged metadata
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        raise UserError(f"{p} is a damaged ONNX model ({one_line(e)}): re-export it")
    ins = [i.name for i in proto.graph.input]
    outs = [o.name for o in proto.graph.output]
    if ins != expected_inputs(info) or outs != info.graph_outputs():
        raise UserError(
            f"{p}: graph inputs {ins} / outputs {outs} do not match its {info.form!r} metadata "
            f"({expected_inputs(info)} / {info.graph_outputs()}): re-export the model"
        )
    meta = {k: v for k, v in props.items() if k.startswith(PREFIX)}
    return Inspected(str(p), proto, info, meta)


# --- cost: propagate spatial sizes from the noise windows through the graph ---------------------


@dataclass
class ConvCost:
    name: str
    level: int
    params: int
    macs_per_pixel: int  # per pixel of this conv's output
    out_hw: tuple[int, int]  # for the evaluated window

    @property
    def macs(self) -> int:
        return self.macs_per_pixel * self.out_hw[0] * self.out_hw[1]


_SAME_SHAPE = {
    "LeakyRelu", "Relu", "Identity", "Sigmoid", "Tanh", "Clip", "Elu", "Selu", "PRelu",
    "Add", "Mul", "Sub", "Div", "Cast", "HardSigmoid", "Softplus", "Abs", "Neg",
    "QuantizeLinear", "DequantizeLinear",  # the integer model (docs/FORMAT.md section 11)
}  # fmt: skip


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def conv_costs(inspected: Inspected, y0: int, x0: int, h: int, w: int) -> list[ConvCost]:
    """Every Conv of the generator with its level and output size for output tile (y0, x0, h, w).

    Shapes (C, H, W) start at the tensors z0..z{K-1} (the windowed inputs, or the noise the
    self-contained graph computes) and follow Conv, Resize, Concat and elementwise nodes; a
    node's level is the finest z it depends on."""
    proto, info = inspected.proto, inspected.info
    arch = info.arch
    init = {t.name: t for t in proto.graph.initializer}
    ay, ax = axis_window(arch, y0, h), axis_window(arch, x0, w)
    shape: dict[str, tuple[int, int, int]] = {}
    level: dict[str, int] = {}
    for k in range(arch.levels):
        shape[f"z{k}"] = (info.noise_channels, ay.noise[k][1], ax.noise[k][1])
        level[f"z{k}"] = k

    made_by = {o: n for n in proto.graph.node for o in n.output}

    def const(name: str) -> np.ndarray | None:
        """An initializer, or the int8/int32 initializer an integer model's DequantizeLinear
        reads (its filters and biases)."""
        if name in init:
            return numpy_helper.to_array(init[name])
        node = made_by.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in init:
            return numpy_helper.to_array(init[node.input[0]])
        return None

    costs: list[ConvCost] = []
    for node in proto.graph.node:
        data = [i for i in node.input if i in shape]
        if not data or any(o in shape for o in node.output):
            continue
        lv = max(level[i] for i in data)
        c, hh, ww = shape[data[0]]
        if node.op_type == "Conv" and _attr(node, "strides", [1, 1]) != [1, 1]:
            continue  # the integer model's patch unfolding (stride 2): the projection's cost
        if node.op_type == "Conv":
            wt = const(node.input[1])
            if wt is None or wt.ndim != 4:
                raise UserError(f"{inspected.path}: Conv {node.name} has no constant weight")
            m, cg, kh, kw = wt.shape
            pads = _attr(node, "pads", [0, 0, 0, 0])
            st = _attr(node, "strides", [1, 1])
            dil = _attr(node, "dilations", [1, 1])
            oh = (hh + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // st[0] + 1
            ow = (ww + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // st[1] + 1
            n_params = int(wt.size) + (
                int(const(node.input[2]).size) if len(node.input) > 2 and node.input[2] else 0
            )
            costs.append(ConvCost(node.name or node.output[0], lv, n_params, m * cg * kh * kw,
                                  (oh, ow)))  # fmt: skip
            out = (m, oh, ow)
        elif node.op_type in ("Resize", "Upsample"):
            scales = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            sizes = const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            if node.op_type == "Upsample":
                scales = const(node.input[1])
            if sizes is not None and sizes.size:
                out = (c, int(sizes[2]), int(sizes[3]))
            elif scales is not None and scales.size == 4:
                out = (c, int(hh * scales[2]), int(ww * scales[3]))
            else:
                raise UserError(f"{inspected.path}: cannot size Resize {node.name}")
        elif node.op_type == "Concat":
            if _attr(node, "axis", 1) != 1 or len(data) != len(node.input):
                raise UserError(f"{inspected.path}: unexpected Concat {node.name}")
            out = (sum(shape[i][0] for i in data), hh, ww)
        elif node.op_type in _SAME_SHAPE:
            out = (c, hh, ww)
        else:
            continue  # e.g. the self-contained crop: nothing to count past it
        for o in node.output:
            shape[o], level[o] = out, lv
    return costs


def projection_cost(inspected: Inspected) -> dict | None:
    """The patch projection (format 2): J exemplar patches of D values, one J x D product per
    patch, patches on a stride-2 grid (a quarter of the pixels); coarse stages before it score
    the image pooled by f, a 1/f^2 share of the patches each (`pooled_by`, coarse first). None
    without one."""
    if not inspected.info.arch.tr:
        return None
    init = {t.name: list(t.dims) for t in inspected.proto.graph.initializer}
    nodes = inspected.proto.graph.node
    d = next(
        (init[n.input[1]][0] for n in nodes if n.op_type == "ConvTranspose" and n.input[1] in init),
        None,
    )  # patches -> pixels: D values a patch
    # The chosen patches are gathered from each stage's (J, D) table of exemplar patches, in
    # stage order; an integer model (no ConvTranspose) gathers four (J, D/4) quadrant tables a
    # stage (export/integer.py, `_overlap_add`). Each coarse stage pools its input once
    # (AveragePool, kernel f x f).
    tables = [
        init[n.input[0]]
        for n in nodes
        if n.op_type in ("Gather", "GatherND") and len(init.get(n.input[0], [])) == 2
    ]
    quads = [tables[i : i + 4] for i in range(0, len(tables), 4)]
    if d is None and tables and all(len(q) == 4 and q.count(q[0]) == 4 for q in quads):
        d, tables = 4 * tables[0][1], [q[0][0] for q in quads]
    else:
        tables = [t[0] for t in tables if t[-1] == d]
    pools = [_attr(n, "kernel_shape", [1])[0] for n in nodes if n.op_type == "AveragePool"]
    if not pools:  # an integer model sums its coarse stages' blocks by a Conv
        pools = list((inspected.info.arithmetic or {}).get("coarse_stages") or [])
    if d and tables and len(tables) == len(pools) + 1:
        factors = pools + [1]
        macs = sum(j * d * 1e6 / 4 / f**2 for j, f in zip(tables, factors))
        chunked = any(n.op_type == "Loop" for n in nodes)  # export/chunked.py
        out = {"targets": tables[-1], "patch_values": d, "macs_per_mp": macs, "chunked": chunked}
        return out | ({"pooled_by": pools} if pools else {})
    raise UserError(f"{inspected.path}: format 2 model without its projection product")


def describe(inspected: Inspected, tile: tuple[int, int, int, int] | None = None) -> dict:
    """What `tilegen inspect` prints, as a JSON-able dict."""
    info = inspected.info
    arch = info.arch
    if tile is None:
        th, tw = info.tile if info.tile else (REFERENCE_TILE, REFERENCE_TILE)
        tile = (0, 0, th, tw)
    y0, x0, h, w = tile
    if h < 1 or w < 1:
        raise UserError(f"--tile {y0} {x0} {h} {w}: the size must be positive")
    costs = conv_costs(inspected, y0, x0, h, w)
    ay, ax = axis_window(arch, y0, h), axis_window(arch, x0, w)
    mp = h * w / 1e6
    levels = []
    for k in range(arch.levels):
        mine = [c for c in costs if c.level == k]
        scale = 4 ** (arch.levels - 1 - k)  # level-k pixels per output pixel: 1 / scale
        levels.append(
            {
                "level": k,
                "convs": len(mine),
                "params": sum(c.params for c in mine),
                "noise_window": [list(ay.noise[k]), list(ax.noise[k])],
                "macs_tile": sum(c.macs for c in mine),
                "macs_per_mp_tile": sum(c.macs for c in mine) / mp,
                "macs_per_mp_large": sum(c.macs_per_pixel for c in mine) * 1e6 / scale,
            }
        )
    periods = None
    if info.period:
        py, px = level_periods(arch, info.period[0]), level_periods(arch, info.period[1])
        periods = [[a, b] for a, b in zip(py, px)]
    total_tile = sum(lv["macs_per_mp_tile"] for lv in levels)
    total_large = sum(lv["macs_per_mp_large"] for lv in levels)
    float_params = sum(
        int(np.prod(t.dims)) for t in inspected.proto.graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                           onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    )  # fmt: skip
    return {
        "path": inspected.path,
        "file_bytes": os.path.getsize(inspected.path),
        "metadata": inspected.metadata,
        "form": info.form,
        "opset": max(
            (o.version for o in inspected.proto.opset_import if o.domain in ("", "ai.onnx")),
            default=0,
        ),
        "ir_version": inspected.proto.ir_version,
        "inputs": [_io(v) for v in inspected.proto.graph.input],
        "outputs": [_io(v) for v in inspected.proto.graph.output],
        "stride": arch.stride,
        "model_tile": list(info.tile) if info.tile else None,
        "params_conv": sum(c.params for c in costs),
        "params_float": float_params,
        "convs": len(costs),
        "macs_per_mp_large": total_large,
        "flops_per_mp_large": 2 * total_large,
        "projection": projection_cost(inspected),
        "tile": {
            "y0": y0,
            "x0": x0,
            "height": h,
            "width": w,
            "out_window": [[ay.out_start, ay.out_size], [ax.out_start, ax.out_size]],
            "crop": [ay.crop, ax.crop],
            "macs_per_mp": total_tile,
            "flops_per_mp": 2 * total_tile,
            "level_periods": periods,
        },
        "levels": levels,
    }


def _io(v: onnx.ValueInfoProto) -> str:
    t = v.type.tensor_type
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
            for d in t.shape.dim]  # fmt: skip
    return f"{v.name}: {onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}[{', '.join(dims)}]"


def _g(x: float) -> str:
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g} {unit}"
    return f"{x:.3g} "


def format_text(d: dict) -> str:
    """The human-readable report of `describe`."""
    md = d["metadata"]
    lines = [f"{d['path']}: tilegen {d['form']} model, {d['file_bytes']:,} bytes, "
             f"opset {d['opset']}, IR {d['ir_version']}"]  # fmt: skip
    lines.append("metadata:")
    for k, v in md.items():
        if k == PREFIX + "training":
            try:
                v = json.dumps(json.loads(v), sort_keys=True)
            except ValueError:
                pass
        lines.append(f"  {k} = {v}")
    lines.append("inputs:  " + "; ".join(d["inputs"]))
    lines.append("outputs: " + "; ".join(d["outputs"]))
    lines.append(
        f"parameters: {d['params_conv']:,} in {d['convs']} convolutions "
        f"({d['params_float']:,} float values in the file)"
    )
    lines.append(
        f"cost per output megapixel, large tiles: {_g(d['macs_per_mp_large'])}MACs "
        f"= {_g(d['flops_per_mp_large'])}FLOPs (convolutions only, 1 MAC = 2 FLOPs)"
    )
    if d["projection"]:
        pc = d["projection"]
        lines.append(
            f"patch projection: {pc['targets']:,} exemplar patches of {pc['patch_values']} "
            f"values, {_g(pc['macs_per_mp'])}MACs per output megapixel on top"
        )
        if pc.get("pooled_by"):
            pooled = ", ".join(map(str, pc["pooled_by"]))
            lines[-1] += f" (coarse stages first, on the image pooled by {pooled})"
        if not pc["chunked"]:
            lines.append(
                "  its scores are one product over all patches (an older export: re-export "
                "the .pt with this tilegen for about 1.5x the speed)"
            )
    t = d["tile"]
    (oy, oh), (ox, ow) = t["out_window"]
    lines.append(
        f"tile {t['height']}x{t['width']} at (y0={t['y0']}, x0={t['x0']}): one evaluation of "
        f"output window rows [{oy}, {oy + oh}) x cols [{ox}, {ox + ow}), crop offset "
        f"({t['crop'][0]}, {t['crop'][1]}); {_g(t['macs_per_mp'])}MACs = "
        f"{_g(t['flops_per_mp'])}FLOPs per output megapixel (halo included)"
    )
    lines.append(
        f"  {'level':>5}  {'noise rows [start, +size)':>26}  {'noise cols [start, +size)':>26}"
        f"  {'convs':>5}  {'params':>7}  {'MACs/MP (tile)':>14}  {'MACs/MP (large)':>15}"
    )
    for lv in d["levels"]:
        (ys, hs), (xs, ws) = lv["noise_window"]
        lines.append(
            f"  {lv['level']:>5}  {f'[{ys}, +{hs})':>26}  {f'[{xs}, +{ws})':>26}  "
            f"{lv['convs']:>5}  {lv['params']:>7,}  {_g(lv['macs_per_mp_tile']):>14}  "
            f"{_g(lv['macs_per_mp_large']):>15}"
        )
    if d["form"] == "self-contained" and d["model_tile"] is None:
        lines.append("dynamic tile size: inputs height, width; period_y, period_x (0: none)")
    elif d["form"] == "self-contained" and [t["height"], t["width"]] != d["model_tile"]:
        mh, mw = d["model_tile"]
        lines.append(f"note: this file returns {mh}x{mw} tiles; the windows above are for the "
                     f"{t['height']}x{t['width']} tile asked for")  # fmt: skip
    if t["level_periods"]:
        per = ", ".join(f"{py}x{px}" for py, px in t["level_periods"])
        lines.append(f"periodic: level noise coordinates wrap modulo {per} (levels 0..)")
    lines.append(f"windows follow the upsampling grid: stride {d['stride']} px (tilegen.windows)")
    return "\n".join(lines)


__all__ = ["FORMAT_VERSION", "Inspected", "load", "describe", "format_text", "conv_costs"]
