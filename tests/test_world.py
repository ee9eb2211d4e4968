"""tilegen world: a layout painted by several models, exact tiles, periodic, resumable, refusals.

Three small random-init models (tests/conftest.py, stride 8) paint a 12x12 layout of three
colours at 32 pixels per cell; the bundled default model is used where a real texture matters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_inproc

from tilegen import zarr_store
from tilegen.errors import UserError
from tilegen.model import render_region as model_region
from tilegen.tiler import GenerateConfig, generate
from tilegen.warp import Field
from tilegen.world import open_world, plan_world, render_region

COLOURS = ["#3a7d2c", "#967850", "#6e6e78"]


@pytest.fixture(scope="module")
def world_files(tmp_path_factory, onnx_model) -> tuple[Path, list[Path]]:
    """(layout.png, [three models]): label 0 everywhere, a block of 1, a block of 2."""
    from conftest import fixture_models
    from PIL import Image

    folder = tmp_path_factory.mktemp("world")
    models = [shutil.copy(onnx_model, folder / "m0.onnx")]
    for seed in (1, 2):
        path, _ = fixture_models(folder / f"s{seed}", 4, 8, seed=seed)
        models.append(shutil.move(path, folder / f"m{seed}.onnx"))
    labels = np.zeros((12, 12), np.uint8)
    labels[2:7, 1:6] = 1
    labels[6:11, 6:11] = 2
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in COLOURS], np.uint8)
    Image.fromarray(rgb[labels]).save(folder / "layout.png")
    return folder / "layout.png", [Path(m) for m in models]


def legend(models: list[Path]) -> list[str]:
    return [f"{c}={m}" for c, m in zip(COLOURS, models)]


def world_store(spec, out: Path, seed: int = 3, **kw):
    cfg = GenerateConfig(model=spec.models[0], output=str(out), size=spec.size, seed=seed,
                         period=spec.size if spec.periodic else None, chunk=32, shard=64,
                         threads=1, device="cpu", progress=False, world=spec,
                         log=lambda m: None, **kw)  # fmt: skip
    return generate(cfg)


def test_tiles_equal_one_window_and_the_store_records_the_world(world_files, tmp_path):
    layout, models = world_files
    spec = plan_world(str(layout), legend(models), cell=32, blend=16)
    world = open_world(spec, 3)
    whole = render_region(world, 3, 0, 0, 384, 384, tile=384, dtype="uint8")
    for tile in (40, 96):  # any tiling, aligned or not, gives the same bytes
        assert np.array_equal(render_region(world, 3, 0, 0, 384, 384, tile=tile, dtype="uint8"),
                              whole)  # fmt: skip
    out = tmp_path / "w.zarr"
    world_store(spec, out)
    assert np.array_equal(zarr_store.read_region(str(out), 0, 0, 0, 384, 384), whole)
    attrs = zarr_store.read_attrs(out)
    rec = attrs["world"]
    assert rec["layout"]["shape"] == [12, 12] and len(rec["layout"]["sha256"]) == 64
    assert [m["file"] for m in rec["models"]] == ["m0.onnx", "m1.onnx", "m2.onnx"]
    assert [e["key"] for e in rec["legend"]] == COLOURS and rec["mix"] == "variance"
    assert attrs["model_sha256"] == spec.sha256()
    # the three models all show, and a transition mixes them
    present, weights = world.field.weights(0, 0, 384, 384)
    assert present == [0, 1, 2] and ((weights > 0) & (weights < 1)).any()


def test_a_model_is_not_evaluated_where_its_label_does_not_reach(world_files):
    layout, models = world_files
    spec = plan_world(str(layout), legend(models), cell=32, blend=16)
    world = open_world(spec, 5, threads=2)  # a World of its own (another cache key)
    world.rendered = [0, 0, 0]
    alone = world.window(5, 0, 256, 64, 128)  # top right: label 0 only (cells 0-1, 8-11)
    assert world.rendered == [64 * 128, 0, 0]
    # a region's interior is its model's own texture, byte for byte
    assert np.array_equal(alone, model_region(world.models[0], 5, 0, 256, 64, 128))
    world.window(5, 64, 0, 160, 96)  # the block of label 1, 3 cells from label 2
    assert world.rendered[1] > 0 and world.rendered[2] == 0
    world.rendered = [0, 0, 0]
    world.window(5, 0, 128, 128, 256)  # the corner of label 1's block: under half the window
    present, weights = world.field.weights(0, 128, 128, 256)
    reached = int((weights[present.index(1)] > 0).sum())
    assert world.rendered[0] == 128 * 256 and world.rendered[2] == 0
    # label 1 on the stride's blocks holding its weight: all of it, and little more
    assert reached <= world.rendered[1] < 128 * 256 // 2
    assert world.rendered[1] % world.block**2 == 0


def test_periodic_world_wraps(world_files):
    layout, models = world_files
    spec = plan_world(str(layout), legend(models), cell=32, blend=16, periodic=True)
    world = open_world(spec, 1)
    period = spec.size
    whole = render_region(world, 1, 0, 0, 384, 384, period, dtype="uint8")
    shifted = render_region(world, 1, 384 - 48, 384 - 40, 96, 80, period, dtype="uint8")
    expect = np.roll(whole, (48, 40), axis=(1, 2))[:, :96, :80]
    assert np.array_equal(shifted, expect)


def test_resume_after_an_interruption_gives_the_same_bytes(world_files, tmp_path, monkeypatch):
    layout, models = world_files
    spec = plan_world(str(layout), legend(models), cell=32, blend=16)
    ref = tmp_path / "ref.zarr"
    world_store(spec, ref)
    out = tmp_path / "cut.zarr"
    real, calls = zarr_store.write_region, {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device")
        real(*args)

    monkeypatch.setattr(zarr_store, "write_region", flaky)
    with pytest.raises(UserError, match="rerun"):
        world_store(spec, out)
    monkeypatch.setattr(zarr_store, "write_region", real)
    s = world_store(spec, out)
    assert s.state == "resume" and s.shards_done_before >= 6
    for lv in range(len(zarr_store.open_store(out)[1].level_shapes())):
        a = zarr_store.open_level(str(out), lv)[:]
        assert np.array_equal(a, zarr_store.open_level(str(ref), lv)[:]), lv
    with pytest.raises(UserError, match="holds another texture"):
        world_store(plan_world(str(layout), legend(models), cell=32, blend=20), out)


def test_tiles_and_png_of_a_world(world_files, tmp_path, monkeypatch, capsys):
    layout, models = world_files
    args = ["world", layout, *sum((["--label", s] for s in legend(models)), []), "--cell", 32,
            "--blend", 16, "--seed", 3, "--device", "cpu", "--no-progress"]  # fmt: skip
    code, out, err = cli_inproc(monkeypatch, capsys, *args, "-o", tmp_path / "w.png")
    assert code == 0, err
    code, out, err = cli_inproc(monkeypatch, capsys, *args, "-o", tmp_path / "w.zarr")
    assert code == 0, err
    code, out, err = cli_inproc(monkeypatch, capsys, "tiles", tmp_path / "w.zarr", "-o",
                                tmp_path / "t", "--tile", 128, "--no-progress")  # fmt: skip
    assert code == 0, err
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "w.png"))
    tile = np.asarray(Image.open(tmp_path / "t" / "tile_r1_c2.png"))
    assert np.array_equal(tile, png[128:256, 256:384])
    assert json.loads((tmp_path / "t" / "tiles.json").read_text())


def test_transition_centres_leave_the_cell_edges(world_files):
    """The boundary is warped: few transition centres lie on the layout's cell edges."""
    layout, models = world_files
    from tilegen.layout import parse_labels, read_layout

    labels = read_layout(layout, parse_labels(legend(models))).labels
    field = Field(labels, (384, 384), 2, 16.0)
    _, w = field.weights(0, 0, 384, 384)
    top = np.sort(w, axis=0)
    centre = (top[-1] - top[-2]) < 0.1
    ys, xs = np.nonzero(centre)
    on_edge = np.minimum(ys % 32, xs % 32) < 2  # within 2 pixels of a cell edge
    chance = 1 - (28 / 32) ** 2
    assert centre.sum() > 500 and on_edge.mean() < 1.5 * chance


