"""PBR materials: aligned maps of one surface, learned as one exemplar with C channels.

A material is a set of maps of the same surface at the same size: albedo (base colour, RGB),
normal (RGB-encoded unit vectors), roughness, height, ambient occlusion, metallic (grey). The
patch-OT engine is channel-agnostic, so a material is stacked into one (H, W, C) exemplar in the
fixed role order of ROLES; a pebble is then a pebble in every map at the same place, and every
exact-tiling guarantee carries over. `layout` says which channels hold which map.

Normals are kept internally in the OpenGL convention (+Y: green points up the image); DirectX
maps (green down) are flipped on reading and flipped back on writing when asked.

Torch-free, like the rest of `tilegen/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tilegen.errors import UserError
from tilegen.imageio import IMAGE_SUFFIXES, _png_bitdepth, image_header, read_image

ROLES: dict[str, int] = {  # role -> channels, in stacking order
    "albedo": 3,
    "normal": 3,
    "roughness": 1,
    "height": 1,
    "ao": 1,
    "metallic": 1,
}

# File-name words that name a role (ambientCG, 3dtextures.me, Poly Haven and plain names),
# matched against the last word of the stem, or its last two words joined ("nor_gl").
_WORDS: dict[str, tuple[str, str | None]] = {
    **dict.fromkeys(
        ["albedo", "color", "colour", "basecolor", "diffuse", "diff", "col"], ("albedo", None)
    ),
    **dict.fromkeys(["normal", "nrm", "nor", "norm"], ("normal", None)),
    **dict.fromkeys(["normalgl", "norgl", "nrmgl", "normalopengl"], ("normal", "gl")),
    **dict.fromkeys(["normaldx", "nordx", "nrmdx", "normaldirectx"], ("normal", "dx")),
    **dict.fromkeys(["roughness", "rough", "rgh"], ("roughness", None)),
    **dict.fromkeys(["height", "displacement", "disp", "heightmap", "bump"], ("height", None)),
    **dict.fromkeys(["ao", "ambientocclusion", "occlusion"], ("ao", None)),
    **dict.fromkeys(["metallic", "metalness", "metal"], ("metallic", None)),
}


def detect_role(path: str | Path) -> tuple[str, str | None] | None:
    """(role, normal convention or None) from a file name, or None if no role is named.

    `Bark014_1K_NormalGL.png` -> ("normal", "gl"); `Pebbles_025_basecolor.jpg` -> ("albedo",
    None); `height.png` -> ("height", None); `notes.txt` -> None.
    """
    words = [w for w in re.split(r"[_\-. ]+", Path(path).stem.lower()) if w]
    while words and re.fullmatch(r"\d+k?", words[-1]):  # a trailing resolution: _1k, _2048
        words.pop()
    for candidate in (
        words[-2] + words[-1] if len(words) > 1 else None,
        words[-1] if words else None,
    ):
        if candidate in _WORDS:
            return _WORDS[candidate]
    return None


@dataclass
class Material:
    """Aligned maps of one surface: role -> (H, W, channels) float32 in [0, 1], normals GL."""

    maps: dict[str, np.ndarray]
    normal_convention: str = "gl"  # the input's: output is written in it unless asked otherwise
    sources: dict[str, str] = field(default_factory=dict)  # role -> file it was read from
    bits: dict[str, int] = field(default_factory=dict)  # role -> 8 or 16, the source file's depth

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLES if r in self.maps]

    def layout(self) -> list[tuple[str, int, int]]:
        """[(role, first channel, end channel)] of the stacked exemplar."""
        out, c = [], 0
        for role in self.roles:
            out.append((role, c, c + ROLES[role]))
            c += ROLES[role]
        return out

    def stack(self) -> np.ndarray:
        """The (H, W, C) exemplar: every map's channels in ROLES order."""
        return np.concatenate([self.maps[r] for r in self.roles], axis=2)


