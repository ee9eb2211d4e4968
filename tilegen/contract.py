"""The ONNX contract: what a tilegen .onnx file says about itself in metadata_props.

export/ writes these keys, tilegen/ reads them and nothing else (format version 1, or 2 for a
model that ends with a patch projection, or 3 for a material model). Every value is a string;
structured values are JSON. A
consumer in another runtime needs only this table:

    tilegen.format_version   "1"; "2" when arch has "tr" (older readers would ignore it)
    tilegen.version          tilegen version that wrote the file
    tilegen.form             "windowed": inputs z0..z{K-1} (1, C_noise, H_k, W_k) float32 noise
                             windows, output "image" (1, C_out, H, W);
                             "self-contained": inputs seed, y0, x0 (int64 scalars), output the
                             tile; without tilegen.tile (the dynamic form, format version 2) also
                             inputs height, width, period_y, period_x and an output "contract"
    tilegen.arch             {"levels", "t0", "tb", "tj", "noise_channels", "out_channels"},
                             and "tr" (format 2: the final patch projection's trim per side)
                             (window arithmetic: tilegen/windows.py, docs/FORMAT.md)
    tilegen.noise            {"spec": "tilegen-hash32", "version": 1, "range": [0, 1]}
    tilegen.value_range      [0, 1]: output values; clip, then quantise
    tilegen.channels         channel order, e.g. "RGB"; a material: comma-separated labels,
                             "albedo.r,albedo.g,albedo.b,normal.x,normal.y,normal.z,height"
    tilegen.material         a material model only (format 3): its layout, {"version": 1,
                             "normal": "gl"|"dx", "maps": [{"role", "first", "count", "bits"}]}
                             (tilegen/material.py); normal channels are renormalised after the
                             graph (docs/FORMAT.md section 10)
    tilegen.exemplar_sha256  hash of the exemplar's pixels the model was trained on
    tilegen.training         training settings (JSON object)
    tilegen.tile             self-contained form only: [height, width] of the tile it returns
    tilegen.period           self-contained form only, when periodic: [py, px], the output period
                             in full-resolution pixels chosen at export (absent: not periodic)
    tilegen.arithmetic       an integer-exact model only: {"kind": "integer", "version": 1, ...}
                             (export/integer.py, docs/FORMAT.md section 11); informative: the
                             graph's inputs, outputs and windows are those of any model
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from tilegen import __version__
from tilegen.errors import UserError
from tilegen.noise import NOISE_SPEC, NOISE_SPEC_VERSION
from tilegen.windows import Arch, period_fits

FORMAT_VERSION = 3  # the newest this tilegen reads; files are written at the oldest that fits
PREFIX = "tilegen."
FIXED_INPUTS = ["seed", "y0", "x0"]
DYNAMIC_INPUTS = ["seed", "y0", "x0", "height", "width", "period_y", "period_x"]
CONTRACT_OUTPUT = "contract"
# The one rounding rule from model values to integers (tilegen.model.quantize_planar), exactly.
QUANTISATION = (
    "u = v if value_range == [0, 1] else f32(f32(v - lo) * f32(1 / (hi - lo))); "
    "u = min(max(u, 0), 1); q = round_half_to_even(f32(u * top)), top = 255 (8-bit) or 65535; "
    "f32() rounds to the nearest float32 (JavaScript: Math.fround; numpy: float32 arithmetic)"
)


@dataclass
class ModelInfo:
    arch: Arch
    noise_channels: int = 3
    out_channels: int = 3
    channels: str = "RGB"
    form: str = "windowed"
    exemplar_sha256: str = ""
    training: dict = field(default_factory=dict)
    value_range: tuple[float, float] = (0.0, 1.0)
    tile: tuple[int, int] | None = None
    period: tuple[int, int] | None = None
    version: str = __version__
    material: dict | None = None  # a material model's layout (tilegen.material.layout_of)
    # an integer-exact model's arithmetic (export/integer.py; docs/FORMAT.md section 11)
    arithmetic: dict | None = None

    def input_names(self) -> list[str]:
        """The windowed graph's inputs (z0..z{K-1})."""
        return [f"z{k}" for k in range(self.arch.levels)]

    @property
    def dynamic(self) -> bool:
        """A self-contained model whose tile size (and period) are inputs."""
        return self.form == "self-contained" and self.tile is None

    def graph_inputs(self) -> list[str]:
        """The inputs of the graph of this form."""
        if self.form != "self-contained":
            return self.input_names()
        return list(DYNAMIC_INPUTS if self.dynamic else FIXED_INPUTS)

    def graph_outputs(self) -> list[str]:
        return ["image", CONTRACT_OUTPUT] if self.dynamic else ["image"]

    def format_version(self) -> int:
        """1, except the dynamic self-contained form and a model ending with a patch projection
        (2), and a material model (3): older readers refuse them cleanly instead of misreading
        them (a reader of 2 would write a material's channels without renormalising normals)."""
        if self.material is not None:
            return 3
        return 2 if self.dynamic or self.arch.tr else 1