@pytest.mark.parametrize(
    "case, words",
    [
        ("unknown colour", ["#967850", "has no model", "--label"]),
        ("no model", ["has no model after '='"]),
        ("missing file", ["no model file"]),
        ("strides", ["stride 8", "fixture_l3w8.onnx 4", "one stride"]),
        ("not an image", ["not a readable"]),
        ("blend", ["--blend 100", "at most"]),
        ("both sizes", ["--cell", "--size"]),
        ("too large", ["reading the layout layout.png", "use a Zarr layout"]),
    ],
)
def test_bad_worlds_are_one_line(case, words, world_files, tmp_path, monkeypatch, capsys):
    layout, models = world_files
    labels = legend(models)
    extra = ["--cell", 32]
    if case == "unknown colour":
        labels = [labels[0], labels[2]]
    elif case == "no model":
        labels[1] = f"{COLOURS[1]}="
    elif case == "missing file":
        labels[1] = f"{COLOURS[1]}={tmp_path / 'nope.onnx'}"
    elif case == "strides":
        from conftest import fixture_models

        labels[1] = f"{COLOURS[1]}={fixture_models(tmp_path, 3, 8)[0]}"
    elif case == "not an image":
        layout = tmp_path / "bad.png"
        layout.write_bytes(b"not a png")
    elif case == "blend":
        extra += ["--blend", 100]
    elif case == "both sizes":
        extra += ["--size", 384, 384]
    elif case == "too large":
        extra += ["--max-memory", 0.1]
    args = ["world", layout, *sum((["--label", s] for s in labels), []), *extra]
    code, out, err = cli_inproc(monkeypatch, capsys, *args, "-o", tmp_path / "o.zarr")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert not (tmp_path / "o.zarr").exists()


