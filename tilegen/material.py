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
from tilegen.imageio import read_image

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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


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
    """RGB-encoded normals ([0, 1] -> [-1, 1]) made unit length with z >= 0, re-encoded."""
    n = encoded.astype(np.float32) * 2.0 - 1.0
    n[..., 2] = np.maximum(n[..., 2], 0.0)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(length > 1e-6, n / np.maximum(length, 1e-6), np.float32([0.0, 0.0, 1.0]))
    return ((n + 1.0) * 0.5).astype(np.float32)


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


def read_material(maps: dict[str, str | Path] | str | Path, normal: str | None = None) -> Material:
    """A Material from a folder (roles from file names) or from {role: path}.

    `normal`: "gl" or "dx", the normal map's convention; None: from its file name (NormalGL,
    NormalDX), else OpenGL. Every problem is a one-line UserError: an unknown role, a missing
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
    convention = normal or hinted or "gl"
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
    return Material(loaded, convention, {r: str(p) for r, p in paths.items()})


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
