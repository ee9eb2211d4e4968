"""A world's layout as a Zarr array, for layouts too large for memory: read chunk by chunk.

    layout = read_layout("map.zarr", legend)     # tilegen/layout.py hands a .zarr path here
    layout.labels.cells(rows, cols)             # decodes only the chunks those cells lie in

The array is 2-D (rows, columns) of integers, each value a label as a greyscale layout's
(`--label 17=rock.onnx`). Planning reads every chunk once, one at a time: each value must be
named by the legend, and the values feed the layout's sha256 (`content_sha256`). A worker does not
repeat that: it compares the store's `fingerprint` (its files' bytes) with the plan's, and then
decodes a chunk when a window first needs it, keeping the latest in a bounded cache.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from tilegen import memory
from tilegen.errors import UserError, one_line
from tilegen.layout import Layout, Legend, no_model, value_index

CACHE_BYTES = 64 * 2**20  # decoded label chunks kept per open layout (one byte per cell)
BYTES_PER_CELL = 32  # decoding a chunk: its values, their positions in the legend, the labels
HASH_SPEC = "tilegen-zarr-layout/1"  # in the hashed header: bump if content_sha256 changes


def read_zarr_layout(path: Path, legend: Legend, check: bool = True) -> Layout:
    """The Zarr array at `path` as a Layout: checked and hashed chunk by chunk unless `check` is
    False (then sha256 is None and the fingerprint vouches for the planned, checked layout)."""
    array = open_array(path)
    fp = fingerprint(path)  # before the check: a store changed during it fails the workers' check
    labels = ZarrLabels(array, legend, path.name)
    return Layout(labels, legend.models, content_sha256(labels) if check else None, fp)


def open_array(path: Path):
    """The zarr array at `path`, refused in one line unless it is 2-D of integers."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"layout {path}: not a readable Zarr array ({one_line(e)}); give the "
                        "folder of a 2-D integer array (README, 'Worlds')")  # fmt: skip
    if not isinstance(node, zarr.Array):
        inside = ", ".join(sorted(node.array_keys())[:3]) or "none"
        raise UserError(f"layout {path}: a Zarr group, not an array (its arrays: {inside}); give "
                        "the array's folder, e.g. GROUP.zarr/NAME")  # fmt: skip
    if node.ndim != 2:
        raise UserError(f"layout {path}: a {node.ndim}-D array of shape {node.shape}; a layout "
                        "is 2-D (rows, columns): store one label per cell")  # fmt: skip
    if node.dtype.kind not in "iu":
        raise UserError(f"layout {path}: {node.dtype} values; a layout holds integer labels: "
                        "store it as integers, e.g. zarr.create_array(..., "
                        "data=a.astype('uint8'))")  # fmt: skip
    return node


