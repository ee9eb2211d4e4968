"""PBR materials (tilegen/material.py) on real maps cut from a CC0 set."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tilegen.errors import UserError
from tilegen.imageio import read_image
from tilegen.material import (
    ROLES,
    detect_role,
    flip_green,
    normal_height_consistency,
    read_material,
    render_preview,
    renormalize_normals,
    unstack,
)

MATERIAL = Path(__file__).resolve().parent / "data" / "pebbles_material"


@pytest.mark.parametrize(
    "name,role",
    [
        ("Bark014_1K_Color.png", ("albedo", None)),
        ("Bark014_1K_NormalGL.png", ("normal", "gl")),
        ("Bark014_1K_NormalDX.jpg", ("normal", "dx")),
        ("Bark014_1K_Roughness.png", ("roughness", None)),
        ("Bark014_1K_Displacement.tif", ("height", None)),
        ("Bark014_1K_AmbientOcclusion.jpg", ("ao", None)),
        ("Metal_2K_Metalness.png", ("metallic", None)),
        ("Pebbles_025_basecolor.jpg", ("albedo", None)),
        ("Pebbles_025_normal.jpg", ("normal", None)),
        ("Pebbles_025_height.png", ("height", None)),
        ("Pebbles_025_ambientOcclusion.jpg", ("ao", None)),
        ("rock_nor_dx_1k.png", ("normal", "dx")),
        ("albedo.png", ("albedo", None)),
        ("metallic.png", ("metallic", None)),
        ("photo_of_rock.png", None),
    ],
)
def test_roles_from_common_file_names(name, role):
    assert detect_role(name) == role


def test_folder_reads_as_one_exemplar_in_role_order():
    m = read_material(MATERIAL)
    assert m.roles == ["albedo", "normal", "roughness", "height", "ao"]
    assert m.layout() == [
        ("albedo", 0, 3), ("normal", 3, 6), ("roughness", 6, 7), ("height", 7, 8), ("ao", 8, 9)
    ]  # fmt: skip
    stack = m.stack()
    assert stack.shape == (128, 128, 9) and stack.dtype == np.float32
    assert np.array_equal(stack[:, :, 7:8], read_image(MATERIAL / "height.png"))
    back = unstack(stack, m.layout())
    assert np.array_equal(back["albedo"], m.maps["albedo"])


def test_directx_normals_are_flipped_in_and_consistency_holds():
    gl = read_material(MATERIAL)
    dx = read_material({"albedo": MATERIAL / "albedo.png", "normal": MATERIAL / "normal.png"}, "dx")
    assert dx.normal_convention == "dx"
    assert np.allclose(dx.maps["normal"], flip_green(gl.maps["normal"]))
    # The exemplar's normals follow its height map's slopes (the shared sets: 0.5-0.9); read
    # with the wrong convention, the y term turns negative.
    good = normal_height_consistency(gl.maps["normal"], gl.maps["height"])
    wrong = normal_height_consistency(dx.maps["normal"], gl.maps["height"])
    assert good > 0.5 and wrong < good - 0.3


def test_bad_materials_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="unknown map role 'gloss'"):
        read_material({"albedo": MATERIAL / "albedo.png", "gloss": MATERIAL / "height.png"})
    with pytest.raises(UserError, match="needs an albedo"):
        read_material({"height": MATERIAL / "height.png"})
    small = tmp_path / "m"
    shutil.copytree(MATERIAL, small)
    Image.open(small / "height.png").crop((0, 0, 64, 64)).save(small / "height.png")
    with pytest.raises(UserError, match="differ in size") as e:
        read_material(small)
    assert "\n" not in str(e.value)
    shutil.copy(small / "albedo.png", small / "Pebbles_basecolor.png")
    with pytest.raises(UserError, match="both"):
        read_material(small)
    with pytest.raises(UserError, match="--normal xy"):
        read_material(MATERIAL, normal="xy")
    with pytest.raises(UserError, match="normal map needs 3 channels"):
        read_material({"albedo": MATERIAL / "albedo.png", "normal": MATERIAL / "height.png"})


def test_normals_renormalised_to_unit_length_facing_out():
    rng = np.random.default_rng(0)
    raw = rng.random((16, 16, 3)).astype(np.float32)
    n = renormalize_normals(raw) * 2 - 1
    assert np.allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    assert (n[..., 2] >= 0).all()


def test_lit_preview_shades_by_the_normals():
    m = read_material(MATERIAL)
    lit = render_preview(m.maps)
    assert lit.shape == (128, 128, 3) and 0 <= lit.min() and lit.max() <= 1
    flat = dict(m.maps, normal=np.broadcast_to(np.float32([0.5, 0.5, 1.0]), (128, 128, 3)))
    # Bumps lit from the upper left: the picture varies more than with flat normals.
    assert lit.std() > render_preview(flat).std()
    assert set(ROLES) >= set(m.roles)
