"""PBR materials through the real commands: a folder or --map options in, one file per map out,
one-line errors, and a tiny multi-channel model through train -> export -> generate -> tiles.

The maps are tests/data/pebbles_material (128x128 crops of a CC0 set); a DirectX copy and a
16-bit height map are made from them in a temporary folder.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import png
import pytest
from helpers import cli_inproc
from PIL import Image

from tilegen.imageio import _png_bitdepth, read_image
from tilegen.material import read_material

MATERIAL = Path(__file__).resolve().parent / "data" / "pebbles_material"
ROLES = ["albedo", "normal", "roughness", "height", "ao"]


tilegen = cli_inproc  # (exit code, stdout, stderr) of the CLI run in this process


def one_line_error(code: int, err: str, *words: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("tilegen:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]


def decoded_normals(path: Path) -> np.ndarray:
    return read_image(path) * 2.0 - 1.0


def assert_unit_normals(path: Path, where: np.ndarray | None = None) -> None:
    n = decoded_normals(path)
    n = n if where is None else n[where]
    # 8-bit levels: a unit vector rounds to within about 3/255 of unit length
    assert np.abs(np.linalg.norm(n, axis=-1) - 1.0).max() < 0.02
    assert n[..., 2].min() >= -1.0 / 255


# --- input, output, errors --------------------------------------------------------------------


def test_folder_synth_writes_one_file_per_map(tmp_path, monkeypatch, capsys):
    out, lit = tmp_path / "out", tmp_path / "lit.png"
    args = ["synth", MATERIAL, "-o", out, "--size", "64", "64", "--iters", "3", "--scales", "3"]
    code, stdout, err = tilegen(monkeypatch, capsys, *args, "--preview-lit", lit)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{r}.png" for r in ROLES)
    for r in ROLES:
        img = Image.open(out / f"{r}.png")
        assert img.size == (64, 64) and img.mode == ("RGB" if r in ("albedo", "normal") else "L")
    assert_unit_normals(out / "normal.png")
    assert read_image(lit).shape == (64, 64, 3)
    code, _, err = tilegen(monkeypatch, capsys, *args)  # an existing output is kept
    one_line_error(code, err, "already holds material maps", "--overwrite")
    code, _, err = tilegen(monkeypatch, capsys, *args, "--overwrite")
    assert code == 0, err


def test_map_options_build_a_material(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    maps = [
        "--map",
        f"albedo={MATERIAL / 'albedo.png'}",
        "--map",
        f"height={MATERIAL / 'height.png'}",
    ]
    code, stdout, err = tilegen(
        monkeypatch, capsys, "synth", *maps, "-o", out, "--size", "32", "32", "--iters", "2",
        "--scales", "3", "--map-weight", "height=2",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["albedo.png", "height.png"]
    assert "4 channels" in stdout


def dx_material(tmp_path: Path) -> Path:
    """The test material with its normal map in the DirectX convention, named so."""
    folder = tmp_path / "dx"
    shutil.copytree(MATERIAL, folder)
    gl = np.asarray(Image.open(folder / "normal.png")).copy()
    gl[..., 1] = 255 - gl[..., 1]
    (folder / "normal.png").unlink()
    Image.fromarray(gl).save(folder / "Pebbles_NormalDX.png")
    return folder


def test_directx_normals_come_back_in_directx_and_known_pixels_stay(tmp_path, monkeypatch, capsys):
    """Inpainting keeps known pixels bit for bit: also a DirectX normal map's, which is flipped
    to OpenGL inside and back on writing; --normal-out gl writes the OpenGL map instead."""
    folder = dx_material(tmp_path)
    assert read_material(folder).normal_convention == "dx"
    dx = np.asarray(Image.open(folder / "Pebbles_NormalDX.png"))
    box = ["--box", "40", "40", "24", "24", "--iters", "2", "--scales", "3"]
    hole = np.zeros((128, 128), bool)
    hole[40:64, 40:64] = True
    code, _, err = tilegen(monkeypatch, capsys, "inpaint", folder, "-o", tmp_path / "a", *box)
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "a" / "normal.png"))
    assert np.array_equal(got[~hole], dx[~hole])
    assert not np.array_equal(got[hole], dx[hole])
    assert_unit_normals(tmp_path / "a" / "normal.png", hole)  # the CC0 map's own are not unit
    albedo = np.asarray(Image.open(folder / "albedo.png"))
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "a" / "albedo.png"))[~hole], albedo[~hole]
    )
    args = ["inpaint", folder, "-o", tmp_path / "b", *box, "--normal-out", "gl"]
    code, _, err = tilegen(monkeypatch, capsys, *args)
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "b" / "normal.png"))
    assert np.array_equal(got[~hole][:, 1], 255 - dx[~hole][:, 1])


def test_a_16bit_height_map_is_written_at_16_bits(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "m16"
    shutil.copytree(MATERIAL, folder)
    h8 = np.asarray(Image.open(folder / "height.png")).astype(np.uint16)
    h16 = h8 * 257 + np.random.default_rng(0).integers(0, 200, h8.shape).astype(np.uint16)
    with open(folder / "height.png", "wb") as f:
        png.Writer(128, 128, greyscale=True, bitdepth=16).write(f, h16)
    assert read_material(folder).bits == {r: 16 if r == "height" else 8 for r in ROLES}
    out = tmp_path / "out"
    args = ["synth", folder, "-o", out, "--size", "32", "32", "--iters", "2", "--scales", "3"]
    code, _, err = tilegen(monkeypatch, capsys, *args)
    assert code == 0, err
    assert _png_bitdepth(out / "height.png") == 16
    assert _png_bitdepth(out / "albedo.png") == 8


@pytest.mark.parametrize(
    "case,words",
    [
        ("sizes", ["differ in size", "64x64"]),
        ("role", ["unknown map role 'gloss'"]),
        ("albedo", ["needs an albedo"]),
        ("normal", ["--normal xy", "gl", "dx"]),
        ("map", ["--map", "ROLE=PATH"]),
        ("both", ["not both"]),
        ("weight", ["--map-weight", "no metallic map"]),
        ("file", ["a material is written as one file per map"]),
        ("lit", ["--preview-lit is for materials"]),
    ],
)
def test_bad_material_input_is_one_line(case, words, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "m"
    shutil.copytree(MATERIAL, folder)
    src, out = [folder], ["-o", tmp_path / "out"]
    extra: list = []
    if case == "sizes":
        Image.open(folder / "ao.png").crop((0, 0, 64, 64)).save(folder / "ao.png")
    elif case == "role":
        src = ["--map", f"albedo={folder / 'albedo.png'}", "--map", f"gloss={folder / 'ao.png'}"]
    elif case == "albedo":
        (folder / "albedo.png").unlink()
    elif case == "normal":
        extra = ["--normal", "xy"]
    elif case == "map":
        src = ["--map", str(folder / "albedo.png")]
    elif case == "both":
        extra = ["--map", f"albedo={folder / 'albedo.png'}"]
    elif case == "weight":
        extra = ["--map-weight", "metallic=2"]
    elif case == "file":
        out = ["-o", tmp_path / "out.png"]
    elif case == "lit":
        src, extra = [folder / "albedo.png"], ["--preview-lit", tmp_path / "lit.png"]
    args = ["synth", *src, *out, "--size", "32", "32", "--iters", "1", "--scales", "3", *extra]
    code, _, err = tilegen(monkeypatch, capsys, *args)
    one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()


def test_channel_weights_scale_each_map_in_the_patch_cost():
    torch = pytest.importorskip("torch")
    from tilegen.material import channel_weights, layout_of
    from train.patch_ot import OTConfig, PatchOTLoss

    layout = layout_of(read_material(MATERIAL))
    w = channel_weights(layout, ["normal=2", "ao=0"])
    assert len(w) == 9 and w[3:6] == [2.0, 2.0, 2.0] and w[8] == 0.0
    ex = torch.from_numpy(read_material(MATERIAL).stack().transpose(2, 0, 1))[None]

    def loss(weights, image):
        cfg = OTConfig(scales=2, n_target=300, weights=weights)
        ot = PatchOTLoss(ex, cfg, periodic=True, generator=torch.Generator().manual_seed(0))
        ot.fit_potentials(image)
        return float(ot.loss(image))

    image = torch.rand(1, 9, 32, 32, generator=torch.Generator().manual_seed(1))
    assert loss([1.0] * 9, image) == pytest.approx(loss(None, image), rel=1e-5)
    only_albedo = [1.0, 1.0, 1.0] + [0.0] * 6
    other = image.clone()
    other[:, 3:] = 0.5  # flat maps where the weights are 0 (fresh noise would score alike)
    assert loss(only_albedo, other) == pytest.approx(loss(only_albedo, image), rel=1e-5)
    assert loss([1.0] * 9, other) != pytest.approx(loss([1.0] * 9, image), rel=1e-3)


# --- a tiny multi-channel model through every command ----------------------------------------


@pytest.fixture(scope="module")
def material_model(tmp_path_factory):
    """(folder, model.pt, model.onnx): trained 2 iterations on the test material (its layout is
    what matters here, not its quality) and exported."""
    pytest.importorskip("torch")
    from _pytest.monkeypatch import MonkeyPatch

    folder = tmp_path_factory.mktemp("material_model")
    pt, onnx_path = folder / "m.pt", folder / "m.onnx"
    mp = MonkeyPatch()

    class Capture:  # a capsys stand-in for a module fixture
        def readouterr(self):
            return type("R", (), {"out": "", "err": ""})()

    try:
        train = ["train", MATERIAL, "-o", pt, "--iters", "2", "--size", "32", "--scales", "3",
                 "--width", "4", "--levels", "3", "--targets", "200", "--projection", "64",
                 "--coarse", "1", "--no-check", "--checkpoint-every", "0"]  # fmt: skip
        assert tilegen(mp, Capture(), *train)[0] == 0
        assert tilegen(mp, Capture(), "export", pt, "-o", onnx_path)[0] == 0
    finally:
        mp.undo()
    return folder, pt, onnx_path


def test_model_metadata_names_every_channel(material_model):
    from tilegen.inspect import load

    _, pt, onnx_path = material_model
    info = load(onnx_path).info
    assert info.out_channels == 9 and info.format_version() == 3
    assert info.channels.split(",") == [
        "albedo.r", "albedo.g", "albedo.b", "normal.x", "normal.y", "normal.z", "roughness",
        "height", "ao",
    ]  # fmt: skip
    assert [m["role"] for m in info.material["maps"]] == ROLES
    sidecar = json.loads(Path(str(onnx_path) + ".json").read_text())
    assert sidecar["material"] == info.material and sidecar["tilegen_format_version"] == 3
    from train.checkpoint import load_generator

    # the projected height (channel 7, after albedo, normal, roughness) is re-levelled, after
    # a coarse stage at level 1 (--coarse 1): the model's tiles stay exact (tests below)
    cfg = load_generator(pt)[0].cfg
    assert cfg.relevel == [7] and cfg.coarse == [1]


def test_sample_writes_maps_and_tiles_periodically(material_model, monkeypatch, capsys, tmp_path):
    from tilegen.model import render_tile

    _, pt, onnx_path = material_model
    out = tmp_path / "s"
    args = ["sample", pt, "-o", out, "--size", "32", "32", "--periodic", "--seed", "3"]
    code, _, err = tilegen(monkeypatch, capsys, *args, "--preview-lit", tmp_path / "lit.png")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{r}.png" for r in ROLES)
    assert_unit_normals(out / "normal.png")
    # periodic: the texture repeats every 32 pixels, all nine channels, exactly
    a = render_tile(onnx_path, 3, 0, 0, 32, 32, period=(32, 32))
    b = render_tile(onnx_path, 3, 32, -64, 32, 32, period=(32, 32))
    assert np.array_equal(a, b)
    n = a[3:6] * 2 - 1
    assert np.allclose(np.linalg.norm(n, axis=0), 1.0, atol=1e-5) and n[2].min() >= 0


def test_generate_store_is_one_window_with_labelled_channels(
    material_model, monkeypatch, capsys, tmp_path
):
    from tilegen.inspect import load
    from tilegen.model import quantize_planar, render_tile
    from tilegen.zarr_store import read_region

    _, _, onnx_path = material_model
    store = tmp_path / "g.zarr"
    args = ["generate", onnx_path, "-o", store, "--size", "96", "80", "--seed", "5",
            "--chunk", "16", "--shard", "32", "--no-progress"]  # fmt: skip
    code, _, err = tilegen(monkeypatch, capsys, *args)
    assert code == 0, err
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    labels = [c["label"] for c in attrs["ome"]["omero"]["channels"]]
    assert labels[:4] == ["albedo.r", "albedo.g", "albedo.b", "normal.x"] and labels[-1] == "ao"
    assert attrs["tilegen"]["material"]["maps"][1]["role"] == "normal"
    whole = render_tile(onnx_path, 5, 0, 0, 96, 80)  # one evaluation, normals renormalised
    expected = quantize_planar(whole, load(onnx_path).info, "uint8")
    assert np.array_equal(read_region(str(store), 0, 0, 0, 96, 80), expected)

    tiles = tmp_path / "tiles"
    code, _, err = tilegen(monkeypatch, capsys, "tiles", store, "-o", tiles, "--tile", "48",
                           "--no-progress")  # fmt: skip
    assert code == 0, err
    index = json.loads((tiles / "tiles.json").read_text())
    assert index["rows"] == 2 and index["cols"] == 2
    assert sorted(index["files"][0]["maps"]) == sorted(ROLES)
    assert len(list(tiles.glob("tile_*.png"))) == 4 * len(ROLES)
    normal = np.concatenate(
        [np.concatenate([np.asarray(Image.open(tiles / f"tile_r{r}_c{c}_normal.png"))
                         for c in range(2)], axis=1) for r in range(2)], axis=0
    )  # fmt: skip
    assert np.array_equal(normal, expected[3:6].transpose(1, 2, 0))
    assert_unit_normals(tiles / "tile_r1_c0_normal.png")
    height = np.asarray(Image.open(tiles / "tile_r0_c1_height.png"))
    assert height.shape == (48, 32) and np.array_equal(height, expected[7, :48, 48:])

    from tilegen.view import resolve, store_tile

    shown = Image.open(io.BytesIO(store_tile(resolve(store), 0, 0, 0)))
    assert shown.mode == "RGB"  # view shows a material's albedo
    assert np.array_equal(np.asarray(shown), expected[:3, :16, :16].transpose(1, 2, 0))

    code, _, err = tilegen(monkeypatch, capsys, "generate", onnx_path, "-o", tmp_path / "g.png",
                           "--size", "32", "32")  # fmt: skip
    one_line_error(code, err, "material model writes a .zarr store")


def test_evaluate_scores_every_map_and_the_consistency(monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    args = ["synth", MATERIAL, "-o", out, "--size", "64", "64", "--iters", "2", "--scales", "3"]
    assert tilegen(monkeypatch, capsys, *args)[0] == 0
    ev = ["evaluate", MATERIAL, out, "--baselines", "--patches", "100", "--seeds", "1", "--json",
          "--pieces", "2"]  # fmt: skip
    code, stdout, err = tilegen(monkeypatch, capsys, *ev)
    assert code == 0, err
    doc = json.loads(stdout)
    rows = {r["name"]: r for r in doc["results"]}
    assert sorted(rows[str(out)]["maps"]) == sorted(ROLES)
    own = rows["exemplar (self)"]["consistency"]["normal~height"]
    assert own["ratio"] == pytest.approx(1.0) and own["exemplar"] > 0.5
    # two iterations from noise: nothing is consistent yet, and every map is far off
    noise = rows[str(out)]
    assert noise["consistency"]["normal~height"]["ratio"] < 0.5
    blur = rows["blur sigma=1"]["maps"]
    assert all(noise["maps"][r]["debiased"] > blur[r]["debiased"] for r in ROLES)
    # two real 64x64 pieces of the material: every map far closer than the noise, and the row
    # holds their median per map
    real = rows["real pieces 64x64 (median of 2)"]
    assert [sorted(p) for p in real["pieces"]] == [sorted(ROLES)] * 2
    for r in ROLES:
        each = [p[r] for p in real["pieces"]]
        assert real["maps"][r]["debiased"] == pytest.approx(float(np.median(each)))
        assert max(each) < noise["maps"][r]["debiased"]
    code, _, err = tilegen(monkeypatch, capsys, "evaluate", MATERIAL, MATERIAL / "albedo.png")
    one_line_error(code, err, "give folders of its maps")