def unstack(image: np.ndarray, layout: list[tuple[str, int, int]]) -> dict[str, np.ndarray]:
    """The maps of a stacked (H, W, C) image; normals renormalised to unit length, z >= 0."""
    maps = {role: image[:, :, a:b] for role, a, b in layout}
    if "normal" in maps:
        maps["normal"] = renormalize_normals(maps["normal"])
    return maps


def renormalize_normals(encoded: np.ndarray) -> np.ndarray:
    """RGB-encoded normals (H, W, 3), [0, 1] -> [-1, 1], made unit length with z >= 0, re-encoded
    (the same float32 arithmetic as `finish_planar`)."""
    planar = np.ascontiguousarray(np.moveaxis(encoded.astype(np.float32), -1, 0))
    return np.moveaxis(_unit_normals(planar), 0, -1)


def _unit_normals(enc: np.ndarray) -> np.ndarray:
    """(3, ...) encoded normals -> unit length, z >= 0, encoded; (0, 0, 1) where all vanish.

    Element-wise float32 operations only, each correctly rounded, so a pixel's result does not
    depend on the array around it: tiles renormalised alone equal the whole renormalised."""
    one, half = np.float32(1.0), np.float32(0.5)
    x, y = enc[0] * 2 - one, enc[1] * 2 - one
    z = np.maximum(enc[2] * 2 - one, np.float32(0.0))
    length = np.sqrt(x * x + y * y + z * z)
    ok = length > np.float32(1e-6)
    inv = one / np.maximum(length, np.float32(1e-6))
    out = np.empty(enc.shape, np.float32)
    out[0] = np.where(ok, x * inv, 0) * half + half
    out[1] = np.where(ok, y * inv, 0) * half + half
    out[2] = np.where(ok, z * inv, 1) * half + half
    return out


def flip_green(normal: np.ndarray) -> np.ndarray:
    """OpenGL <-> DirectX: the green (y) component changes sign."""
    out = normal.copy()
    out[..., 1] = 1.0 - out[..., 1]
    return out


def _as_channels(img: np.ndarray, role: str, path: Path) -> np.ndarray:
    want = ROLES[role]
    if img.shape[2] in (2, 4):  # drop alpha
        img = img[:, :, : img.shape[2] - 1]
    if want == 1 and img.shape[2] == 3:
        if not (np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 0], img[..., 2])):
            raise UserError(f"{path}: a {role} map must be grey, but its channels differ")
        img = img[:, :, :1]
    if want == 3 and img.shape[2] == 1:
        if role == "normal":
            raise UserError(f"{path}: a normal map needs 3 channels (RGB), not 1")
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def find_maps(folder: str | Path) -> dict[str, tuple[Path, str | None]]:
    """role -> (file, normal convention hint) for the image files of `folder` that name a role.

    One-line UserError when two files name the same role or no file names albedo.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of material maps")
    found: dict[str, tuple[Path, str | None]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        hit = detect_role(path)
        if hit is None:
            continue
        role, convention = hit
        if role in found:
            raise UserError(
                f"{folder}: both {found[role][0].name} and {path.name} look like the {role} map: "
                "keep one, or give the maps with --map ROLE=PATH"
            )
        found[role] = (path, convention)
    return found


def source_bits(path: Path) -> int:
    """8 or 16: the depth of a map's file (a 16-bit height map is written back at 16 bits)."""
    if path.suffix.lower() == ".png":
        return 16 if _png_bitdepth(path) == 16 else 8
    return 16 if image_header(path)[3] > 1 else 8


