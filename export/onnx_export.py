"""Exporting a trained generator to ONE self-describing .onnx file, and checking it.

The windowed form (the default; what the tiler reads) is the generator graph alone:

    inputs   z0 .. z{K-1}  float32 [1, C_noise, H_k, W_k], dynamic H_k, W_k (the noise windows of
                           tilegen.windows.axis_window, filled by tilegen.noise.noise_window)
    output   image         float32 [1, C_out, H, W], H = 2^(K-1) (H_0 - 2 t0) - 2 tj (2^(K-1) - 1)

It is exported with torch's dynamo exporter (torch.export + onnxscript) with every spatial size
`Dim.AUTO`, BatchNorm folded into the convolutions first (a file with a BatchNormalization node is
refused), its patch projections' scoring rewritten into a Loop over chunks of rows
(export/chunked.py), at opset DEFAULT_OPSET with the lowest IR version of that opset (IR 8 for
opset 18: any onnxruntime >= 1.14 reads it), and written as one file (no external data). Node
metadata (stack traces with local paths) and intermediate shape annotations are dropped;
metadata_props hold the tilegen contract (tilegen/contract.py, docs/FORMAT.md).
`export/self_contained.py` wraps the same graph into the `--self-contained` form.

`verify_parity` runs onnxruntime against torch on noise windows of given output tile sizes and
raises a one-line UserError above PARITY_TOL; `export_verified` (the CLI's `tilegen export`) writes
to a temporary file, verifies, and only then moves the file into place.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from export.chunked import CHUNK_ROWS, chunk_projections
from tilegen import __version__, options
from tilegen.contract import ModelInfo, from_metadata, runtime_contract, to_metadata
from tilegen.errors import UserError, one_line
from tilegen.model import noise_feeds

if TYPE_CHECKING:  # torch is imported where it is used: wrapping an .onnx file needs none
    from train.generator import TextureGenerator

DEFAULT_OPSET = 18  # the oldest opset the self-contained form can use (BitwiseXor)
PARITY_TOL = 1e-4  # max |onnxruntime - torch| an export accepts
TILE_TOL = 1e-6  # max |self-contained - windowed path| an export accepts (bit-identical in ORT)
# Output tiles checked by `tilegen export`: square/aligned, odd/non-square at a negative origin.
PARITY_CASES = (((0, 0), (64, 64)), ((-13, 29), (37, 53)))
SELF_CONTAINED_ORIGINS = ((0, 0), (-37, 101), (1000003, -(2**31) - 5))
# The dynamic form's checks: (size, period) at every origin above.
DYNAMIC_CASES = (((64, 64), None), ((37, 53), None), ((48, 80), (64, 128)))


def ir_version_for(opset: int) -> int:
    """The IR version of the first onnx release with this opset: the oldest readers accept it."""
    for _release, ir, op, *_ in onnx.helper.VERSION_TABLE:
        if op >= opset:
            return ir
    raise UserError(f"opset {opset} is newer than this onnx ({onnx.__version__}) knows")


def prepared(model: TextureGenerator) -> TextureGenerator:
    """A CPU float32 eval-mode copy with its normalisation folded into plain convolutions."""
    import torch

    from train.generator import fold, is_folded

    m = copy.deepcopy(model).to("cpu", torch.float32)
    if not is_folded(m):
        fold(m)
    return m.eval()


def bn_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of BatchNormalization nodes (must be none), functions included."""
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    return [n.name or n.output[0] for n in nodes if n.op_type == "BatchNormalization"]


