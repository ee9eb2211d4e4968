"""A world's layout: an image or a Zarr array whose pixels name which model paints where.

    legend = parse_labels(["#3a7d2c=grass.onnx", "2=rock.onnx"])
    layout = read_layout("map.png", legend)      # layout.labels.cells(rows, cols): label indices

A label is matched by exact colour (`#rrggbb`, RGB layouts and palette layouts), by palette index
(palette layouts) or by value (greyscale layouts, 8 or 16 bit, and Zarr layouts). Keys naming the
same model file give one label, so there is no transition between them. Every layout pixel must
be named by the legend: an unknown colour is a one-line error naming it and where it first
appears. An image is decoded whole; a Zarr array (tilegen/zarr_layout.py), for layouts too large
for memory, is read chunk by chunk. Either way the field (tilegen/warp.py) reads label indices
through `LabelGrid.cells`, a rectangle of cells at a time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tilegen import memory
from tilegen.errors import UserError
from tilegen.model import file_sha256

MAX_LABELS = 64  # a label map beyond this is noise, not a layout
_COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")
ZARR_HINT = ("use a Zarr layout (a 2-D integer array, LAYOUT.zarr, read chunk by chunk: README, "
             "'Worlds')")  # fmt: skip


@dataclass(frozen=True)
class Legend:
    """--label KEY=MODEL, in the order given: keys ("#rrggbb" or "17") and model paths."""

    keys: tuple[str, ...]
    paths: tuple[str, ...]

    @property
    def models(self) -> tuple[str, ...]:
        """The distinct model files, in order of first mention: label i paints models[i]."""
        return tuple(dict.fromkeys(self.paths))


class LabelGrid(Protocol):
    """A layout's label indices (into Layout.models), read a rectangle of cells at a time."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def cells(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(len(rows), len(cols)) uint8: the labels at rows x cols (indices inside the layout)."""
        ...