def write_zarr(path: Path, values: np.ndarray, chunks: tuple[int, ...] = (5, 5)) -> Path:
    import zarr

    zarr.create_array(str(path), data=values, chunks=chunks)
    return path


def image_labels(layout: Path, models: list[Path]) -> np.ndarray:
    from tilegen.layout import parse_labels, read_layout

    return read_layout(layout, parse_labels(legend(models))).labels.array


def test_a_zarr_layout_paints_the_same_world_as_the_image(world_files, tmp_path, monkeypatch,
                                                          capsys):  # fmt: skip
    """The layout's labels as integers in a Zarr array (5x5 chunks, ragged at the edges): the
    same pixels, the store records the Zarr layout, and a worker refuses a changed one."""
    layout, models = world_files
    zlayout = write_zarr(tmp_path / "layout.zarr", image_labels(layout, models).astype(np.int16))
    values = [f"{i}={m}" for i, m in enumerate(models)]
    common = ["--cell", 32, "--blend", 16, "--seed", 3, "--device", "cpu", "--no-progress"]
    for lay, labels, out in ((layout, legend(models), "w.png"), (zlayout, values, "z.zarr")):
        args = ["world", lay, *sum((["--label", s] for s in labels), []), *common]
        code, _, err = cli_inproc(monkeypatch, capsys, *args, "-o", tmp_path / out)
        assert code == 0, err
    from PIL import Image

    png = np.moveaxis(np.asarray(Image.open(tmp_path / "w.png")), 2, 0)
    assert np.array_equal(zarr_store.read_region(str(tmp_path / "z.zarr"), 0, 0, 0, 384, 384), png)
    rec = zarr_store.read_attrs(tmp_path / "z.zarr")["world"]["layout"]
    assert rec["file"] == "layout.zarr" and rec["shape"] == [12, 12] and len(rec["sha256"]) == 64
    spec = plan_world(str(zlayout), values, cell=32, blend=16)
    assert spec.layout_sha256 == rec["sha256"]
    import zarr

    zarr.open_array(str(zlayout), mode="r+")[0, 0] = 1  # changed after planning
    with pytest.raises(UserError, match="not the layout the run started with"):
        open_world(spec, 9)


def test_a_zarr_layout_gives_the_image_layouts_weights(world_files, tmp_path):
    from tilegen.layout import Legend, read_layout

    layout, models = world_files
    values = image_labels(layout, models)
    zl = read_layout(
        write_zarr(tmp_path / "l.zarr", values), Legend(("0", "1", "2"), ("a", "b", "c"))
    )
    for periodic in (False, True):
        image, chunked = (Field(g, (384, 384), 4, 16.0, periodic) for g in (values, zl.labels))
        for window in ((0, 0, 384, 384), (100, 37, 120, 90), (300, 290, 200, 150)):
            (p, a), (q, b) = image.weights(*window), chunked.weights(*window)
            assert p == q and a.tobytes() == b.tobytes(), (periodic, window)