def read_material(
    maps: dict[str, str | Path] | str | Path, normal: str | None = None, default: str = "gl"
) -> Material:
    """A Material from a folder (roles from file names) or from {role: path}.

    `normal`: "gl" or "dx", the normal map's convention; None: from its file name (NormalGL,
    NormalDX), else `default`. Every problem is a one-line UserError: an unknown role, a missing
    albedo, maps of different sizes, a grey normal map.
    """
    if isinstance(maps, (str, Path)):
        hits = find_maps(maps)
        paths = {role: p for role, (p, _) in hits.items()}
        hinted = hits.get("normal", (None, None))[1]
    else:
        unknown = [r for r in maps if r not in ROLES]
        if unknown:
            raise UserError(f"unknown map role {unknown[0]!r}: use {', '.join(ROLES)}")
        paths = {r: Path(p) for r, p in maps.items()}
        hinted = (
            detect_role(paths["normal"])[1]
            if "normal" in paths and detect_role(paths["normal"])
            else None
        )
    if "albedo" not in paths:
        raise UserError(
            "a material needs an albedo (base colour) map: name it *_albedo.png, "
            "*_Color.png or *_basecolor.png, or pass --map albedo=PATH"
        )
    if normal not in (None, "gl", "dx"):
        raise UserError(f"--normal {normal}: use gl (OpenGL, green up) or dx (DirectX)")
    convention = normal or hinted or default
    loaded = {role: _as_channels(read_image(p), role, p) for role, p in paths.items()}
    size = loaded["albedo"].shape[:2]
    for role, img in loaded.items():
        if img.shape[:2] != size:
            raise UserError(
                f"the maps differ in size: {paths['albedo'].name} is {size[0]}x{size[1]} but "
                f"{paths[role].name} ({role}) is {img.shape[0]}x{img.shape[1]}; resize them alike"
            )
    if "normal" in loaded and convention == "dx":
        loaded["normal"] = flip_green(loaded["normal"])
    bits = {r: source_bits(p) for r, p in paths.items()}
    return Material(loaded, convention, {r: str(p) for r, p in paths.items()}, bits)


# --- consistency and a lit preview --------------------------------------------------------------