class ZarrLabels:
    """A LabelGrid read from a Zarr array chunk by chunk (the array's own chunks, or its inner
    chunks when sharded): `decoded` counts the chunks decoded, the last CACHE_BYTES of them
    kept. Safe to share between threads."""

    def __init__(self, array, legend: Legend, name: str) -> None:
        self.array, self.name = array, name
        self.chunk = (int(array.chunks[0]), int(array.chunks[1]))
        self.grid = (int(array.cdata_shape[0]), int(array.cdata_shape[1]))  # chunks per axis
        memory.require(BYTES_PER_CELL * self.chunk[0] * self.chunk[1],
                       f"decoding the layout {name}'s {self.chunk[0]}x{self.chunk[1]} chunks",
                       "rewrite it with smaller chunks, e.g. 1024x1024")  # fmt: skip
        self.keys, self.key_labels = _value_table(legend, array.dtype)
        self.decoded = 0
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])

    def cells(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(len(rows), len(cols)) uint8 labels, from the chunks those cells lie in."""
        (ch, cw), out = self.chunk, np.empty((rows.size, cols.size), np.uint8)
        by, bx = rows // ch, cols // cw
        for cy in np.unique(by):
            for cx in np.unique(bx):
                my, mx = by == cy, bx == cx
                labels = self.labels(int(cy), int(cx))
                out[np.ix_(my, mx)] = labels[np.ix_(rows[my] - cy * ch, cols[mx] - cx * cw)]
        return out

    def labels(self, cy: int, cx: int) -> np.ndarray:
        """Chunk (cy, cx)'s labels (uint8), from the cache or decoded."""
        with self._lock:
            if (cy, cx) in self._cache:
                self._cache.move_to_end((cy, cx))
                return self._cache[(cy, cx)]
            values, labels, known = self.chunk_at(cy, cx)
            if not known.all():  # only a layout changed after planning gets here
                raise self.unknown(values, known, cy, cx)
            self.decoded += 1
            self._cache[(cy, cx)] = labels
            held = sum(a.nbytes for a in self._cache.values())
            while held > CACHE_BYTES and len(self._cache) > 1:
                held -= self._cache.popitem(last=False)[1].nbytes
            return labels

    def chunk_at(self, cy: int, cx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, labels uint8, known bool) of chunk (cy, cx), read from the store."""
        (ch, cw) = self.chunk
        values = self.array[cy * ch : (cy + 1) * ch, cx * cw : (cx + 1) * cw]
        if self.keys.size == 0:
            return values, np.zeros(values.shape, np.uint8), np.zeros(values.shape, bool)
        pos = np.minimum(np.searchsorted(self.keys, values), self.keys.size - 1)
        return values, self.key_labels[pos], self.keys[pos] == values

    def first_unknown(self, known: np.ndarray, cy: int, cx: int) -> tuple[int, int] | None:
        """(row, column) in the layout of the chunk's first value the legend does not name."""
        if known.all():
            return None
        y, x = np.argwhere(~known)[0]
        return cy * self.chunk[0] + int(y), cx * self.chunk[1] + int(x)

    def unknown(self, values: np.ndarray, known: np.ndarray, cy: int, cx: int) -> UserError:
        y, x = self.first_unknown(known, cy, cx)
        return self.no_model(int(values[y - cy * self.chunk[0], x - cx * self.chunk[1]]), y, x)

    def no_model(self, value: int, y: int, x: int) -> UserError:
        if value < 0:
            return UserError(f"layout {self.name}: value {value} (first at row {y}, column {x}) "
                             "is negative; label values are integers from 0")  # fmt: skip
        return no_model(self.name, "value", str(value), y, x)


def _value_table(legend: Legend, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(the legend's values that `dtype` can hold, sorted, in `dtype`; their labels, uint8)."""
    limits = np.iinfo(dtype)
    index = value_index(legend)
    pairs = sorted((int(k), i) for k, i in index.items() if k.isdigit())
    pairs = [(v, i) for v, i in pairs if limits.min <= v <= limits.max]
    keys = np.array([v for v, _ in pairs], dtype)
    return keys, np.array([i for _, i in pairs], np.uint8)


def content_sha256(labels: ZarrLabels) -> str:
    """Every value checked against the legend (one line naming the first unknown one, in row-major
    order) and hashed, one chunk in memory at a time. The sha256 covers a header (HASH_SPEC, the
    shape, the dtype and the chunk shape), then each chunk's values in C order, little-endian,
    chunks in row-major order: the same values chunked otherwise hash differently."""
    a = labels.array
    header = {"spec": HASH_SPEC, "shape": list(a.shape), "dtype": a.dtype.newbyteorder("<").str,
              "chunks": list(labels.chunk)}  # fmt: skip
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for cy in range(labels.grid[0]):
        first = None  # the band's first unknown value: (row, column, value)
        for cx in range(labels.grid[1]):
            values, _, known = labels.chunk_at(cy, cx)
            h.update(np.ascontiguousarray(values, values.dtype.newbyteorder("<")).tobytes())
            at = labels.first_unknown(known, cy, cx)
            if at is not None and (first is None or at < first[:2]):
                y, x = at[0] - cy * labels.chunk[0], at[1] - cx * labels.chunk[1]
                first = (*at, int(values[y, x]))
        if first is not None:
            raise labels.no_model(first[2], first[0], first[1])
    return h.hexdigest()


def fingerprint(path: Path) -> str:
    """sha256 over the array folder's files (relative path, size and bytes, in path order): its
    metadata and its compressed chunks. Cheap enough for every worker to compare with the plan's
    (it reads the store's compressed bytes and decodes nothing), and sound: the same bytes decode
    to the same values, which planning checked and hashed."""
    h = hashlib.sha256()
    files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    for rel, p in files:
        h.update(f"{rel}\0{p.stat().st_size}\0".encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
