"""Loading a tilegen .onnx file and rendering exact tiles from it with onnxruntime.

The file is the whole contract (tilegen/contract.py): its metadata gives the window arithmetic, so
`render_tile` can compute any output region alone: tilegen/windows.py gives each level's noise
window, tilegen/noise.py fills it from the coordinate-hashed field, onnxruntime runs the graph and
the result is cropped to the region. Any tiling of an image gives the same bytes as one evaluation.

onnxruntime sessions cannot be pickled, so every process keeps its own, cached by (path, threads,
device): a Dask task ships only the model's path and opens (once per worker process) what it needs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tilegen.contract import ModelInfo, check_model_file, from_metadata
from tilegen.errors import UserError
from tilegen.grid import tiles
from tilegen.noise import tile_noise

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# Output tile a graph evaluation renders at most (pixels per side); a multiple of every model's
# stride up to 2^9. Larger tiles waste less on window margins but hold more activations.
CPU_TILE = 512
GPU_TILE = 2048


class Cancelled(Exception):
    """A render stopped because the run is being interrupted."""


@dataclass
class LoadedModel:
    path: str
    info: ModelInfo
    session: object  # onnxruntime.InferenceSession
    providers: list[str]  # what the session really uses, best first
    threads: int
    scores_whole: bool = False  # a projection scores all its patches at once (an older export)

    @property
    def device(self) -> str:
        return "cuda" if self.providers and self.providers[0] == CUDA else "cpu"

    @property
    def tile(self) -> int:
        """The largest output tile one evaluation renders (memory bound). A projection exported
        without chunks (scores_whole) holds a (tile/2)^2 x J score matrix (131 MB for 256^2,
        J = 2000): those get half the tile; a chunked one holds 512 x J (export/chunked.py)."""
        tile = GPU_TILE if self.device == "cuda" else CPU_TILE
        return tile // 2 if self.scores_whole else tile

    @property
    def self_contained(self) -> bool:
        return self.info.form == "self-contained"

    def check_period(self, period: tuple[int, int] | None) -> None:
        """A fixed-tile self-contained model has its period (or none) baked in at export."""
        if not self.self_contained or self.info.dynamic:
            return
        baked = tuple(self.info.period) if self.info.period else None
        if period is not None and tuple(period) != baked:
            raise UserError(
                f"{self.path} is a self-contained model with period {baked or 'none'} fixed at "
                f"export; it cannot render period {tuple(period)}: use the windowed model"
            )


_CACHE: dict[tuple, LoadedModel] = {}
_LOCK = threading.Lock()


def _ort():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - installation problem
        raise UserError(
            "onnxruntime is not installed: pip install 'tilegen[cpu]' (or 'tilegen[gpu]')"
        )
    return onnxruntime


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _provider_list(device: str) -> list[str]:
    if device not in DEVICES:
        raise UserError(f"unknown --device {device!r}: use auto, cpu or cuda")
    have = available_providers()
    if device == "cuda":
        if CUDA not in have:
            raise UserError(
                "--device cuda: this onnxruntime has no CUDA provider (install "
                "'tilegen[gpu]', i.e. onnxruntime-gpu, instead of onnxruntime) or use --device cpu"
            )
        return [CUDA, CPU]
    if device == "auto" and CUDA in have:
        return [CUDA, CPU]
    return [CPU]


def open_model(
    path: str | os.PathLike, threads: int = 1, device: str = "cpu", sha256: str | None = None
) -> LoadedModel:
    """The cached session for (path, threads, device) in this process, opened on first use.

    Validates the tilegen metadata (a foreign, newer or damaged file is a one-line UserError) and
    checks which providers onnxruntime really took: onnxruntime-gpu without CUDA libraries logs an
    error and silently runs on the CPU, which `--device cuda` must not hide. The cache notices a
    file replaced in place (size, mtime); `sha256` (what the client hashed) makes a worker refuse
    a different file under the same path, e.g. on another machine of a cluster.
    """
    p = check_model_file(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, int(threads), device)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        if sha256 is not None and file_sha256(p) != sha256:
            raise UserError(
                f"{p} on this worker is not the model the run started with (sha256 differs): "
                "give every worker the same file"
            )
        ort = _ort()
        wanted = _provider_list(device)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # A failed CUDA provider is reported by us (below), not by onnxruntime's log.
        so.log_severity_level = 4 if wanted[0] == CUDA and device == "auto" else 3
        options = [{"cudnn_conv_algo_search": "DEFAULT"} if w == CUDA else {} for w in wanted]

        def start():
            try:
                return ort.InferenceSession(str(p), so, providers=wanted, provider_options=options)
            except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ..)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"{p} is not a readable ONNX model ({first[:200]})")

        sess = start()
        info = from_metadata(sess.get_modelmeta().custom_metadata_map, source=str(p))
        if info.arithmetic is not None and wanted[0] == CPU:
            # An integer model's float convolutions hold exact integers, so no layout changes
            # its bytes; without the blocked-channel layout's reorders it runs 1.05-1.08x
            # faster on the CPU (bench/RESULTS.md, "Integer model"). A float model keeps the
            # full level: it is faster there, and its bytes depend on the layout.
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            sess = start()
        names = [i.name for i in sess.get_inputs()]
        if info.form not in ("windowed", "self-contained"):
            raise UserError(f"{p}: unknown tilegen model form {info.form!r}: upgrade tilegen")
        expected = info.graph_inputs()
        if names != expected:
            raise UserError(
                f"{p}: inputs {names} do not match its metadata ({expected}): re-export the model"
            )
        used = list(sess.get_providers())
        if device == "cuda" and used[0] != CUDA:
            raise UserError(
                "--device cuda: onnxruntime could not start its CUDA provider (CUDA/cuDNN "
                "libraries missing?); use --device cpu or auto"
            )
        model = LoadedModel(str(p), info, sess, used, int(threads), _scores_whole(p, info))
        render_window(model, 0, 0, 0, info.arch.stride, info.arch.stride)  # graph ~ metadata
        _CACHE[key] = model
        return model


def _scores_whole(path: Path, info: ModelInfo) -> bool:
    """Whether a model's projection scores every patch in one product, not in a Loop over
    chunks of rows (export/chunked.py): files exported before chunking."""
    if not info.arch.tr or info.form != "windowed":
        return False
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return not any(n.op_type == "Loop" for n in graph.node)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def noise_feeds(
    info: ModelInfo,
    seed: int,
    y0: int,
    x0: int,
    h: int,
    w: int,
    period: tuple[int, int] | None = None,
) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """The graph inputs for output region [y0, y0+h) x [x0, x0+w), and the crop offset."""
    noises, crop = tile_noise(info.arch, info.noise_channels, seed, y0, x0, h, w, period)
    return {f"z{k}": z for k, z in enumerate(noises)}, crop


def render_window(
    model: LoadedModel,
    seed: int,
    y0: int,
    x0: int,
    h: int,
    w: int,
    period: tuple[int, int] | None = None,
) -> np.ndarray:
    """One graph evaluation covering the region, cropped: float32 (C, h, w). A fixed-tile
    self-contained model returns fixed-size tiles from (seed, y0, x0): the region is stitched
    from them; the dynamic form renders the region in one evaluation."""
    if model.self_contained and model.info.dynamic:
        py, px = period or (0, 0)
        feed = {"seed": seed, "y0": y0, "x0": x0, "height": h, "width": w}
        feed |= {"period_y": py, "period_x": px}
        feed = {k: np.array(v, np.int64) for k, v in feed.items()}
        return _run(model, feed)[0]
    if model.self_contained:
        model.check_period(period)
        return _render_self_contained(model, seed, y0, x0, h, w)
    feeds, (cy, cx) = noise_feeds(model.info, seed, y0, x0, h, w, period)
    out = _run(model, feeds)[0, :, cy : cy + h, cx : cx + w]
    if out.shape[1:] != (h, w):
        raise UserError(
            f"{model.path}: its graph returned a smaller window than its metadata promises "
            "(the metadata was edited?): re-export the model"
        )
    return out


def _run(model: LoadedModel, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's image for one feed, (1, C, H, W); a graph that cannot run on windows its
    metadata asks for (edited metadata, a foreign graph) is a one-line UserError."""
    quiet = _ort().RunOptions()
    quiet.log_severity_level = 4  # its failure is reported below, in one line, not also logged
    try:
        out = model.session.run(["image"], feed, quiet)[0]
    except Exception as e:  # onnxruntime's own exception types (Fail, InvalidArgument, ...)
        raise UserError(
            f"{model.path}: onnxruntime cannot run it on the windows its metadata describes "
            f"({str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__}): "
            "re-export the model"
        )
    if out.ndim != 4 or out.shape[1] != model.info.out_channels:
        raise UserError(
            f"{model.path}: its graph returned an image of shape {tuple(out.shape)} where its "
            f"metadata says {model.info.out_channels} channels: re-export the model"
        )
    return out