def height_slopes(height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dh/dx, dh/dy) of a (H, W, 1) height map, y pointing up the image, periodic differences."""
    h = height[..., 0].astype(np.float64)
    dx = (np.roll(h, -1, axis=1) - np.roll(h, 1, axis=1)) * 0.5
    dy = (np.roll(h, 1, axis=0) - np.roll(h, -1, axis=0)) * 0.5  # rows go down, y goes up
    return dx, dy


def normal_height_consistency(normal: np.ndarray, height: np.ndarray) -> float:
    """How well the normals follow the height map's slopes: the mean of the correlations of
    n_x with -dh/dx and of n_y with -dh/dy (OpenGL normals, n ~ (-dh/dx, -dh/dy, 1)).
    1: perfectly consistent; the shared CC0 sets score about 0.5-0.9."""
    dx, dy = height_slopes(height)
    n = normal.astype(np.float64) * 2.0 - 1.0
    corr = [
        np.corrcoef(n[..., 0].ravel(), -dx.ravel())[0, 1],
        np.corrcoef(n[..., 1].ravel(), -dy.ravel())[0, 1],
    ]
    return float(np.nan_to_num(np.mean(corr)))


def render_preview(
    maps: dict[str, np.ndarray], light: tuple[float, float, float] = (-0.5, 0.6, 0.62)
) -> np.ndarray:
    """The material on a flat plane lit from `light` (x right, y up, z towards the viewer):
    Lambert diffuse from albedo and normal, a Blinn-Phong highlight whose sharpness follows
    roughness, times ambient occlusion. (H, W, 3) float32 in [0, 1]."""
    albedo = maps["albedo"].astype(np.float32)
    h, w = albedo.shape[:2]
    n = (
        maps["normal"] * 2.0 - 1.0
        if "normal" in maps
        else np.float32([0, 0, 1]) * np.ones((h, w, 3))
    )
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    l_dir = np.asarray(light, np.float32) / np.linalg.norm(light)
    half = l_dir + np.float32([0, 0, 1])
    half /= np.linalg.norm(half)
    rough = maps["roughness"][..., 0] if "roughness" in maps else np.full((h, w), 0.8, np.float32)
    shininess = 2.0 / np.maximum(rough**4, 1e-3) - 2.0  # Beckmann-like roughness -> exponent
    diffuse = np.clip(n @ l_dir, 0.0, 1.0)[..., None]
    spec = (np.clip(n @ half, 0.0, 1.0) ** shininess * (1.0 - rough) * 0.5)[..., None]
    metal = maps["metallic"] if "metallic" in maps else 0.0
    ao = maps["ao"] if "ao" in maps else 1.0
    colour = albedo * (0.15 + 0.85 * diffuse) * (1.0 - 0.7 * metal) + spec * (
        (1.0 - metal) + metal * albedo
    )
    return np.clip(colour * ao, 0.0, 1.0).astype(np.float32)


# --- a material as an exemplar of C channels: its layout, and the commands' one reader ---------

LAYOUT_VERSION = 1
_AXES = {"albedo": ("r", "g", "b"), "normal": ("x", "y", "z")}

# Each map's weight in the patch-OT cost (a multiplier of its channels' squared differences):
# structure lives in the normals and the height, where colour alone misleads (x4 measured best
# for the normals' agreement with the height: bench/material_quality.py).
DEFAULT_WEIGHTS: dict[str, float] = {
    "albedo": 1.0,
    "normal": 4.0,
    "roughness": 1.0,
    "height": 4.0,
    "ao": 1.0,
    "metallic": 1.0,
}


def layout_of(material: Material) -> dict:
    """The JSON-able layout a model, a store and an output folder keep: which channels hold which
    map, the normal convention of the input and each source map's bit depth.

    {"version": 1, "normal": "gl", "maps": [{"role": "albedo", "first": 0, "count": 3,
    "bits": 8}, ...]}"""
    maps = [
        {"role": r, "first": a, "count": b - a, "bits": material.bits.get(r, 8)}
        for r, a, b in material.layout()
    ]
    return {"version": LAYOUT_VERSION, "normal": material.normal_convention, "maps": maps}


def check_layout(layout: object, channels: int, source: str = "the model") -> dict:
    """`layout` if it is a valid layout of `channels` channels, else a one-line UserError."""
    try:
        maps, c = layout["maps"], 0
        assert int(layout.get("version", 1)) <= LAYOUT_VERSION, "a newer layout version"
        assert layout.get("normal", "gl") in ("gl", "dx"), "an unknown normal convention"
        for m in maps:
            assert m["role"] in ROLES and m["count"] == ROLES[m["role"]], f"map {m['role']!r}"
            assert m["first"] == c and m.get("bits", 8) in (8, 16), f"map {m['role']!r}"
            c += m["count"]
        assert c == channels and maps and maps[0]["role"] == "albedo", "its channel count"
    except (AssertionError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise UserError(f"{source}: unreadable material layout ({e}): re-export or retrain it")
    return layout


def spans(layout: dict) -> list[tuple[str, int, int]]:
    """[(role, first channel, end channel)] of a layout (Material.layout's form)."""
    return [(m["role"], m["first"], m["first"] + m["count"]) for m in layout["maps"]]


def channel_labels(layout: dict) -> list[str]:
    """One label per channel: albedo.r, albedo.g, albedo.b, normal.x, ..., roughness, height."""
    out = []
    for m in layout["maps"]:
        axes = _AXES.get(m["role"])
        out += [f"{m['role']}.{a}" for a in axes] if axes else [m["role"]]
    return out


def parse_maps(options: list[str]) -> dict[str, Path]:
    """--map ROLE=PATH options -> {role: path} (one-line errors for a bad option)."""
    out: dict[str, Path] = {}
    for text in options:
        role, eq, path = text.partition("=")
        role = role.strip().lower()
        if not eq or not role or not path:
            raise UserError(f"--map {text}: give ROLE=PATH, e.g. --map normal=rock_normal.png")
        if role in out:
            raise UserError(f"--map {role}= is given twice: give each map once")
        out[role] = Path(path)
    return out


def is_material(path: Path | None, maps: list[str] | None = None) -> bool:
    """Whether a command's input is a material: a folder of maps, or --map options."""
    return bool(maps) or (path is not None and Path(path).is_dir())


def read_exemplar(
    path: Path | None, maps: list[str] | None = None, normal: str | None = None
) -> tuple[np.ndarray, dict | None]:
    """The one reader every command uses: (exemplar (H, W, C) float32, layout or None).

    An image file gives (image, None); a folder of maps or --map ROLE=PATH options give the
    stacked material and its layout (layout_of)."""
    if maps and path is not None:
        raise UserError(
            f"give the material as a folder ({path}) or as --map ROLE=PATH options, not both"
        )
    if maps:
        material = read_material(parse_maps(maps), normal)
    elif path is None:
        raise UserError("give an exemplar: an image file, a folder of material maps, or --map")
    elif Path(path).is_dir():
        material = read_material(path, normal)
    else:
        if normal is not None:
            raise UserError(f"--normal is for materials, and {path} is one image")
        return read_image(path), None
    return material.stack(), layout_of(material)


def channel_weights(layout: dict | None, given: list[str] | None = None) -> list[float] | None:
    """Per-channel weights of the patch cost: each map's weight (DEFAULT_WEIGHTS, overridden by
    --map-weight ROLE=W) repeated over its channels. None for a plain image (all ones)."""
    if layout is None:
        if given:
            raise UserError("--map-weight is for materials, and the exemplar is one image")
        return None
    roles = [m["role"] for m in layout["maps"]]
    weight = {r: DEFAULT_WEIGHTS[r] for r in roles}
    for text in given or []:
        role, eq, value = text.partition("=")
        role = role.strip().lower()
        try:
            w = float(value)
        except ValueError:
            w = float("nan")
        if not eq or not np.isfinite(w) or w < 0:
            raise UserError(f"--map-weight {text}: give ROLE=W with W >= 0, e.g. normal=2")
        if role not in roles:
            raise UserError(f"--map-weight {text}: the material has no {role} map ({roles})")
        weight[role] = w
    if not any(weight.values()):
        raise UserError("--map-weight: at least one map needs a weight above 0")
    return [weight[m["role"]] for m in layout["maps"] for _ in range(m["count"])]


def height_channels(layout: dict | None) -> list[int] | None:
    """The height map's channel, whose projected patches are re-levelled
    (GeneratorConfig.relevel): stitched exemplar heights would make slopes the normals do not
    have. None for a plain image or a material without a height map."""
    maps = layout["maps"] if layout else []
    return [m["first"] for m in maps if m["role"] == "height"] or None


# --- writing a material ---------------------------------------------------------------------


def finish(image: np.ndarray, layout: dict | None) -> np.ndarray:
    """A generated (H, W, C) image with its normals made unit length (z >= 0); others as is."""
    if layout is None or "normal" not in [m["role"] for m in layout["maps"]]:
        return image
    out = np.array(image, dtype=np.float32, copy=True)
    a = next(m["first"] for m in layout["maps"] if m["role"] == "normal")
    out[:, :, a : a + 3] = renormalize_normals(out[:, :, a : a + 3])
    return out


def finish_planar(planar: np.ndarray, layout: dict | None) -> np.ndarray:
    """`finish` for a planar (C, h, w) float32 tile, in place: what the tiler applies to the
    graph's output before quantising (pixel by pixel, so tiles stay exact)."""
    for role, a, _b in spans(layout) if layout else []:
        if role == "normal":
            planar[a : a + 3] = _unit_normals(planar[a : a + 3])
    return planar


def map_files(layout: dict, suffix: str = ".png") -> list[str]:
    """The file names a material is written as: albedo.png, normal.png, ..."""
    return [m["role"] + suffix for m in layout["maps"]]


def check_output_folder(folder: Path, overwrite: bool, layout: dict | None = None) -> Path:
    """A material's -o: a folder (not an image name) whose map files may be written."""
    from tilegen.options import writable_folder

    folder = Path(folder)
    if folder.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(
            f"-o {folder}: a material is written as one file per map (albedo.png, normal.png, "
            "...): give a folder, e.g. -o out_maps"
        )
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o {folder}: exists and is not a folder")
    names = map_files(layout) if layout else [f"{r}.png" for r in ROLES]
    if not overwrite and any((folder / n).exists() for n in names):
        raise UserError(
            f"{folder} already holds material maps: pass --overwrite or choose another -o"
        )
    writable_folder(folder, folder)
    return folder


def write_maps(
    folder: Path,
    image: np.ndarray,
    layout: dict,
    bits: int | None = None,
    normal: str | None = None,
) -> list[Path]:
    """Write a generated (H, W, C) material as folder/albedo.png, folder/normal.png, ...

    The image is written as given (callers `finish` it first: inpainting keeps its known
    normals exactly); normals in `normal` (gl or dx; default: the input's
    convention); each map at `bits`, or by default at its source map's depth (16-bit height
    stays 16-bit). Returns the files written."""
    from tilegen.imageio import write_image

    convention = normal or layout.get("normal", "gl")
    maps = {role: image[:, :, a:b] for role, a, b in spans(layout)}  # as given: see `finish`
    folder = Path(folder)
    written = []
    for m in layout["maps"]:
        img = maps[m["role"]]
        if m["role"] == "normal" and convention == "dx":
            img = flip_green(img)
        path = folder / f"{m['role']}.png"
        write_image(path, img, bits or m.get("bits", 8))
        written.append(path)
    return written


def lit(image: np.ndarray, layout: dict, light=(-0.5, 0.6, 0.62)) -> np.ndarray:
    """The material lit from `light` (render_preview) from a stacked (H, W, C) image."""
    return render_preview(unstack(image, spans(layout)), light)


def viewable(image: np.ndarray, layout: dict | None) -> np.ndarray:
    """What a preview shows of an image: a material lit from the upper left, else the image."""
    return image if layout is None else lit(image, layout)


# --- cross-map consistency --------------------------------------------------------------------

GREY_ROLES = ("roughness", "height", "ao", "metallic")
SHOWN = 0.3  # a pair of maps "shows" a relation in the exemplar when |correlation| is above this


def _grey(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {"albedo (luma)": maps["albedo"] @ np.float32([0.2126, 0.7152, 0.0722])}
    out |= {r: maps[r][..., 0] for r in GREY_ROLES if r in maps}
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def consistency(maps: dict[str, np.ndarray]) -> dict[str, float]:
    """The cross-map figures of one material: "normal~height" (normal_height_consistency) and
    the correlation of every pair of grey maps (albedo luma, roughness, height, ao, metallic)."""
    out = {}
    if "normal" in maps and "height" in maps:
        out["normal~height"] = normal_height_consistency(maps["normal"], maps["height"])
    grey = _grey(maps)
    names = list(grey)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[f"{a}~{b}"] = _corr(grey[a], grey[b])
    return out


def compare_consistency(exemplar: dict[str, float], image: dict[str, float]) -> dict[str, dict]:
    """{figure: {"exemplar", "image", "ratio"}} for the figures the exemplar shows: normal~height
    always, a pair of maps where |its correlation| > SHOWN. ratio = image / exemplar (1: as
    consistent as the exemplar; the acceptance bar for normal~height is 0.8)."""
    out = {}
    for k, e in exemplar.items():
        if k == "normal~height" or abs(e) > SHOWN:
            v = image.get(k, 0.0)
            out[k] = {"exemplar": e, "image": v, "ratio": v / e if abs(e) > 1e-9 else 0.0}
    return out