def to_metadata(info: ModelInfo) -> dict[str, str]:
    """The metadata_props of a tilegen ONNX file: format version 1, or 2 with a projection."""
    a = info.arch
    arch = {"levels": a.levels, "t0": a.t0, "tb": a.tb, "tj": a.tj}
    if a.tr:
        arch["tr"] = a.tr
    arch |= {"noise_channels": info.noise_channels, "out_channels": info.out_channels}
    meta = {
        "version": info.version,
        "form": info.form,
        "arch": json.dumps(arch),
        "noise": json.dumps({"spec": NOISE_SPEC, "version": NOISE_SPEC_VERSION, "range": [0, 1]}),
        "value_range": json.dumps(list(info.value_range)),
        "channels": info.channels,
        "exemplar_sha256": info.exemplar_sha256,
        "training": json.dumps(info.training, sort_keys=True),
    }
    if info.tile is not None:
        meta["tile"] = json.dumps(list(info.tile))
    if info.period is not None:
        meta["period"] = json.dumps(list(info.period))
    if info.material is not None:
        meta["material"] = json.dumps(info.material, sort_keys=True)
    if info.arithmetic is not None:
        meta["arithmetic"] = json.dumps(info.arithmetic, sort_keys=True)
    # Last on purpose: metadata_props is the last field of the file, so a truncated file always
    # loses format_version (or fails to parse) and is refused as incomplete.
    meta["format_version"] = str(info.format_version())
    return {PREFIX + k: v for k, v in meta.items()}


def runtime_contract(info: ModelInfo) -> dict:
    """What a runtime needs to call the graph and use its output, as one JSON-able dict: written
    beside an exported file (MODEL.onnx.json) and, in the dynamic form, as the graph's `contract`
    output (onnxruntime's JavaScript API cannot read metadata_props)."""
    a = info.arch
    scalar = {"type": "int64", "shape": []}
    return {
        "tilegen_format_version": info.format_version(),
        "tilegen_version": info.version,
        "form": info.form,
        "inputs": (
            {n: scalar for n in info.graph_inputs()}
            if info.form == "self-contained"
            else {n: {"type": "float32", "shape": [1, info.noise_channels, f"{n}_height",
                                                   f"{n}_width"]} for n in info.input_names()}
        ),  # fmt: skip
        "outputs": {"image": {"type": "float32", "shape": [1, info.out_channels, "H", "W"]}},
        "channels": info.channels,
        "value_range": list(info.value_range),
        "quantisation": QUANTISATION,
        "stride": a.stride,
        "tile": list(info.tile) if info.tile else None,
        "period": list(info.period) if info.period else None,
        "arch": {"levels": a.levels, "t0": a.t0, "tb": a.tb, "tj": a.tj,
                 "noise_channels": info.noise_channels, "out_channels": info.out_channels},
        "noise": {"spec": NOISE_SPEC, "version": NOISE_SPEC_VERSION, "range": [0, 1]},
        "exemplar_sha256": info.exemplar_sha256,
        "material": info.material,
        "arithmetic": info.arithmetic,
    }  # fmt: skip


# Bounds of every number a model's metadata may hold: beyond them the file lies (a model of 40
# levels would ask for windows of 2^39 pixels), and it is refused before anything is allocated.
MAX_LEVELS, MAX_TRIM, MAX_CHANNELS, MAX_SIDE = 16, 64, 64, 1 << 40


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{what} {json.dumps(value)}, not an integer in {lo} .. {hi}")
    return value


def _pair(value: object, what: str, lo: int, hi: int) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{what} {json.dumps(value)}, not two integers")
    return _int(value[0], what, lo, hi), _int(value[1], what, lo, hi)


def _json(meta: dict, key: str, kind: type, default: str | None = None) -> object:
    value = json.loads(meta[key] if default is None else meta.get(key, default))
    if not isinstance(value, kind):
        raise ValueError(f"{key} is not a JSON {kind.__name__}")
    return value