def _clean(proto: onnx.ModelProto, info: ModelInfo, opset: int) -> onnx.ModelProto:
    """Make the dynamo output small and honest: no stack traces, readable dims, our metadata."""
    import torch

    if proto.functions:  # keep metadata_props the last field of the file (see tilegen/inspect.py)
        proto = onnx.inliner.inline_local_functions(proto)
        del proto.functions[:]
    g = proto.graph
    g.name = "tilegen_windowed"
    for node in list(g.node) + [n for f in proto.functions for n in f.node]:
        del node.metadata_props[:]
        node.doc_string = ""
    del g.value_info[:]  # intermediate shapes in torch's symbols; runtimes infer their own
    names = [i.name for i in g.input]
    if names != info.input_names() or [o.name for o in g.output] != ["image"]:
        raise UserError(f"exported graph has inputs {names}, expected {info.input_names()}")
    for k, inp in enumerate(g.input):
        dims = inp.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") for d in dims[2:]):
            raise UserError("the exporter fixed the spatial sizes: the graph would not be dynamic")
        dims[2].dim_param, dims[3].dim_param = f"z{k}_height", f"z{k}_width"
    out = g.output[0].type.tensor_type.shape.dim
    out[2].dim_param, out[3].dim_param = "height", "width"
    del proto.metadata_props[:]
    for k, v in to_metadata(info).items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    proto.producer_name, proto.producer_version = "tilegen", __version__
    proto.doc_string = (
        f"tilegen texture generator ({info.form}); exported from torch {torch.__version__} "
        f"(dynamo), opset {opset}. Contract: metadata_props tilegen.*, docs/FORMAT.md."
    )
    proto.ir_version = ir_version_for(opset)
    return proto