def test_a_zarr_layout_decodes_only_the_chunks_a_window_needs(tmp_path, monkeypatch):
    from tilegen import zarr_layout
    from tilegen.layout import Legend, read_layout

    values = np.random.default_rng(0).integers(0, 2, (64, 64)).astype(np.uint8) * 7
    lay = read_layout(
        write_zarr(tmp_path / "l.zarr", values, (8, 8)), Legend(("0", "7"), ("a", "b"))
    )
    grid = lay.labels
    assert lay.shape == (64, 64) and grid.decoded == 0  # the check streams, caching nothing
    rows, cols = np.arange(10, 20), np.array([0, 1, 4])
    assert np.array_equal(grid.cells(rows, cols), values[10:20][:, cols] // 7)
    assert grid.decoded == 2  # chunks (1, 0) and (2, 0) of 8 x 8
    grid.cells(rows, cols)
    assert grid.decoded == 2  # cached
    _, w = Field(grid, (512, 512), 1, 6.0).weights(0, 0, 64, 64)
    # cells 0-11 of 64 reach the window: chunks (0-1, 0-1), three of them new
    assert grid.decoded == 5 and w.shape[1:] == (64, 64)
    assert set(grid._cache) == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)}
    monkeypatch.setattr(zarr_layout, "CACHE_BYTES", 2 * 64)  # two chunks
    assert np.array_equal(grid.cells(np.arange(64), np.arange(64)), values // 7)
    assert len(grid._cache) == 2


@pytest.mark.parametrize(
    "case, words",
    [
        ("unknown value", ["value 9 (first at row 4, column 11) has no model", "--label '9="]),
        ("float", ["float32 values", "integer labels"]),
        ("3-D", ["3-D array", "2-D"]),
        ("group", ["a Zarr group, not an array", "labels", "GROUP.zarr/NAME"]),
        ("unreadable", ["not a readable Zarr array"]),
    ],
)
def test_bad_zarr_layouts_are_one_line(case, words, world_files, tmp_path, monkeypatch, capsys):
    layout, models = world_files
    values = image_labels(layout, models)
    path = tmp_path / "layout.zarr"
    if case == "unknown value":
        values[6, 1], values[4, 11], values[9, 0] = 5, 9, 7  # chunks (1, 0), (0, 2), (1, 0)
        write_zarr(path, values)
    elif case == "float":
        write_zarr(path, values.astype(np.float32))
    elif case == "3-D":
        write_zarr(path, values[None], (1, 5, 5))
    elif case == "group":
        import zarr

        zarr.create_group(str(path)).create_array("labels", data=values)
    else:
        path.mkdir()
        (path / "zarr.json").write_text("{not json")
    labels = [f"{i}={m}" for i, m in enumerate(models)]
    args = ["world", path, *sum((["--label", s] for s in labels), []), "--cell", 32]
    code, out, err = cli_inproc(monkeypatch, capsys, *args, "-o", tmp_path / "o.zarr")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert not (tmp_path / "o.zarr").exists()


@pytest.fixture(scope="module")
def material_onnx(tmp_path_factory) -> Path:
    """A tiny material model (trained 2 iterations on the test material: its maps matter, not
    its looks), exported."""
    pytest.importorskip("torch")
    from _pytest.monkeypatch import MonkeyPatch

    folder = tmp_path_factory.mktemp("world_material")
    pt, onnx_path = folder / "m.pt", folder / "m.onnx"
    data = Path(__file__).resolve().parent / "data" / "pebbles_material"

    class Capture:  # a capsys stand-in for a module fixture
        def readouterr(self):
            return type("R", (), {"out": "", "err": ""})()

    mp = MonkeyPatch()
    try:
        train = ["train", data, "-o", pt, "--iters", "2", "--size", "32", "--scales", "3",
                 "--width", "4", "--levels", "3", "--targets", "200", "--projection", "0",
                 "--coarse", "off", "--no-check", "--checkpoint-every", "0"]  # fmt: skip
        assert cli_inproc(mp, Capture(), *train)[0] == 0
        assert cli_inproc(mp, Capture(), "export", pt, "-o", onnx_path)[0] == 0
    finally:
        mp.undo()
    return onnx_path


def test_a_material_world_mixes_by_height_and_refuses_textures(
    world_files, material_onnx, tmp_path, monkeypatch, capsys
):
    layout, models = world_files
    copies = [shutil.copy(material_onnx, tmp_path / f"mat{i}.onnx") for i in range(3)]
    spec = plan_world(str(layout), legend(copies), cell=16, blend=12)
    assert spec.mix == "height" and spec.height is not None
    world = open_world(spec, 4)
    whole = render_region(world, 4, 0, 0, 192, 192, dtype="uint8")
    assert np.array_equal(render_region(world, 4, 0, 0, 192, 192, tile=56, dtype="uint8"), whole)
    normal = whole[3:6].astype(np.float64) / 255 * 2 - 1
    assert np.allclose(np.sqrt((normal**2).sum(axis=0)), 1, atol=0.02)  # renormalised
    labels = [f"{COLOURS[0]}={material_onnx}", *legend(models)[1:]]
    args = ["world", layout, *sum((["--label", s] for s in labels), []), "--cell", 16]
    code, out, err = cli_inproc(monkeypatch, capsys, *args, "-o", tmp_path / "o.zarr")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a texture model and a material model" in err


def test_the_readme_world_paints_the_bundled_layout():
    """The README's world: the bundled layout and models plan and paint (a corner of it)."""
    assets = Path(__file__).resolve().parents[1] / "tilegen" / "assets"
    labels = [f"#3a7d2c={assets / 'default.onnx'}", f"#8a6a45={assets / 'world/dirt_pebbles.onnx'}",
              f"#5b4636={assets / 'world/bark.onnx'}"]  # fmt: skip
    spec = plan_world(str(assets / "world" / "layout.png"), labels, cell=32)
    assert spec.size == (2048, 2048) and spec.mix == "variance" and len(spec.models) == 3
    corner = render_region(open_world(spec, 1), 1, 0, 0, 64, 96, dtype="uint8")
    assert corner.shape == (3, 64, 96) and corner.std() > 5