def _parse(meta: dict[str, str]) -> tuple[ModelInfo, dict]:
    """(ModelInfo, the noise block) from the tilegen.* entries, every value checked for type,
    range and finiteness (ValueError, KeyError or TypeError naming the first that is not)."""
    a = _json(meta, "arch", dict)
    trims = {k: _int(a.get(k, 0 if k == "tr" else None), f"arch.{k}", 0, MAX_TRIM)
             for k in ("t0", "tb", "tj", "tr")}  # fmt: skip
    arch = Arch(_int(a.get("levels"), "arch.levels", 1, MAX_LEVELS), **trims)
    noise = _json(meta, "noise", dict)
    _int(noise.get("version", 0), "noise.version", 0, 1 << 16)
    lo_hi = _json(meta, "value_range", list, "[0, 1]")
    if not (len(lo_hi) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                    for v in lo_hi)):  # fmt: skip
        raise ValueError(f"value_range {json.dumps(lo_hi)}, not two numbers")
    if not (math.isfinite(lo_hi[0]) and math.isfinite(lo_hi[1]) and lo_hi[0] < lo_hi[1]):
        raise ValueError(f"value_range {json.dumps(lo_hi)}, not finite with low < high")
    form = meta.get("form", "windowed")
    if form not in ("windowed", "self-contained"):
        raise ValueError(f"form {form!r}: upgrade tilegen if a newer one wrote it")
    period = _pair(json.loads(meta["period"]), "period", 1, MAX_SIDE) if "period" in meta else None
    if period and not all(period_fits(p, arch.stride) for p in period):
        raise ValueError(f"period {list(period)}, not a multiple of the stride {arch.stride}")
    training = _json(meta, "training", dict, "{}")
    channels = meta.get("channels", "")
    if len(channels) > 4096:
        raise ValueError("channels: a label list longer than any model has")
    info = ModelInfo(
        arch=arch,
        noise_channels=_int(a.get("noise_channels"), "arch.noise_channels", 1, MAX_CHANNELS),
        out_channels=_int(a.get("out_channels"), "arch.out_channels", 1, MAX_CHANNELS),
        channels=channels,
        form=form,
        exemplar_sha256=meta.get("exemplar_sha256", ""),
        training=training,
        value_range=(float(lo_hi[0]), float(lo_hi[1])),
        tile=_pair(json.loads(meta["tile"]), "tile", 1, 1 << 16) if "tile" in meta else None,
        period=period,
        version=meta.get("version", "?"),
        material=_json(meta, "material", dict) if "material" in meta else None,
        arithmetic=_json(meta, "arithmetic", dict) if "arithmetic" in meta else None,
    )
    return info, noise


MAX_MODEL_BYTES = 1 << 30  # tilegen models weigh about a megabyte; protobuf stops at 2 GiB


def check_model_file(path: str | os.PathLike) -> Path:
    """The path, if it can be a tilegen .onnx file by its size and first byte (every ONNX model
    starts with its ir_version field, tag 0x08); checked before the file is read whole, so a
    4 GiB file or a photo is refused in one line without reading it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p} not found: give the path of a tilegen .onnx file")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(1)
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}")
    if size == 0:
        raise UserError(f"{p} is empty: not an ONNX model")
    if size > MAX_MODEL_BYTES:
        raise UserError(
            f"{p} holds {size / 2**30:.1f} GiB: far larger than a tilegen model, not read"
        )
    if head != b"\x08":
        raise UserError(f"{p} is not a readable ONNX model (it does not start as one does)")
    return p


def from_metadata(props: dict[str, str], source: str = "model") -> ModelInfo:
    """Parse and validate metadata_props; a one-line UserError for foreign or newer files."""
    meta = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
    if meta and "format_version" not in meta:
        raise UserError(
            f"{source}: tilegen metadata is incomplete (no format_version: a truncated or edited "
            "file): re-export the model"
        )
    if "format_version" not in meta:
        raise UserError(
            f"{source} is not a tilegen model (no tilegen metadata): export one with "
            "'tilegen export MODEL.pt -o MODEL.onnx'"
        )
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise UserError(f"{source}: unreadable tilegen format_version {meta['format_version']!r}")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{source} uses tilegen model format {version}, newer than this tilegen reads "
            f"({FORMAT_VERSION}): upgrade tilegen"
        )
    try:
        info, noise = _parse(meta)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{source}: damaged tilegen metadata ({e}): re-export the model")
    if info.material is not None:
        from tilegen.material import check_layout

        check_layout(info.material, info.out_channels, source)
    if noise.get("spec") != NOISE_SPEC or noise.get("version", 0) > NOISE_SPEC_VERSION:
        raise UserError(
            f"{source} needs noise {noise.get('spec')} v{noise.get('version')}, which this "
            f"tilegen does not implement ({NOISE_SPEC} v{NOISE_SPEC_VERSION}): upgrade tilegen"
        )
    return info
