"""Worlds: several models laid out by a map, painted exactly tile by tile (tilegen world).

    spec = plan_world(layout, labels, size=(H, W), blend=32, periodic=False)
    tiler.run(GenerateConfig(model=spec.models[0], ..., world=spec))   # the store, as generate

A world is a layout (an image or a Zarr array, tilegen/layout.py) whose labels each name a
model, the field of tilegen/warp.py that says how much of each label shows at every pixel, and a
mix of the models' outputs inside the transitions (tilegen/mixing.py). Every pixel is a pure
function of (seed, global coordinates, layout, models), so the store, its ledger, resume,
pyramid, `tiles` and `view` are `generate`'s own (tilegen/shard_tasks.py renders a world's shards
with `render_region`).

Cost: a window evaluates a model only on the blocks (of the models' stride) where its label's
weight is non-zero (DESIGN.md section 9), so away from transitions a world costs one model's
generate.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tilegen import mixing, options
from tilegen.errors import UserError
from tilegen.grid import tiles
from tilegen.layout import Legend, parse_labels, read_layout
from tilegen.model import assemble, file_sha256, finish_planar, open_model
from tilegen.model import render_region as model_region
from tilegen.warp import Field

# Pixels one more evaluation costs as much as: the default model renders 64x64 at 13 us per
# pixel, 512x512 at 6.8 (2-core CPU, onnxruntime 1 thread).
EVAL_OVERHEAD = 4096
MEAN_SAMPLE = 256  # pixels per side of the sample a model's mean colour is measured on
WARP_SPEC = {"spec": "tilegen-warp", "version": 1}  # bump when warp.py's field changes


@dataclass(frozen=True)
class WorldSpec:
    """Everything that decides a world's pixels besides the seed (picklable; workers open it)."""

    layout: str  # path of the layout image or Zarr array
    layout_sha256: str  # of its content (tilegen/layout.py read_layout)
    layout_fingerprint: str  # what a worker compares to know it reads the planned layout
    layout_shape: tuple[int, int]
    keys: tuple[str, ...]  # the legend, as given: key -> model file
    key_models: tuple[str, ...]
    models: tuple[str, ...]  # distinct model files; label i paints models[i]
    model_sha256: tuple[str, ...]
    size: tuple[int, int]
    blend: float
    mix: str
    means: tuple[tuple[float, ...], ...]  # per model: mean of each channel (variance mix)
    height: int | None  # the height channel (height mix)
    periodic: bool

    def block(self) -> dict:
        """What the store records: layout, legend, models with their hashes, the settings."""
        hashes, paths = zip(self.models, self.model_sha256), zip(self.keys, self.key_models)
        models = [{"file": Path(p).name, "sha256": h} for p, h in hashes]
        legend = [{"key": k, "label": self.models.index(p)} for k, p in paths]
        return {
            "layout": {"file": Path(self.layout).name, "sha256": self.layout_sha256,
                       "shape": list(self.layout_shape)},
            "legend": legend, "models": models, "blend": self.blend, "mix": self.mix,
            "means": [list(m) for m in self.means], "height_channel": self.height,
            "warp": WARP_SPEC,
        }  # fmt: skip

    def sha256(self) -> str:
        """One hash of the whole world (the store's `model_sha256`)."""
        return hashlib.sha256(json.dumps(self.block(), sort_keys=True).encode()).hexdigest()


def plan_world(
    layout: str,
    labels: list[str],
    cell: int | None = None,
    size: tuple[int, int] | None = None,
    blend: float = 32.0,
    mix: str = "auto",
    periodic: bool = False,
    device: str = "cpu",
) -> WorldSpec:
    """Read and check everything a world needs, before any store is touched: the legend, the
    layout, the models (all of one kind, channel count and stride), the size and the blend."""
    legend = parse_labels(labels)
    lay = read_layout(layout, legend)
    size = _size(lay.shape, cell, size)
    infos = [open_model(p, 1, device).info for p in legend.models]
    _check_models(legend.models, infos)
    cell_px = min(size[0] / lay.shape[0], size[1] / lay.shape[1])
    options.positive("--blend", blend)
    if blend > 1.25 * cell_px:
        raise UserError(f"--blend {blend:g}: at most 1.25x the cell ({1.25 * cell_px:g} pixels); "
                        "use a larger --cell or a smaller --blend")  # fmt: skip
    mix = _mix(mix, infos[0].material)
    return WorldSpec(
        layout=str(Path(layout).resolve()), layout_sha256=lay.sha256,
        layout_fingerprint=lay.fingerprint, layout_shape=lay.shape,
        keys=legend.keys, key_models=legend.paths, models=legend.models,
        model_sha256=tuple(file_sha256(p) for p in legend.models), size=size, blend=float(blend),
        mix=mix, means=tuple(_mean(p, device) for p in legend.models),
        height=_height_channel(infos[0].material) if mix == "height" else None, periodic=periodic,
    )  # fmt: skip