def _render_self_contained(model: LoadedModel, seed, y0, x0, h, w) -> np.ndarray:
    th, tw = model.info.tile
    out = np.empty((model.info.out_channels, h, w), np.float32)
    for t in tiles(y0, x0, h, w, th, tw):
        feed = {
            "seed": np.array(seed, np.int64),
            "y0": np.array(t.y, np.int64),
            "x0": np.array(t.x, np.int64),
        }
        tile = _run(model, feed)[0]
        out[:, t.y - y0 : t.y - y0 + t.h, t.x - x0 : t.x - x0 + t.w] = tile[:, : t.h, : t.w]
    return out


def render_region(
    model: LoadedModel,
    seed: int,
    y0: int,
    x0: int,
    h: int,
    w: int,
    period: tuple[int, int] | None = None,
    tile: int | None = None,
    dtype: str | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Render a region of any size in evaluations of at most `tile` pixels per side: (C, h, w),
    float32 model values, or quantised piece by piece when `dtype` is "uint8"/"uint16" (so a
    shard never needs a float copy of itself). Setting `cancel` stops it between pieces."""

    def window(ty: int, tx: int, th: int, tw: int) -> np.ndarray:
        return finish_planar(render_window(model, seed, ty, tx, th, tw, period), model.info)

    return assemble(window, model.info, y0, x0, h, w, tile or model.tile, dtype, cancel)


def assemble(
    window: Callable[[int, int, int, int], np.ndarray],
    info: ModelInfo,
    y0: int,
    x0: int,
    h: int,
    w: int,
    tile: int,
    dtype: str | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """The region [y0, y0+h) x [x0, x0+w) from `window(y, x, h, w)` evaluations of at most
    `tile` pixels per side on the global grid: (C, h, w) float32, or quantised piece by piece."""
    out = np.empty((info.out_channels, h, w), dtype or np.float32)
    for _, _, ty, tx, th, tw in tiles(y0, x0, h, w, tile, aligned=True):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        piece = window(ty, tx, th, tw)
        dest = out[:, ty - y0 : ty - y0 + th, tx - x0 : tx - x0 + tw]
        if dtype is None:
            dest[...] = piece
        else:
            quantize_planar(piece, info, dtype, out=dest)
    return out


def render_tile(
    model_path: str | os.PathLike,
    seed: int,
    y0: int,
    x0: int,
    h: int,
    w: int,
    period: tuple[int, int] | None = None,
    threads: int = 1,
    device: str = "cpu",
) -> np.ndarray:
    """Output pixels [y0, y0+h) x [x0, x0+w) of the model's texture for `seed`, float32 (C, h, w),
    as ONE graph evaluation (the reference every tiling must equal byte for byte)."""
    if h < 1 or w < 1:
        raise UserError(f"tile size must be positive, got {h}x{w}")
    model = open_model(model_path, threads, device)
    tile = np.array(render_window(model, seed, y0, x0, h, w, period), np.float32, order="C")
    return finish_planar(tile, model.info)


def finish_planar(img: np.ndarray, info: ModelInfo) -> np.ndarray:
    """A material model's graph output made usable, pixel by pixel (tiles stay exact): normals
    unit length with z >= 0 (tilegen.material.finish_planar). Other models: unchanged."""
    if info.material is None:
        return img
    from tilegen.material import finish_planar as unit_normals

    return unit_normals(np.array(img, np.float32), info.material)


def to_unit(img: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Model values -> [0, 1] following the model's declared value range."""
    lo, hi = float(info.value_range[0]), float(info.value_range[1])
    if (lo, hi) == (0.0, 1.0):
        return img
    return (img - np.float32(lo)) * np.float32(1.0 / (hi - lo))


def quantize_planar(img: np.ndarray, info: ModelInfo, dtype: str, out=None) -> np.ndarray:
    """float model output (C, h, w) -> uint8/uint16 with tilegen's one rounding rule
    (tilegen.imageio.quantize: rint(clip(v, 0, 1) * top)), in float32 and with one scratch
    array; written into `out` when given."""
    top = np.float32(255 if np.dtype(dtype) == np.uint8 else 65535)
    v = np.clip(to_unit(img, info), np.float32(0.0), np.float32(1.0), dtype=np.float32)
    np.multiply(v, top, out=v)
    np.rint(v, out=v)
    if out is None:
        return v.astype(dtype)
    np.copyto(out, v, casting="unsafe")
    return out
