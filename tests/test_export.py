"""Export to ONNX (export/), the self-contained form, `tilegen inspect` and the noise reference.

One torch export (a BN-unfolded eval-mode generator, so folding is exercised) serves every test:
the self-contained form is built from its graph without torch, and the CLI tests run `tilegen
export MODEL.pt` for real except for the torch export step, which hands back that graph.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from export.onnx_export import (  # noqa: E402
    bn_nodes,
    export_protos,
    ir_version_for,
    noise_feeds,
    save,
    self_contained_tile,
    session,
    tiler_tile,
    verify_parity,
)
from export.self_contained import build_self_contained  # noqa: E402
from tilegen.contract import (  # noqa: E402  # noqa: E402
    FORMAT_VERSION,
    ModelInfo,
    from_metadata,
    runtime_contract,
    to_metadata,
)
from tilegen.errors import UserError  # noqa: E402
from tilegen.inspect import describe, format_text, load  # noqa: E402
from tilegen.noise import mix32, noise_window  # noqa: E402
from train.generator import (  # noqa: E402
    GeneratorConfig,
    TextureGenerator,
    fold,
    is_folded,
    sample_tile,
    training_noise,
)

ROOT = Path(__file__).resolve().parents[1]
LEVELS, WIDTH = 4, 8  # stride 8: small and fast


def make_generator(seed: int, folded: bool, norm: str = "batch") -> TextureGenerator:
    """Random init, a few train-mode forwards so BatchNorm has non-trivial running statistics
    (BatchNorm by default: its folding is the case with the most to get wrong)."""
    torch.manual_seed(seed)
    cfg = GeneratorConfig(levels=LEVELS, width=WIDTH, norm=norm)
    model = TextureGenerator(cfg).train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(3):
            model(*training_noise(cfg, 2, 32, g))
    model.eval()
    return fold(model) if folded else model


def info_for(model: TextureGenerator, **kw) -> ModelInfo:
    cfg = model.cfg
    return ModelInfo(
        arch=cfg.arch,
        noise_channels=cfg.noise_channels,
        out_channels=cfg.out_channels,
        exemplar_sha256="0" * 64,
        training={"test": True, "iters": 3},
        **kw,
    )


@pytest.fixture(scope="module")
def unfolded():
    return make_generator(0, folded=False)


@pytest.fixture(scope="module")
def exported(unfolded, tmp_path_factory):
    """(windowed path, windowed proto) exported from an eval-mode generator with BatchNorm."""
    assert not is_folded(unfolded)  # folding (weight standardisation or BatchNorm) is exercised
    proto, windowed = export_protos(unfolded, info_for(unfolded))
    assert proto is windowed
    path = tmp_path_factory.mktemp("onnx") / "w.onnx"
    save(proto, path)
    return path, proto


@pytest.fixture(scope="module")
def self_contained(exported, unfolded, tmp_path_factory):
    """Self-contained files: a 37x53 tile, a periodic 24x40 tile with period 32x64, and the
    dynamic form (tile size and period as inputs)."""
    _, proto = exported
    d = tmp_path_factory.mktemp("sc")
    out = {}
    for name, tile, period in (
        ("plain", (37, 53), None),
        ("periodic", (24, 40), (32, 64)),
        ("dynamic", None, None),
    ):
        sc = build_self_contained(proto, info_for(unfolded), tile, period)
        save(sc, d / f"{name}.onnx")
        out[name] = d / f"{name}.onnx"
    return out


# --- the windowed export ------------------------------------------------------------------------


def test_graph_is_folded_single_file_and_dynamic(exported):
    path, proto = exported
    assert bn_nodes(proto) == []
    # Mul, Resize (bilinear), Slice and Add: the residual joins (train/generator.py)
    ops = {"Conv", "LeakyRelu", "Resize", "Concat", "Slice", "Mul", "Add"}
    assert {n.op_type for n in proto.graph.node} <= ops
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert not any(path.parent.glob("*.data"))
    assert proto.ir_version == ir_version_for(18) == 8
    assert [i.name for i in proto.graph.input] == [f"z{k}" for k in range(LEVELS)]
    assert [o.name for o in proto.graph.output] == ["image"]
    for k, inp in enumerate(proto.graph.input):
        dims = inp.type.tensor_type.shape.dim
        assert dims[0].dim_value == 1 and dims[1].dim_value == 3
        assert (dims[2].dim_param, dims[3].dim_param) == (f"z{k}_height", f"z{k}_width")
    # no stack traces or local paths left in the file
    assert b"/work/" not in path.read_bytes() and b"stack_trace" not in path.read_bytes()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@pytest.mark.parametrize(
    "origin,size,period",
    [
        ((0, 0), (64, 64), None),
        ((-13, 29), (37, 53), None),  # odd, non-square, negative origin
        ((5, -3), (1, 1), None),
        ((3, 3), (129, 40), None),
        ((-5, 7), (40, 72), (32, 64)),  # periodic
    ],
)
def test_parity_with_torch(exported, unfolded, origin, size, period):
    path, _ = exported
    report = verify_parity(unfolded, path, [size], origin=origin, period=period, tol=1e-5)
    assert report.max_diff <= 1e-5
    print(report.lines())


def test_parity_failure_is_one_line_user_error(exported):
    path, _ = exported
    other = make_generator(1, folded=True)
    with pytest.raises(UserError) as e:
        verify_parity(other, path, [(16, 16), (17, 9)])
    assert "\n" not in str(e.value) and "parity check failed" in str(e.value)


def test_metadata_round_trips(exported, self_contained, unfolded):
    _, proto = exported
    props = {p.key: p.value for p in proto.metadata_props}
    assert props == to_metadata(info_for(unfolded))
    assert from_metadata(props) == info_for(unfolded)
    assert proto.metadata_props[-1].key == "tilegen.format_version"  # written last
    sc = onnx.load(str(self_contained["periodic"]))
    info = from_metadata({p.key: p.value for p in sc.metadata_props})
    want = info_for(unfolded, form="self-contained", tile=(24, 40), period=(32, 64))
    assert info == want
    assert load(self_contained["periodic"]).info == want


# --- the self-contained form --------------------------------------------------------------------

ORIGINS = [(0, 0), (8, 16), (-1, -1), (-37, 101), (5, -3), (-(2**31) - 5, 2**33 + 1)]


@pytest.fixture(scope="module")
def sessions(exported, self_contained):
    return {"windowed": session(exported[0])} | {k: session(p) for k, p in self_contained.items()}


@pytest.mark.parametrize("origin", ORIGINS)
def test_self_contained_tile_equals_tiler_tile(sessions, self_contained, unfolded, origin):
    for which in ("plain", "periodic"):
        info = load(self_contained[which]).info
        h, w = info.tile
        for seed in (0, 2**32 - 1):
            got = self_contained_tile(sessions[which], seed, *origin)
            # The tiler's way: the windowed graph fed tilegen.noise windows, then cropped.
            want = tiler_tile(sessions["windowed"], info, seed, *origin, h, w, info.period)
            assert got.shape == want.shape == (1, 3, h, w)
            assert np.abs(got - want).max() <= 1e-6
            assert np.array_equal(got, want)  # bit-identical in onnxruntime
            ref = sample_tile(unfolded, seed, *origin, h, w, info.period).numpy()
            assert np.abs(got - ref).max() <= 1e-5


def test_self_contained_matches_the_tilers_loader(exported, self_contained):
    """Against tilegen.model (the Dask tiler's renderer), when it is there."""
    model = pytest.importorskip("tilegen.model")
    path, _ = exported
    sc = session(self_contained["plain"])
    for y0, x0 in ((0, 0), (-37, 101)):
        want = model.render_tile(path, 3, y0, x0, 37, 53)
        assert np.array_equal(self_contained_tile(sc, 3, y0, x0)[0], want)


def test_self_contained_is_periodic(self_contained):
    sc = session(self_contained["periodic"])
    a = self_contained_tile(sc, 9, -3, 5)
    assert np.array_equal(a, self_contained_tile(sc, 9, -3 + 32, 5 - 64))
    assert not np.array_equal(a, self_contained_tile(sc, 9, -3 + 8, 5))


DYNAMIC_SIZES = [(1, 1), (37, 53), (64, 64), (17, 130)]


@pytest.mark.parametrize("origin", ORIGINS)
def test_dynamic_tile_equals_tiler_tile(sessions, unfolded, origin):
    """Any size, periodic or not, from one file: bit-identical to the tiler's tile."""
    info = info_for(unfolded)
    for size in DYNAMIC_SIZES:
        for period in (None, (32, 64), (8, 16)):
            seed = 2**32 - 1 if period else 0
            got = self_contained_tile(sessions["dynamic"], seed, *origin, size, period)
            want = tiler_tile(sessions["windowed"], info, seed, *origin, *size, period)
            assert got.shape == want.shape == (1, 3, *size)
            assert np.array_equal(got, want), (size, period)
    ref = sample_tile(unfolded, 3, *origin, 37, 53, (32, 64)).numpy()
    got = self_contained_tile(sessions["dynamic"], 3, *origin, (37, 53), (32, 64))
    assert np.abs(got - ref).max() <= 1e-5


def test_dynamic_form_contract(self_contained, sessions, unfolded):
    """Inputs, outputs, format version 2 and the contract output (= the sidecar's JSON)."""
    sess = sessions["dynamic"]
    assert [i.name for i in sess.get_inputs()] == [
        "seed", "y0", "x0", "height", "width", "period_y", "period_x"
    ]  # fmt: skip
    assert all(i.type == "tensor(int64)" and i.shape == [] for i in sess.get_inputs())
    assert [o.name for o in sess.get_outputs()] == ["image", "contract"]
    inspected = load(self_contained["dynamic"])
    info = inspected.info
    assert info.dynamic and info.tile is None and info.period is None
    assert inspected.metadata["tilegen.format_version"] == "2"
    feed = {i.name: np.array(1, np.int64) for i in sess.get_inputs()}
    doc = json.loads(bytes(sess.run(["contract"], feed)[0]).decode())
    assert doc == runtime_contract(info)
    assert doc["stride"] == 2 ** (LEVELS - 1) and doc["tile"] is None
    assert (
        list(doc["inputs"]) == info.graph_inputs() and "round_half_to_even" in doc["quantisation"]
    )
    assert "dynamic tile size" in format_text(describe(inspected))


def test_dynamic_form_in_the_tiler(exported, self_contained):
    """tilegen.model renders with the dynamic form exactly as with the windowed one."""
    model = pytest.importorskip("tilegen.model")
    for period in (None, (32, 64)):
        want = model.render_tile(exported[0], 6, -29, 2**31 + 3, 45, 70, period)
        got = model.render_tile(self_contained["dynamic"], 6, -29, 2**31 + 3, 45, 70, period)
        assert np.array_equal(got, want)


def test_self_contained_refuses_bad_period_and_tile(exported, unfolded):
    _, proto = exported
    with pytest.raises(UserError, match="multiple of 8"):
        build_self_contained(proto, info_for(unfolded), (16, 16), (30, 32))
    with pytest.raises(UserError, match="positive"):
        build_self_contained(proto, info_for(unfolded), (0, 16))
    with pytest.raises(UserError, match="period_y"):  # the dynamic form takes it as inputs
        build_self_contained(proto, info_for(unfolded), None, (32, 32))


# --- inspect ------------------------------------------------------------------------------------


def _expected_costs(model: TextureGenerator) -> tuple[int, float]:
    """(parameters, MACs per output pixel for large tiles) from the torch module."""
    k_of = {}
    for k, block in enumerate(model.noise_blocks):
        k_of.update({id(m): k for m in block.modules()})
    for k, block in enumerate(model.joins, start=1):
        k_of.update({id(m): k for m in block.modules()})
    k_of[id(model.to_image)] = model.cfg.levels - 1
    params, macs = 0, 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            params += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
            per_pixel = m.weight.numel()  # out * in * kh * kw
            macs += per_pixel / 4 ** (model.cfg.levels - 1 - k_of[id(m)])
    return params, macs


def test_inspect_reports_params_cost_and_windows(exported, unfolded):
    path, _ = exported
    from tilegen.windows import axis_window

    folded = fold(make_generator(0, folded=False))
    params, macs_per_px = _expected_costs(folded)
    d = describe(load(path), (-13, 29, 37, 53))
    assert d["params_conv"] == params
    assert d["macs_per_mp_large"] == pytest.approx(macs_per_px * 1e6)
    assert d["flops_per_mp_large"] == pytest.approx(2 * macs_per_px * 1e6)
    ay, ax = axis_window(unfolded.cfg.arch, -13, 37), axis_window(unfolded.cfg.arch, 29, 53)
    for k, lv in enumerate(d["levels"]):
        assert lv["noise_window"] == [list(ay.noise[k]), list(ax.noise[k])]
    # The tile's MACs: a torch forward on the same windows would do exactly these.
    feeds, _ = noise_feeds(load(path).info, 0, -13, 29, 37, 53)
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o: shapes.__setitem__(id(mod), o.shape))
        for m in folded.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        folded(*[torch.from_numpy(z) for z in feeds.values()])
    for h in hooks:
        h.remove()
    want = sum(
        m.weight.numel() * shapes[id(m)][2] * shapes[id(m)][3]
        for m in folded.modules()
        if isinstance(m, torch.nn.Conv2d)
    )
    assert d["tile"]["macs_per_mp"] == pytest.approx(want / (37 * 53 / 1e6))
    text = format_text(d)
    assert "tilegen.exemplar_sha256" in text and "MACs" in text