def _size(shape: tuple[int, int], cell: int | None, size: tuple[int, int] | None):
    if (cell is None) == (size is None):
        raise UserError("give --cell N (output pixels per layout pixel) or --size H W, not both")
    if cell is not None:
        options.positive("--cell", cell)
        return shape[0] * int(cell), shape[1] * int(cell)
    return options.size(size)


def _check_models(paths: tuple[str, ...], infos: list) -> None:
    """One kind of model: all textures or all materials with the same maps, one channel count
    and one stride (a periodic world's period must suit every model)."""
    first, name = infos[0], Path(paths[0]).name
    for path, info in zip(paths[1:], infos[1:]):
        other = Path(path).name
        if (info.material is None) != (first.material is None):
            raise UserError(f"--label: {name} and {other} mix a texture model and a material "
                            "model; a world paints textures or materials, not both")  # fmt: skip
        if info.out_channels != first.out_channels or info.channels != first.channels:
            raise UserError(f"--label: {name} paints {first.out_channels} channels "
                            f"({first.channels}), {other} {info.out_channels} ({info.channels}); "
                            "a world's models must paint the same channels")  # fmt: skip
        if info.arch.stride != first.arch.stride:
            raise UserError(f"--label: {name} has stride {first.arch.stride}, {other} "
                            f"{info.arch.stride}; a world's models must share one "
                            "stride")  # fmt: skip


def _mix(mix: str, material: dict | None) -> str:
    options.choice("--mix", mix, ("auto", *mixing.MODES))
    has_height = _height_channel(material) is not None
    if mix == "height" and not has_height:
        raise UserError("--mix height needs material models with a height map")
    if mix == "auto":
        return "height" if has_height else "variance"
    return mix


def _height_channel(material: dict | None) -> int | None:
    for m in (material or {}).get("maps", []):
        if m.get("role") == "height":
            return int(m["first"])
    return None


def _mean(path: str, device: str) -> tuple[float, ...]:
    """A model's mean value per channel, on a fixed sample (seed 0, at the origin): the centre the
    variance-preserving mix keeps each texture's deviations around."""
    sample = model_region(open_model(path, 1, device), 0, 0, 0, MEAN_SAMPLE, MEAN_SAMPLE)
    return tuple(float(np.float32(v)) for v in sample.mean(axis=(1, 2), dtype=np.float64))


# --- rendering (inside tasks) -----------------------------------------------------------------