class ArrayLabels:
    """A LabelGrid held whole in memory (an image layout's)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array  # (H, W) uint8

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])

    def cells(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.array[rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class Layout:
    labels: LabelGrid
    models: tuple[str, ...]
    sha256: str | None  # of the layout's content (read_layout says what); None: not checked
    fingerprint: str  # what a worker compares with the plan's to know it reads the same layout

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape


def parse_labels(specs: list[str]) -> Legend:
    """`--label KEY=MODEL` options: a one-line UserError for a malformed one, a key given twice
    or a model file that does not exist."""
    if not specs:
        raise UserError("no --label given: name each layout colour's model, e.g. "
                        "--label '#3a7d2c=grass.onnx'")  # fmt: skip
    keys, paths = [], []
    for spec in specs:
        key, sep, path = spec.partition("=")
        key, path = key.strip(), path.strip()
        if not sep or not key:
            raise UserError(f"--label {spec!r}: use COLOUR=MODEL.onnx ('#3a7d2c=grass.onnx') or "
                            "VALUE=MODEL.onnx (a palette index or grey value)")  # fmt: skip
        if not path:
            raise UserError(f"--label {spec!r}: the label {key} has no model after '='")
        key = _key(key, spec)
        if key in keys:
            raise UserError(f"--label {spec!r}: {key} is given twice")
        if not Path(path).is_file():
            raise UserError(f"--label {spec!r}: no model file {path}")
        keys.append(key)
        paths.append(str(Path(path).resolve()))
    if len(set(paths)) > MAX_LABELS:
        raise UserError(f"--label: {len(set(paths))} models; a world takes at most {MAX_LABELS}")
    return Legend(tuple(keys), tuple(paths))


def _key(text: str, spec: str) -> str:
    """'#3A7D2C' -> '#3a7d2c'; '17' -> '17'."""
    if text.isdigit():
        return str(int(text))
    m = _COLOUR.fullmatch(text)
    if m is None:
        raise UserError(f"--label {spec!r}: {text!r} is neither a colour #rrggbb nor an integer")
    return "#" + m.group(1).lower()


def is_zarr(path: str | os.PathLike) -> bool:
    """A Zarr layout: a path ending in .zarr, or a folder (an array inside a Zarr group)."""
    return Path(path).suffix.lower() == ".zarr" or Path(path).is_dir()


def value_index(legend: Legend) -> dict[str, int]:
    """Each legend key -> its label (index into legend.models)."""
    return {k: legend.models.index(p) for k, p in zip(legend.keys, legend.paths)}


def no_model(name: str, what: str, key: str, y: int, x: int) -> UserError:
    """The one line for a layout colour or value (`key`, first at row y, column x) no --label
    names."""
    return UserError(f"layout {name}: {what} {key} (first at row {y}, column {x}) has no model: "
                     f"add --label '{key}=MODEL.onnx'")  # fmt: skip


def read_layout(path: str | os.PathLike, legend: Legend, check: bool = True) -> Layout:
    """The layout's labels (index into legend.models per pixel), every pixel checked against the
    legend: one line for an unreadable layout, an unknown colour or value, or one too large.

    An image's sha256 and fingerprint are its file's. A Zarr layout's are tilegen/zarr_layout.py's;
    `check=False` (a worker, after planning) skips its streamed check and sha256 (None)."""
    if is_zarr(path):
        from tilegen.zarr_layout import read_zarr_layout

        return read_zarr_layout(Path(path), legend, check)
    return _read_image_layout(Path(path), legend)


def _read_image_layout(path: Path, legend: Legend) -> Layout:
    from PIL import Image

    try:
        with Image.open(path) as im:
            h, w = im.height, im.width
            memory.require(16 * h * w, f"reading the layout {path.name} ({h}x{w}) whole",
                           ZARR_HINT)  # fmt: skip
            keys, kind = _decoded(im)
    except Image.DecompressionBombError:
        raise UserError(f"layout {path}: more than {memory.MAX_PIXELS} pixels, too many for an "
                        f"image layout; {ZARR_HINT}")  # fmt: skip
    except OSError as e:
        raise UserError(f"layout {path}: not a readable PNG/TIFF image ({e})")
    index = value_index(legend)
    codes, inverse = np.unique(keys, return_inverse=True)
    lut = np.empty(len(codes), np.uint8)
    for i, code in enumerate(codes):
        names = [n for n in _names(int(code), kind) if n in index]
        if not names:
            y, x = np.argwhere(keys == code)[0]
            raise no_model(path.name, _what(kind), _names(int(code), kind)[0], y, x)
        lut[i] = index[names[0]]
    labels = lut[inverse.reshape(keys.shape)]
    sha = file_sha256(path)
    return Layout(ArrayLabels(labels), legend.models, sha, sha)


def _decoded(im) -> tuple[np.ndarray, str]:
    """(H, W) integer keys and how to name them: "colour" (0xRRGGBB), "value" (grey or palette
    index, named by number; a palette index is also reachable by its colour)."""
    if getattr(im, "n_frames", 1) > 1:
        raise OSError("an animated image or a stack")
    if im.mode == "P":
        index = np.asarray(im, np.int64)
        pal = np.asarray(im.getpalette() or [], np.int64).reshape(-1, 3)
        colour = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        return (index << 24) | colour[np.minimum(index, len(colour) - 1)], "palette"
    if im.mode in ("L", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im, np.int64), "value"
    rgb = np.asarray(im.convert("RGB"), np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], "colour"


def _names(code: int, kind: str) -> list[str]:
    """What a legend may call a key: its colour, and a palette entry also by its index."""
    if kind == "value":
        return [str(code)]
    colour = f"#{code & 0xFFFFFF:06x}"
    return [colour, str(code >> 24)] if kind == "palette" else [colour]


def _what(kind: str) -> str:
    return {"value": "value", "palette": "colour", "colour": "colour"}[kind]