def test_inspect_self_contained(self_contained, exported):
    d_sc = describe(load(self_contained["periodic"]))
    d_w = describe(load(exported[0]), (0, 0, 24, 40))
    assert d_sc["tile"]["height"] == 24 and d_sc["tile"]["width"] == 40
    assert d_sc["params_conv"] == d_w["params_conv"]
    assert d_sc["tile"]["macs_per_mp"] == pytest.approx(d_w["tile"]["macs_per_mp"])
    assert d_sc["tile"]["level_periods"] == [[4, 8], [8, 16], [16, 32], [32, 64]]


def _foreign(path: Path) -> Path:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(g, ir_version=8), str(path))
    return path


def _newer(src: Path, path: Path) -> Path:
    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == "tilegen.format_version":
            p.value = str(FORMAT_VERSION + 1)
    onnx.save(proto, str(path))
    return path


def _bad_files(src: Path, d: Path) -> dict[str, list[Path]]:
    data = src.read_bytes()
    cuts = sorted({1, 10, len(data) // 3, len(data) // 2, len(data) - 40, len(data) - 1})
    truncated = []
    for n in cuts:
        p = d / f"cut{n}.onnx"
        p.write_bytes(data[:n])
        truncated.append(p)
    return {
        "foreign": [_foreign(d / "foreign.onnx")],
        "truncated": truncated,
        "newer": [_newer(src, d / "newer.onnx")],
    }


@pytest.mark.parametrize(
    "kind,message",
    [
        ("foreign", "not a tilegen model"),
        ("truncated", ""),
        ("newer", "newer than this tilegen reads"),
    ],
)
def test_inspect_rejects_bad_files(exported, tmp_path, kind, message):
    for p in _bad_files(exported[0], tmp_path)[kind]:
        with pytest.raises(UserError) as e:
            load(p)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_every_truncation_is_rejected(self_contained, tmp_path):
    data = self_contained["plain"].read_bytes()
    p = tmp_path / "cut.onnx"
    for n in range(0, len(data), max(1, len(data) // 300)):
        p.write_bytes(data[:n])
        with pytest.raises(UserError):
            load(p)


def test_tilers_loader_rejects_bad_files(exported, tmp_path):
    model = pytest.importorskip("tilegen.model")
    for kind, paths in _bad_files(exported[0], tmp_path).items():
        for p in paths:
            with pytest.raises(UserError) as e:
                model.open_model(p)
            assert "\n" not in str(e.value), (kind, str(e.value))


def _cli(*args: str, block_torch: bool = False) -> subprocess.CompletedProcess:
    code = "import sys; " + ("sys.modules['torch'] = None; " if block_torch else "")
    code += "import cli; sys.argv = ['tilegen'] + sys.argv[1:]; cli.main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_inspect_cli_without_torch(exported, self_contained, tmp_path):
    r = _cli("inspect", str(self_contained["periodic"]), "--tile", "-5", "7", "24", "40",
             block_torch=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "tilegen.period = [32, 64]" in r.stdout and "MACs" in r.stdout
    r = _cli("inspect", str(exported[0]), "--json", block_torch=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["form"] == "windowed"
    for kind, paths in _bad_files(exported[0], tmp_path).items():
        r = _cli("inspect", str(paths[-1]), block_torch=True)
        assert r.returncode == 2, (kind, r.stdout, r.stderr)
        assert r.stderr.startswith("tilegen: error: ") and r.stderr.count("\n") == 1, r.stderr


# --- tilegen export (CLI) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory):
    checkpoint = pytest.importorskip("train.checkpoint")
    path = tmp_path_factory.mktemp("pt") / "model.pt"
    meta = {"exemplar_sha256": "ab" * 32, "training": {"iters": 3}, "channels": "RGB"}
    checkpoint.save_generator(path, make_generator(0, folded=True), meta)
    return path


def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    import cli

    monkeypatch.setattr(sys, "argv", ["tilegen", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _reuse_export(monkeypatch, proto: onnx.ModelProto) -> None:
    """Skip the second torch export (slow on 2 shared cores): the CLI gets the fixture's graph
    (same weights as model_pt) with its own metadata; everything else runs for real."""
    import export.onnx_export as ox

    def fake(model, info, opset=18):
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        del p.metadata_props[:]
        for k, v in to_metadata(info).items():
            p.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        return p

    monkeypatch.setattr(ox, "torch_to_onnx", fake)


def test_cli_export_self_contained(model_pt, exported, tmp_path, monkeypatch, capsys):
    _reuse_export(monkeypatch, exported[1])
    out = tmp_path / "sc.onnx"
    args = ("export", str(model_pt), "-o", str(out), "--self-contained", "--tile", "24", "40")
    code, stdout, err = _run_cli(monkeypatch, capsys, *args, "--period", "32x64")
    assert code == 0, err
    assert "wrote" in stdout and "max |diff|" in stdout
    info = load(out).info
    assert info.form == "self-contained" and info.tile == (24, 40) and info.period == (32, 64)
    assert info.exemplar_sha256 == "ab" * 32 and info.training["iters"] == 3
    assert info.training["generator"]["levels"] == LEVELS
    # no temp files left; the sidecar holds the contract
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sc.onnx", "sc.onnx.json"]
    assert json.loads((tmp_path / "sc.onnx.json").read_text()) == runtime_contract(info)
    sc = session(out)
    for origin in ((0, 0), (-11, 13)):
        want = tiler_tile(session(exported[0]), info, 5, *origin, 24, 40, (32, 64))
        assert np.abs(self_contained_tile(sc, 5, *origin) - want).max() <= 1e-6
    # an existing file is kept without --overwrite
    code, _, err = _run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "already exists" in err
    code, _, err = _run_cli(monkeypatch, capsys, "export", str(model_pt), "-o", str(out), "--tile",
                            "8", "8", "--overwrite")  # fmt: skip
    assert code == 2 and "--self-contained" in err


def test_cli_export_dynamic_and_wrap_without_torch(
    model_pt, exported, tmp_path, monkeypatch, capsys
):
    """--self-contained without --tile: the dynamic form, from a .pt, or from a windowed .onnx
    with torch unimportable; both equal the tiler's tiles and carry their sidecar."""
    _reuse_export(monkeypatch, exported[1])
    out = tmp_path / "dyn.onnx"
    code, stdout, err = _run_cli(monkeypatch, capsys, "export", str(model_pt), "-o", str(out),
                                 "--self-contained")  # fmt: skip
    assert code == 0, err
    assert load(out).info.dynamic
    wrapped = tmp_path / "wrapped.onnx"
    r = _cli("export", str(exported[0]), "-o", str(wrapped), "--self-contained", block_torch=True)
    assert r.returncode == 0, r.stderr
    assert "wrapped.onnx.json" in r.stdout
    side = json.loads((tmp_path / "wrapped.onnx.json").read_text())
    assert side == runtime_contract(load(wrapped).info) and side["form"] == "self-contained"
    win = session(exported[0])
    info = load(out).info
    for path in (out, wrapped):
        sc = session(path)
        for origin, size in (((0, 0), (16, 24)), ((-11, 2**31 + 13), (33, 9))):
            want = tiler_tile(win, info, 5, *origin, *size, (32, 64))
            assert np.array_equal(self_contained_tile(sc, 5, *origin, size, (32, 64)), want)
    # refusals: one line, exit 2
    for args, message in (
        ((str(exported[0]), "-o", str(tmp_path / "x.onnx")), "--self-contained"),
        ((str(wrapped), "-o", str(tmp_path / "y.onnx"), "--self-contained"), "already a"),
        ((str(model_pt), "-o", str(tmp_path / "z.onnx"), "--self-contained", "--period", "32"),
         "--period needs --tile"),
    ):  # fmt: skip
        r = _cli("export", *args, block_torch=True)
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    (tmp_path / "w2.onnx.json").write_text("{}")  # an existing sidecar is kept too
    r = _cli("export", str(exported[0]), "-o", str(tmp_path / "w2.onnx"), "--self-contained")
    assert r.returncode == 2 and "w2.onnx.json already exists" in r.stderr


def test_cli_export_refuses_when_parity_fails(model_pt, exported, tmp_path, monkeypatch, capsys):
    """A deliberately wrong graph (another generator's) must not be written: exit 2, one line."""
    _reuse_export(monkeypatch, _with_weights_of(make_generator(7, folded=True), exported[1]))
    out = tmp_path / "bad.onnx"
    code, stdout, err = _run_cli(monkeypatch, capsys, "export", str(model_pt), "-o", str(out))
    assert code == 2
    status, error = err.strip().splitlines()  # "exporting ...", then the one error line
    assert status.startswith("exporting ") and error.startswith("tilegen: error: parity check"), err
    assert not out.exists() and not list(tmp_path.iterdir())


def _with_weights_of(other: TextureGenerator, proto: onnx.ModelProto) -> onnx.ModelProto:
    """The fixture's windowed graph with `other`'s weights (conv by conv; no torch export)."""
    wrong = onnx.ModelProto()
    wrong.CopyFrom(proto)
    state = other.state_dict()  # the exporter names initializers by parameter names
    for t in wrong.graph.initializer:
        if t.name in state:
            t.CopyFrom(onnx.numpy_helper.from_array(state[t.name].numpy(), t.name))
    return wrong


# --- docs: noise reference and the plain-onnxruntime example ---------------------------------


def test_noise_reference_json_matches_tilegen_noise():
    ref = json.loads((ROOT / "docs" / "noise_reference.json").read_text())
    assert (ref["spec"], ref["version"]) == ("tilegen-hash32", 1)
    for m in ref["mix32"]:
        assert int(mix32(np.uint32(m["in"]))) == m["out"]
    for r in ref["values"] + ref["periodic"]:
        period = tuple(r["level_period"]) if "level_period" in r else None
        v = noise_window(r["seed"], r["level"], r["channel"] + 1, r["y"], r["x"], 1, 1, period)
        assert float(v[r["channel"], 0, 0]) == r["value"], r
        assert (r["hash"] >> 8) * 2.0**-24 == r["value"] and int(r["hash_hex"], 16) == r["hash"]
        y, x = (r["wrapped_y"], r["wrapped_x"]) if period else (r["y"], r["x"])
        h = mix32(np.uint32(r["seed"]))
        for c in (r["level"], r["channel"], y, x):
            h = mix32(h ^ np.uint32(c & 0xFFFFFFFF))
        assert int(h) == r["hash"], r
    w = ref["window"]
    got = noise_window(w["seed"], w["level"], w["channels"], w["y0"], w["x0"], w["height"],
                       w["width"])  # fmt: skip
    assert got.tolist() == w["values_chw"]
    assert len(ref["values"]) >= 40 and any(r["y"] < 0 for r in ref["values"])
    assert any(r["seed"] >= 2**31 for r in ref["values"])


def test_noise_reference_json_is_current():
    from export.noise_reference import dumps, reference

    assert (ROOT / "docs" / "noise_reference.json").read_text() == dumps(reference())


def test_plain_onnxruntime_example(self_contained, tmp_path):
    from PIL import Image

    script = ROOT / "examples" / "plain_onnxruntime.py"
    assert "tilegen" not in "".join(
        ln for ln in script.read_text().splitlines() if ln.startswith(("import", "from"))
    )
    out = tmp_path / "texture.png"
    # tilegen (and torch) made unimportable: the example must not need them
    code = (
        "import sys, runpy; sys.modules['tilegen'] = None; sys.modules['torch'] = None; "
        f"sys.argv = [{str(script)!r}] + sys.argv[1:]; runpy.run_path({str(script)!r}, "
        "run_name='__main__')"
    )
    args = [str(self_contained["periodic"]), str(out), "--seed", "4", "--origin", "-8", "16"]
    r = subprocess.run([sys.executable, "-c", code, *args, "--tiles", "2", "3"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(out))
    assert img.shape == (48, 120, 3) and img.dtype == np.uint8 and img.std() > 0
    sc = session(self_contained["periodic"])
    tile = self_contained_tile(sc, 4, -8 + 24, 16 + 40)[0].transpose(1, 2, 0)
    want = np.rint(np.clip(tile, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(img[24:48, 40:80], want)


def test_weight_standardised_generator_exports_with_parity(tmp_path):
    """The default normalisation (weight standardisation) folds into plain convolutions on
    export, and onnxruntime matches the unfolded torch model."""
    model = make_generator(1, folded=False, norm="ws")
    proto, _ = export_protos(model, info_for(model))
    assert not bn_nodes(proto)
    save(proto, tmp_path / "ws.onnx")
    report = verify_parity(model, tmp_path / "ws.onnx", [(16, 16), (23, 41)], tol=1e-5)
    assert report.max_diff < 1e-5
    feeds, _ = noise_feeds(info_for(model), 0, 0, 0, 16, 16, None)
    with torch.no_grad():
        direct = model(*[torch.from_numpy(z) for z in feeds.values()]).numpy()
    got = session(tmp_path / "ws.onnx").run(["image"], feeds)[0]
    assert np.abs(got - direct).max() < 1e-5