class World:
    """A world opened in one process: its models' sessions and its field. `rendered` counts the
    pixels each model was evaluated on (what a window skips shows there)."""

    def __init__(self, spec: WorldSpec, seed: int, threads: int, device: str):
        self.spec = spec
        legend = Legend(spec.keys, spec.key_models)
        # Planning checked the layout; the fingerprint says this is the same one (cheap for Zarr).
        lay = read_layout(spec.layout, legend, check=False)
        if lay.fingerprint != spec.layout_fingerprint:
            raise UserError(f"{spec.layout} is not the layout the run started with (sha256 "
                            "differs): give every worker the same file")  # fmt: skip
        self.models = [open_model(p, threads, device, h)
                       for p, h in zip(spec.models, spec.model_sha256)]  # fmt: skip
        self.field = Field(lay.labels, spec.size, seed, spec.blend, spec.periodic)
        self.rendered = [0] * len(self.models)
        self.info = self.models[0].info
        # The blocks a model is evaluated or skipped on: its stride, the finest grid on which
        # its evaluations stay aligned (a misaligned one computes a larger window).
        self.block = self.info.arch.stride
        self.providers = self.models[0].providers

    def window(
        self, seed: int, y0: int, x0: int, h: int, w: int, period: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Finished float32 (C, h, w) of pixels [y0, y0+h) x [x0, x0+w)."""
        present, weights = self.field.weights(y0, x0, h, w)
        if len(present) == 1:
            return self._piece(present[0], seed, y0, x0, h, w, period, None)
        pieces = [self._piece(lab, seed, y0, x0, h, w, period, wt > 0)
                  for lab, wt in zip(present, weights)]  # fmt: skip
        s = self.spec
        out = mixing.mix(pieces, weights, s.mix, [s.means[i] for i in present], s.height)
        return mixing.keep_alone(finish_planar(out, self.info), pieces, weights)

    def _piece(self, label: int, seed, y0, x0, h, w, period, mask) -> np.ndarray:
        """The model of `label` on the window, evaluated only where `mask` is set (or
        everywhere for None): on the rectangles of `_cover`; zeros elsewhere."""
        model = self.models[label]
        rects = [(y0, x0, h, w)] if mask is None else _cover(mask, y0, x0, self.block)
        if rects == [(y0, x0, h, w)]:
            self.rendered[label] += h * w
            return model_region(model, seed, y0, x0, h, w, period)
        out = np.zeros((self.info.out_channels, h, w), np.float32)
        for ty, tx, th, tw in rects:
            self.rendered[label] += th * tw
            piece = model_region(model, seed, ty, tx, th, tw, period)
            out[:, ty - y0 : ty - y0 + th, tx - x0 : tx - x0 + tw] = piece
        return out


def _cover(mask: np.ndarray, y0: int, x0: int, block: int) -> list[tuple[int, int, int, int]]:
    """Rectangles (y, x, h, w) covering the set pixels of `mask` (pixels [y0, y0+h) x
    [x0, x0+w)) at the least cost, an evaluation costing its area plus EVAL_OVERHEAD: each
    block row's runs of `block`-pixel blocks (on the global grid) holding a set pixel, or the
    bounding box of consecutive block rows (chosen by dynamic programming over the rows)."""
    rows = list(_runs(mask, y0, x0, block))  # (y, h, runs)
    best: list[tuple[int, list]] = [(0, [])]  # best cover of the first i rows

    def box(i: int, j: int) -> tuple[int, int, int, int]:
        left = min(r[0] for _, _, runs in rows[i:j] for r in runs)
        right = max(r[0] + r[1] for _, _, runs in rows[i:j] for r in runs)
        top, bottom = rows[i][0], rows[j - 1][0] + rows[j - 1][1]
        return top, left, bottom - top, right - left

    for j in range(1, len(rows) + 1):
        y, h, runs = rows[j - 1]
        alone = [(y, x, h, w) for x, w in runs]
        cost = best[j - 1][0] + sum(h * w + EVAL_OVERHEAD for _, _, h, w in alone)
        options = [(cost, best[j - 1][1] + alone)]
        for i in range(j - 1, -1, -1):
            if i < j - 1 and rows[i][0] + rows[i][1] != rows[i + 1][0]:
                break  # rows with a gap between them are not merged
            b = box(i, j)
            options.append((best[i][0] + b[2] * b[3] + EVAL_OVERHEAD, best[i][1] + [b]))
        best.append(min(options, key=lambda o: o[0]))
    return best[-1][1]


def _runs(mask: np.ndarray, y0: int, x0: int, block: int):
    """(y, h, [(x, w), ...]) per row of global `block`-pixel blocks: the runs of blocks holding
    a set pixel of `mask` (pixels [y0, y0+h) x [x0, x0+w))."""
    h, w = mask.shape
    for row in tiles(y0, x0, h, w, block, aligned=True):
        if row.col:
            continue
        band = mask[row.y - y0 : row.y - y0 + row.h]
        hits = [t for t in tiles(row.y, x0, row.h, w, block, aligned=True)
                if band[:, t.x - x0 : t.x - x0 + t.w].any()]  # fmt: skip
        runs: list[tuple[int, int]] = []
        for t in hits:
            if runs and runs[-1][0] + runs[-1][1] == t.x:
                runs[-1] = (runs[-1][0], runs[-1][1] + t.w)
            else:
                runs.append((t.x, t.w))
        if runs:
            yield row.y, row.h, runs


_WORLDS: dict[tuple, World] = {}
_LOCK = threading.Lock()


def open_world(spec: WorldSpec, seed: int, threads: int = 1, device: str = "cpu") -> World:
    """The World of (spec, seed, threads, device) in this process, opened on first use."""
    key = (spec, seed, threads, device)
    with _LOCK:
        if key not in _WORLDS:
            _WORLDS[key] = World(spec, seed, threads, device)
        return _WORLDS[key]


def render_region(
    world: World,
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
    """As tilegen.model.render_region, for a world: (C, h, w) float32, or quantised piece by
    piece; windows of `tile` on the global grid (any tiling gives the same bytes)."""

    def window(ty: int, tx: int, th: int, tw: int) -> np.ndarray:
        return world.window(seed, ty, tx, th, tw, period)

    return assemble(window, world.info, y0, x0, h, w, tile or world.models[0].tile, dtype, cancel)