def _interrupted(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is anywhere in the chain of causes of `e`."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def torch_to_onnx(
    model: TextureGenerator,
    info: ModelInfo,
    opset: int = DEFAULT_OPSET,
    chunk_rows: int = CHUNK_ROWS,
):
    """The windowed ModelProto of a (folded) generator, with metadata; not written anywhere.
    Its projections score `chunk_rows` patches at a time (export/chunked.py; 0: all at once)."""
    import torch

    m = prepared(model)
    arch = info.arch
    if arch.levels != m.cfg.levels or info.noise_channels != m.cfg.noise_channels:
        raise ValueError("ModelInfo does not describe this generator")
    feeds, _ = noise_feeds(info, 0, 0, 0, 2 * arch.stride, 2 * arch.stride)
    args = tuple(torch.from_numpy(z) for z in feeds.values())
    dims = {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                m,
                args,
                dynamo=True,
                dynamic_shapes=(tuple(dict(dims) for _ in args),),  # forward(*noises)
                input_names=info.input_names(),
                output_names=["image"],
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # torch.export / onnxscript raise many types
        if _interrupted(e):  # torch wraps a Ctrl-C during tracing in its own error
            raise KeyboardInterrupt from e
        raise UserError(f"torch could not export the generator to ONNX: {one_line(e)}")
    finally:
        quiet.setLevel(level)
    proto = _clean(program.model_proto, info, opset)
    if chunk_rows:
        from train.generator import PatchProjection

        chunk_projections(proto, PatchProjection.BLOCK, chunk_rows)
    if bn_nodes(proto):
        raise UserError(f"exported graph still has BatchNormalization nodes: {bn_nodes(proto)}")
    onnx.checker.check_model(proto)
    return proto


def export_protos(
    model: TextureGenerator, info: ModelInfo, opset: int = DEFAULT_OPSET
) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(the model of `info.form`, the windowed model it is built on)."""
    windowed = torch_to_onnx(model, replace(info, form="windowed", tile=None, period=None), opset)
    if info.form == "windowed":
        return windowed, windowed
    if info.form != "self-contained":
        raise ValueError(f"unknown tilegen form {info.form!r}")
    from export.self_contained import build_self_contained

    return build_self_contained(windowed, info, info.tile, info.period), windowed


def save(proto: onnx.ModelProto, path: str | os.PathLike) -> None:
    """One file, no external data."""
    data = proto.SerializeToString()
    Path(path).write_bytes(data)


def export_onnx(
    model: TextureGenerator, info: ModelInfo, path: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """Write `model` as ONE .onnx file of form `info.form` (unverified: see export_verified)."""
    proto, _ = export_protos(model, info, opset)
    save(proto, path)
    return proto


# --- checking ---------------------------------------------------------------------------------


def session(model: str | os.PathLike | onnx.ModelProto, threads: int = 2):
    """A CPU onnxruntime session for a path or an in-memory model."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def tiler_tile(sess, info: ModelInfo, seed, y0, x0, h, w, period=None) -> np.ndarray:
    """The tiler's tile: windowed session on tilegen.noise windows, cropped; (1, C, h, w)."""
    feeds, (cy, cx) = noise_feeds(info, seed, y0, x0, h, w, period)
    return sess.run(["image"], feeds)[0][:, :, cy : cy + h, cx : cx + w]


def self_contained_tile(
    sess,
    seed: int,
    y0: int,
    x0: int,
    size: tuple[int, int] | None = None,
    period: tuple[int, int] | None = None,
) -> np.ndarray:
    """Run a self-contained session: (1, C, H, W). The dynamic form needs `size` (and takes a
    `period`); the fixed-tile form has both baked in."""
    feed = {"seed": seed, "y0": y0, "x0": x0}
    if "height" in [i.name for i in sess.get_inputs()]:
        if size is None:
            raise ValueError("the dynamic self-contained form needs a tile size")
        feed |= {"height": size[0], "width": size[1]}
        feed |= {"period_y": (period or (0, 0))[0], "period_x": (period or (0, 0))[1]}
    feed = {k: np.array(v, dtype=np.int64) for k, v in feed.items()}
    return sess.run(["image"], feed)[0]


def _info_of(path: str | os.PathLike) -> ModelInfo:
    proto = onnx.load(str(path), load_external_data=False)
    return from_metadata({p.key: p.value for p in proto.metadata_props}, str(path))


@dataclass
class ParityReport:
    cases: list[tuple[str, float]] = field(default_factory=list)  # (description, max |diff|)

    @property
    def max_diff(self) -> float:
        return max((d for _, d in self.cases), default=0.0)

    def lines(self) -> list[str]:
        return [f"  {what}: max |diff| {d:.3g}" for what, d in self.cases]


def _fail(what: str, d: float, tol: float, against: str) -> None:
    if not np.isfinite(d) or d > tol:
        raise UserError(
            f"parity check failed: onnxruntime differs from {against} by {d:.3g} (> {tol:g}) "
            f"on {what}"
        )


def verify_parity(
    model: TextureGenerator,
    path: str | os.PathLike,
    sizes: Sequence[tuple[int, int]],
    *,
    seed: int = 0,
    origin: tuple[int, int] = (0, 0),
    period: tuple[int, int] | None = None,
    tol: float = PARITY_TOL,
    report: ParityReport | None = None,
) -> ParityReport:
    """onnxruntime (windowed file at `path`) vs torch on the noise windows of output tiles of
    these sizes at `origin`: the whole network output is compared. One-line UserError above tol.

    A model with projection stages rounds the network's image to 8-bit levels first; where the
    two runtimes' network values fall on either side of a rounding boundary the projection sees
    other patches, a legitimate difference of whole exemplar patches. Such a tile is checked in
    two exact halves instead (`split_check`): the file's network alone, then torch's projection
    stages on that network image."""
    import torch

    report = report or ParityReport()
    m = prepared(model)
    info = _info_of(path)
    sess = session(path)
    network = None  # (torch network, a session of the file's network, its output), on first need
    for h, w in sizes:
        feeds, _ = noise_feeds(info, seed, origin[0], origin[1], h, w, period)
        got = sess.run(["image"], feeds)[0]
        with torch.no_grad():
            ref = m(*[torch.from_numpy(z) for z in feeds.values()]).numpy()
        if got.shape != ref.shape:
            raise UserError(f"parity check failed: onnxruntime gave {got.shape}, torch {ref.shape}")
        d = float(np.abs(got - ref).max())
        what = f"tile {h}x{w} at {origin} (window {ref.shape[2]}x{ref.shape[3]})"
        what += f", period {period[0]}x{period[1]}" if period else ""
        if not d <= tol and m.project is not None:
            network = network or _network_alone(m, path)
            if network:
                d, what = split_check(m, network, feeds, got, what, tol)
        report.cases.append((what, d))
        _fail(what, d, tol, "torch")
    return report


def _network_alone(m: TextureGenerator, path: str | os.PathLike):
    """(the torch network without its projection stages, an onnxruntime session of the file's
    graph cut where its projection stages begin), or None where the cut cannot be found."""
    from train.generator import without_projection

    proto = onnx.load(str(path))
    consts = {t.name: t.dims for t in proto.graph.initializer}
    # The network ends with the one 1x1 convolution onto the image's channels (to_image).
    ends = [
        n.output[0]
        for n in proto.graph.node
        if n.op_type == "Conv"
        and len(n.input) > 1
        and list(consts.get(n.input[1], []))[:1] == [m.cfg.out_channels]
        and list(consts.get(n.input[1], []))[2:] == [1, 1]
    ]
    if len(ends) != 1:
        return None
    del proto.graph.output[:]
    proto.graph.output.append(
        onnx.helper.make_tensor_value_info(ends[0], onnx.TensorProto.FLOAT, None)
    )
    return without_projection(m), session(proto), ends[0]


def split_check(m, network, feeds: dict, got: np.ndarray, what: str, tol: float):
    """(max |diff|, description) of a projected tile checked in two halves: the file's network
    image in onnxruntime against torch's (tol, or a one-line UserError), then the file's output
    against torch's projection stages applied to that image."""
    import torch

    net, net_sess, output = network
    z_ort = net_sess.run([output], feeds)[0]
    with torch.no_grad():
        z_torch = net(*[torch.from_numpy(z) for z in feeds.values()]).numpy()
        ref = m.projected(torch.from_numpy(z_ort)).numpy()
    _fail(f"{what}, the network before its projection", float(np.abs(z_ort - z_torch).max()),
          tol, "torch")  # fmt: skip
    levels = [np.rint(np.clip(z, 0, 1) * 255) for z in (z_ort, z_torch)]
    flips = int((levels[0] != levels[1]).sum())
    what += (f", projected from onnxruntime's network image ({flips} of its values round to "
             "another 8-bit level in torch)")  # fmt: skip
    return float(np.abs(got - ref).max()), what


def verify_self_contained(
    model: TextureGenerator | None,
    path: str | os.PathLike,
    windowed: str | os.PathLike | onnx.ModelProto,
    origins: Sequence[tuple[int, int]] = SELF_CONTAINED_ORIGINS,
    *,
    seed: int = 0,
    tol: float = PARITY_TOL,
    tile_tol: float = TILE_TOL,
    report: ParityReport | None = None,
) -> ParityReport:
    """The self-contained file's tiles vs the tiler's (windowed graph + tilegen.noise, within
    tile_tol) and vs torch's sample_tile (within tol; skipped for `model` None), at each origin:
    the file's tile (fixed form) or DYNAMIC_CASES (dynamic form)."""
    report = report or ParityReport()
    m = prepared(model) if model is not None else None
    info = _info_of(path)
    sc, win = session(path), session(windowed)
    cases = DYNAMIC_CASES if info.dynamic else ((tuple(info.tile), info.period),)
    for y0, x0 in origins:
        for (h, w), period in cases:
            got = self_contained_tile(sc, seed, y0, x0, (h, w), period)
            tiler = tiler_tile(win, info, seed, y0, x0, h, w, period)
            what = f"self-contained tile {h}x{w} at ({y0}, {x0})"
            what += f", period {period[0]}x{period[1]}" if period else ""
            if got.shape != tiler.shape:
                raise UserError(f"self-contained check failed: shape {got.shape} != {tiler.shape}")
            d_tiler = float(np.abs(got - tiler).max())
            report.cases.append((what + " vs the tiler", d_tiler))
            _fail(what, d_tiler, tile_tol, "the tiler's windowed path")
            if m is not None:
                from train.generator import sample_tile

                ref = sample_tile(m, seed, y0, x0, h, w, period).numpy()
                d_torch = float(np.abs(got - ref).max())
                report.cases.append((what + " vs torch", d_torch))
                _fail(what, d_torch, tol, "torch")
    return report


def sidecar_path(path: str | os.PathLike) -> Path:
    """MODEL.onnx.json: the runtime contract beside the file (tilegen.contract.runtime_contract)."""
    return Path(str(path) + ".json")


def write_sidecar(path: str | os.PathLike, info: ModelInfo) -> Path:
    side = sidecar_path(path)
    side.write_text(json.dumps(runtime_contract(info), indent=1) + "\n")
    return side


def check_options(
    self_contained: bool, tile: tuple[int, int] | None, period: str | None, opset: int
) -> tuple[int, int] | None:
    """`tilegen export`'s rules between its options, each naming the option; the checked
    --tile (None: the dynamic self-contained form, or the windowed one)."""
    if (tile or period) and not self_contained:
        raise UserError("--tile and --period belong to --self-contained")
    if period and tile is None:
        raise UserError("--period needs --tile H W: the dynamic form takes period_y, period_x")
    if opset < 18:
        raise UserError(f"--opset {opset}: tilegen exports opset 18 or newer")
    return options.size(tile, "--tile") if tile else None


def model_info(model: TextureGenerator, meta: dict) -> ModelInfo:
    """The windowed ModelInfo of a trained generator from its checkpoint metadata (what a .pt
    knows about its training), the form every export starts from."""
    cfg = model.cfg
    extra = ("iterations", "final_loss", "exemplar_shape")
    training = {**meta.get("training", {}), **{k: meta[k] for k in extra if k in meta}}
    training["generator"] = cfg.to_dict()
    return ModelInfo(
        arch=cfg.arch,
        noise_channels=cfg.noise_channels,
        out_channels=cfg.out_channels,
        channels=meta.get("channels") or {1: "L", 3: "RGB", 4: "RGBA"}.get(cfg.out_channels, ""),
        exemplar_sha256=meta.get("exemplar_sha256", ""),
        training=training,
        material=meta.get("material"),
    )


def export_verified(
    model: TextureGenerator,
    info: ModelInfo,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
) -> tuple[onnx.ModelProto, ParityReport]:
    """Export, verify, then move into place: a file that fails a check is never left at `path`.
    Windowed: parity on PARITY_CASES (+ a periodic case); self-contained: the windowed graph's
    parity, then its tiles against the tiler and torch."""
    path = Path(path)
    _check_outputs(path, overwrite)
    proto, windowed = export_protos(model, info, opset)

    def check(file: Path, windowed_file: Path) -> ParityReport:
        report = ParityReport()
        for origin, size in PARITY_CASES:
            verify_parity(model, windowed_file, [size], origin=origin, report=report)
        p = 2 * info.arch.stride
        verify_parity(model, windowed_file, [(p, p)], origin=(-p // 2, 3), period=(p, p),
                      report=report)  # fmt: skip
        if info.form == "self-contained":
            verify_self_contained(model, file, windowed, report=report)
        return report

    return proto, write_verified(path, proto, windowed, check)


def write_verified(path: Path, proto: onnx.ModelProto, windowed: onnx.ModelProto, check):
    """Save `proto` (and its windowed graph) beside `path` under temporary names, return
    `check(file, windowed_file)`, and only then move the file into place with its sidecar: a
    file that fails a check is never left at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    wtmp = path.with_name(f".{path.name}.{os.getpid()}.windowed.tmp")
    try:
        save(proto, tmp)
        save(windowed, wtmp)
        result = check(tmp, wtmp)
        os.replace(tmp, path)
        write_sidecar(path, _info_of(path))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")
    finally:
        tmp.unlink(missing_ok=True)
        wtmp.unlink(missing_ok=True)
    return result


def _check_outputs(path: Path, overwrite: bool) -> None:
    for p in (path, sidecar_path(path)):
        if p.exists() and not overwrite:
            raise UserError(f"{p} already exists: pass --overwrite or choose another -o")


def wrap_verified(
    windowed_path: str | os.PathLike,
    path: str | os.PathLike,
    tile: tuple[int, int] | None,
    period: tuple[int, int] | None = None,
    *,
    overwrite: bool = False,
) -> tuple[onnx.ModelProto, ParityReport]:
    """`tilegen export WINDOWED.onnx --self-contained`: wrap an exported windowed file into the
    self-contained form (fixed `tile`, or dynamic for None) without torch, check its tiles
    against the tiler's (bit-identical expected), then write it and its sidecar."""
    from export.self_contained import build_self_contained
    from tilegen.inspect import load

    path = Path(path)
    _check_outputs(path, overwrite)
    src = load(windowed_path)
    if src.info.form != "windowed":
        raise UserError(
            f"{windowed_path} is already a {src.info.form} model: give the windowed .onnx (or "
            "the .pt) to export from"
        )
    proto = build_self_contained(src.proto, src.info, tile, period)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save(proto, tmp)
            report = verify_self_contained(None, tmp, src.proto)
            os.replace(tmp, path)
            write_sidecar(path, _info_of(path))
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")
    return proto, report
