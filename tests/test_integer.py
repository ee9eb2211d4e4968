"""The integer-exact model (train/quantize.py, export/integer.py): the ONNX graph computes the
reference integer arithmetic exactly, tiles stay exact and periodic, every sum fits float32's
integers, the CLI writes and checks it, and the self-contained form paints the tiler's bytes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli

from export.integer import (
    bias_digits,
    export_integer_verified,
    integer_graph,
    network_only,
    patch_order,
)
from export.onnx_export import model_info, save, session, wrap_verified
from tilegen.contract import ModelInfo
from tilegen.imageio import read_image
from tilegen.inspect import describe, load
from tilegen.model import noise_feeds, open_model, quantize_planar, render_tile
from train.checkpoint import save_generator
from train.generator import GeneratorConfig, fold, sample_tile
from train.quantize import (
    LEAK,
    MAX_SUM,
    activation_grid,
    calibrate,
    coarse_levels,
    quantize_generator,
    range_params,
    refit_potentials,
    sample_tile_integer,
)
from train.train_generator import fit_projection, new_generator

ROOT = Path(__file__).resolve().parents[1]
EXEMPLAR = ROOT / "tests" / "data" / "grass_128.png"


def small_model(width: int, residual: float = 0.5, levels: int = 3, coarse=None):
    """A random network (outputs spread over [0, 1]) with a projection fitted to it (after
    coarse stages at levels `coarse`, if given)."""
    torch.manual_seed(0)
    cfg = GeneratorConfig(levels=levels, width=width, residual=residual)
    net = fold(new_generator(cfg, 0, torch.device("cpu")))
    with torch.no_grad():
        net.to_image.weight.mul_(0.75)  # outputs spread over [0, 1], few saturated
        net.to_image.bias.fill_(0.5)
    return fit_projection(
        net, read_image(EXEMPLAR), n_targets=300, samples=4, size=48, coarse=coarse
    )


@pytest.fixture(scope="module")
def model16():
    """Width 16: its joins run as QLinearConv in onnxruntime, its noise blocks in float32."""
    return small_model(16)


@pytest.fixture(scope="module")
def quantised(model16):
    qg = calibrate(model16, samples=2, size=64)
    return refit_potentials(qg, samples=4, size=48, steps=10)


@pytest.fixture(scope="module")
def exported(model16, quantised, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("integer") / "int16.onnx"
    save(integer_graph(quantised, model_info(model16, {})), path)
    return path


def test_leak_and_scales_are_exact(quantised):
    """The slope is 0.2 to 3e-6 with a 14-bit numerator; every scale is a power of two and
    every convolution's partial sums stay below 2^24 for any uint8 input."""
    assert LEAK * 65536 == 13107 and abs(LEAK - 0.2) < 3.1e-6
    for c in quantised.convs():
        assert c.weight.dtype == np.int8 and np.abs(c.weight.astype(int)).max() <= 127
        assert 0 < c.max_sum() < MAX_SUM
        assert 0 <= c.y.zero <= 255 and (c.act is None or 0 <= c.act.zero <= 255)
    assert quantised.to_image.y.exp == 0 and quantised.to_image.y.zero == 0  # whole levels


def test_activation_grids_cover_their_ranges():
    """Each range gets the finest power-of-two grid of 256 levels that holds it and zero; the
    zero point rounds up (to nearest, [-0.5038, 2.37] was left 0.004 short at every scale down
    to a scale of 1)."""
    for lo, hi in ((-0.5037785531227521, 2.373609354905264), (-0.4983, 2.162), (0.0, 1.0),
                   (-1.0, 0.0), (-3.3, 0.01), (0.2, 7.9)):  # fmt: skip
        q = range_params(lo, hi)
        assert -q.zero * q.scale <= min(lo, 0) and (255 - q.zero) * q.scale >= max(hi, 0)
        assert 255 * q.scale <= 4 * (max(hi, 0) - min(lo, 0))


def test_calibration_grids_leave_out_rare_extremes():
    """A few extreme values do not coarsen a tensor's grid: it holds all but the 0.1% most
    extreme values at either end of each window (those saturate); with quantile 1 it holds
    every value."""
    g = torch.Generator().manual_seed(0)
    windows = [torch.rand(8, 64, 64, generator=g, dtype=torch.float64) for _ in range(2)]
    windows[0][0, 0, :3] = torch.tensor([-5.0, 40.0, 41.0])  # three of 32,768 values

    def held(q, w: torch.Tensor) -> float:
        return float(((w >= -q.zero * q.scale) & (w <= (255 - q.zero) * q.scale)).double().mean())

    clipped, whole = activation_grid(windows), activation_grid(windows, 1.0)
    assert whole.exp + 5 <= clipped.exp  # a grid 32 times finer
    assert all(held(whole, w) == 1.0 for w in windows)
    assert 0.998 <= held(clipped, windows[0]) < 1.0 and held(clipped, windows[1]) >= 0.998


CASES = [  # (seed, y0, x0, h, w, period)
    (0, 0, 0, 64, 64, None),
    (7, -13, 29, 37, 53, None),
    (2**32 - 1, -(2**31) - 5, 2**31 + 3, 20, 70, None),
    (3, -8, 16, 40, 24, (32, 64)),
]


def test_graph_is_the_reference_arithmetic(quantised, exported):
    """onnxruntime (QLinearConv, lookup tables, MatMulInteger, float kernels on exact values)
    gives every output value of the reference, on windows at negative, unaligned and
    past-2^31 origins, periodic too."""
    sess = session(exported, 1)
    info = open_model(exported).info
    for seed, y0, x0, h, w, period in CASES:
        feeds, _ = noise_feeds(info, seed, y0, x0, h, w, period)
        got = sess.run(["image"], feeds)[0]
        assert np.array_equal(got, quantised.image(*feeds.values()).numpy())
    kinds = {n.op_type for n in load(exported).proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Loop", "Cast"} <= kinds


def test_the_bias_is_part_of_the_product():
    """The projection's bias as int8 digits of constant columns: every range (the bundled
    model's, the largest a 4x4 RGB patch allows, a constant, negatives) is reconstructed
    exactly up to one shift, which no row's argmin sees."""
    rng = np.random.default_rng(0)
    for low, high in ((20136, 128585), (0, 3_200_000), (5, 5), (-900, 40)):
        bias = rng.integers(low, high + 1, 1000)
        constants, digits = bias_digits(bias)
        assert digits.dtype == np.int8 and np.abs(digits).max() <= 127
        assert set(constants[:-1].tolist()) <= {255} and constants[-1] == 1
        total = (constants[:, None] * digits.astype(np.int64)).sum(0)
        assert len(np.unique(bias - total)) == 1


def test_keyed_argmin_picks_the_first_minimum_on_ties():
    """The integer projection's argmin (ReduceMin of score * 64 + position, in blocks of 50)
    is numpy's argmin on int32 scores full of ties, negative ones included, over chunks of
    rows (the last one padded); keys that could overflow int32 fall back to ArgMin."""
    import onnx
    from onnx import TensorProto, helper

    from export.chunked import _loop_nodes, integer_scores, keyed_fits

    rng = np.random.default_rng(3)
    k, j, n = 51, 300, 2500
    # 60 distinct columns, each at 5 places: every row's minimum is tied, across blocks too
    distinct = rng.integers(-128, 128, (k, 60)).astype(np.int8)
    weights = distinct[:, rng.permutation(np.arange(j) % 60)]
    rows = rng.integers(0, 256, (n, k)).astype(np.uint8)
    rows[:40] = 0  # every column scores 0: the first wins
    bound = 255 * int(np.abs(weights.astype(np.int64)).sum(0).max())
    assert keyed_fits(bound, j, 50) and not keyed_fits(2**25, j, 50)
    assert not keyed_fits(bound, 4000, 50)  # 80 blocks: more positions than 6 bits hold
    w = helper.make_tensor("w", TensorProto.INT8, weights.shape, weights.tobytes(), raw=True)
    nodes = _loop_nodes("t_", "rows", "", "index", 1024, 50, integer_scores("w"), keyed=j)
    graph = helper.make_graph(
        nodes, "argmin", [helper.make_tensor_value_info("rows", TensorProto.UINT8, [None, k])],
        [helper.make_tensor_value_info("index", TensorProto.INT64, [None])], [w],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    got = session(proto, 1).run(None, {"rows": rows})[0]
    scores = rows.astype(np.int64) @ weights.astype(np.int64)
    assert (scores.min(1) < 0).any() and (scores.min(1) == 0).any()
    assert np.array_equal(got, np.argmin(scores, axis=1))


def test_padding_columns_never_win(model16, quantised, tmp_path):
    """287 targets, padded to 300 columns for the argmin's blocks of 50: the graph's score
    matrix (its int8 columns against rows carrying the bias's constants) picks the reference's
    target for every patch, the darkest and the brightest included (a padding column scores
    x.127 plus more than any bias), and the graph still computes the reference."""
    from onnx import numpy_helper

    qg = replace(quantised, targets=quantised.targets[:287], bias=quantised.bias[:287])
    path = tmp_path / "padded.onnx"
    save(integer_graph(qg, model_info(model16, {})), path)
    inits = {i.name.rsplit("_", 1)[0]: numpy_helper.to_array(i)
             for i in load(path).proto.graph.initializer}  # fmt: skip
    columns, constants = inits["columns"].astype(np.int64), inits["constants"].astype(np.int64)
    assert columns.shape[1] == 300
    d = qg.targets.shape[1]
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros((1, d)), np.full((1, d), 255), rng.integers(0, 256, (500, d)),
                        qg.targets.astype(np.int64)])  # fmt: skip
    # the graph's rows: patch values in its order, then the bias digits' constant multipliers
    rows = np.concatenate(
        [x[:, patch_order(3)], np.broadcast_to(constants, (len(x), len(constants)))], 1
    )
    want = np.argmin(x @ (127 - qg.targets.astype(np.int64)).T + qg.bias[None], axis=1)
    assert np.array_equal(np.argmin(rows @ columns, axis=1), want)
    sess, info = session(path, 1), open_model(path).info
    feeds, _ = noise_feeds(info, 7, -13, 29, 37, 53)
    assert np.array_equal(sess.run(["image"], feeds)[0], qg.image(*feeds.values()).numpy())


def test_onnxruntime_fuses_integer_kernels(exported):
    """What makes it fast: onnxruntime turns the joins into QLinearConv and the activations
    into QLinearLeakyRelu, and scores with MatMulInteger."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(exported.with_suffix(".opt.onnx"))
    so.log_severity_level = 3
    ort.InferenceSession(str(exported), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(so.optimized_model_filepath)
    kinds = {n.op_type for n in opt.graph.node}
    assert {"QLinearConv", "QLinearLeakyRelu"} <= kinds
    loop = next(n for n in opt.graph.node if n.op_type == "Loop")
    assert "MatMulInteger" in {n.op_type for n in loop.attribute[0].g.node}


def test_integer_tiles_are_exact_and_periodic(exported):
    """Any tiling gives one big evaluation's bytes, and the periodic texture wraps."""
    big = render_tile(exported, 5, -40, 17, 96, 128)
    for y, x, h, w in ((-40, 17, 50, 61), (10, 78, 46, 67), (-40, 78, 50, 67)):
        part = render_tile(exported, 5, y, x, h, w)
        assert np.array_equal(part, big[:, y + 40 : y + 40 + h, x - 17 : x - 17 + w])
    per = render_tile(exported, 2, 0, 0, 64, 128, (32, 64))
    assert np.array_equal(per[:, :32], per[:, 32:])
    assert np.array_equal(per[:, :, :64], per[:, :, 64:])


def test_integer_models_skip_the_layout_reorders_with_the_same_bytes(exported, onnx_model):
    """tilegen opens an integer model at onnxruntime's extended level (no NCHWc reorders, which
    cannot change exact integers) and a float model at the full level; the integer model's
    window is the full level's, byte for byte."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    model = open_model(exported)
    assert model.session.get_session_options().graph_optimization_level == level.ORT_ENABLE_EXTENDED
    float_model = open_model(onnx_model)
    assert (
        float_model.session.get_session_options().graph_optimization_level == level.ORT_ENABLE_ALL
    )
    so = ort.SessionOptions()
    so.log_severity_level = 3
    full = ort.InferenceSession(str(exported), so, providers=["CPUExecutionProvider"])
    feeds, _ = noise_feeds(model.info, 3, -70, 41, 96, 80)
    assert np.array_equal(full.run(None, feeds)[0], model.session.run(None, feeds)[0])


def test_close_to_the_float_model(model16, quantised):
    """Quantisation moves the network a few levels; the projection still paints exemplar
    patches (every output pixel the average of four whole-level patches)."""
    f = sample_tile(model16, 1, 0, 0, 64, 64).numpy()
    i = sample_tile_integer(quantised, 1, 0, 0, 64, 64).numpy()
    assert np.abs(f - i).mean() < 0.08
    sums = np.rint(i * 1020)
    assert np.allclose(sums, i * 1020, atol=1e-3)  # quarter-levels of 255, as float32


def test_network_without_projection(quantised, tmp_path):
    """A network alone (no projection) exports too: the levels / 255."""
    net = network_only(quantised)
    info = ModelInfo(arch=net.cfg.arch, noise_channels=3, out_channels=3)
    path = tmp_path / "net.onnx"
    save(integer_graph(net, info), path)
    feeds, _ = noise_feeds(info, 4, -3, 5, 33, 47)
    got = session(path, 1).run(["image"], feeds)[0]
    lv = net.levels(*feeds.values()).numpy()
    assert np.array_equal(got, (lv / 255.0).astype(np.float32))


def test_width8_runs_every_layer_in_float_kernels(tmp_path):
    """A narrow network (no layer for QLinearConv) and residual 0: still exact."""
    model = small_model(8, residual=0.0)
    qg = refit_potentials(calibrate(model, samples=2, size=64), samples=4, size=48, steps=10)
    path = tmp_path / "int8w.onnx"
    save(integer_graph(qg, model_info(model, {})), path)
    info = open_model(path).info
    feeds, _ = noise_feeds(info, 9, 7, -21, 45, 38)
    got = session(path, 1).run(["image"], feeds)[0]
    assert np.array_equal(got, qg.image(*feeds.values()).numpy())


def test_export_integer_self_contained(model16, tmp_path):
    """`export_integer_verified`: the self-contained integer form paints the windowed form's
    bytes (checked exactly before writing), and its contract says what it is."""
    info = model_info(model16, {"exemplar_sha256": "ab" * 32})
    from dataclasses import replace

    out = tmp_path / "sc.onnx"
    _, report, deviation = export_integer_verified(
        model16, replace(info, form="self-contained"), out, fit_samples=4
    )
    assert all(d == 0 for _, d in report.cases) and 0 < deviation < 20
    contract = json.loads(Path(str(out) + ".json").read_text())
    assert contract["arithmetic"]["kind"] == "integer" and contract["form"] == "self-contained"


def test_cli_export_integer(model16, tmp_path):
    """`tilegen export MODEL.pt --integer`, then wrapping it without torch; --integer on an
    .onnx is refused in one line."""
    pt = tmp_path / "m.pt"
    save_generator(pt, model16, {"exemplar_sha256": "cd" * 32})
    out = tmp_path / "m.onnx"
    code, stdout, err = cli("export", pt, "-o", out, "--integer", timeout=600)
    assert code == 0 and "integer" in stdout, err
    assert open_model(out).info.arithmetic["kind"] == "integer"
    d = describe(load(out))
    assert d["params_conv"] > 0
    web = tmp_path / "web.onnx"
    wrap_verified(out, web, None)  # exact tiles against the tiler, no torch
    assert open_model(web).info.arithmetic["kind"] == "integer"
    code, _, err = cli("export", out, "-o", tmp_path / "x.onnx", "--integer")
    assert code == 2 and "give the .pt" in err and err.count("\n") == 1
    info = open_model(out).info
    a = quantize_planar(render_tile(out, 3, -5, 9, 40, 40), info, "uint8")
    b = quantize_planar(render_tile(web, 3, -5, 9, 40, 40), info, "uint8")
    assert np.array_equal(a, b)


# --- coarse projection stages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def coarse_model():
    """Stride 8, so both yardstick levels fit: pooled by 4, then by 2, then the final stage."""
    return small_model(8, levels=4, coarse=[2, 1])


@pytest.fixture(scope="module")
def coarse_quantised(coarse_model):
    """What `tilegen export --integer` does (calibration, then every stage's potentials refitted
    to the integer network with onnxruntime), on few windows."""
    qg = quantize_generator(coarse_model, fit_samples=4)
    assert [s.factor for s in qg.stages] == [4, 2]
    return qg


@pytest.fixture(scope="module")
def coarse_exported(coarse_model, coarse_quantised, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("integer") / "coarse.onnx"
    save(integer_graph(coarse_quantised, model_info(coarse_model, {})), path)
    return path


def test_coarse_stage_is_the_float_stage_in_levels(coarse_model, coarse_quantised):
    """On an image of whole levels a coarse stage's integer form is CoarseProjection's output
    rounded to levels, but where a rounding or an argmin tie goes the other way (its change is
    in quarter levels, the float stage's divided by 1020), by one level at most."""
    float_stage, stage = coarse_model.coarse[0], coarse_quantised.stages[0]
    stage = replace(stage, bias=calibrate(coarse_model, samples=1, size=32).stages[0].bias)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 10, 10, generator=g), size=(100, 100),
                                        mode="bilinear")  # fmt: skip
    lv = torch.round(x.double() * 255)
    with torch.no_grad():
        want = torch.round(float_stage(lv.float() / 255).double().clamp(0, 1) * 255)
    got = coarse_levels(lv, stage)
    assert got.shape == want.shape
    differ = (got != want).double()
    assert (got - want).abs().max() <= 1 and differ.mean() < 0.01


def test_coarse_stages_graph_is_the_reference_arithmetic(coarse_quantised, coarse_exported):
    """Coarse stages in the graph (block sums, QuantizeLinear to whole levels, the projection's
    MatMulInteger Loop, the change upsampled by a transposed convolution): every output value
    equals the reference's, at negative, unaligned and past-2^31 origins, periodic too."""
    sess = session(coarse_exported, 1)
    info = open_model(coarse_exported).info
    for seed, y0, x0, h, w, period in CASES:
        feeds, _ = noise_feeds(info, seed, y0, x0, h, w, period)
        got = sess.run(["image"], feeds)[0]
        want = coarse_quantised.image(*feeds.values()).numpy()
        assert got.shape == want.shape and np.abs(got - want).max() == 0
        tile = sample_tile_integer(coarse_quantised, seed, y0, x0, h, w, period)
        assert np.array_equal(render_tile(coarse_exported, seed, y0, x0, h, w, period),
                              tile[0].numpy())  # fmt: skip
    loops = [n for n in load(coarse_exported).proto.graph.node if n.op_type == "Loop"]
    assert len(loops) == 3  # one argmin per stage


def test_coarse_integer_tiles_are_exact_and_periodic(coarse_exported):
    """A tile is the matching crop of a larger render, and the periodic texture wraps."""
    big = render_tile(coarse_exported, 5, -40, 17, 96, 128)
    for y, x, h, w in ((-40, 17, 50, 61), (10, 78, 46, 67), (-33, 50, 29, 31)):
        part = render_tile(coarse_exported, 5, y, x, h, w)
        assert np.array_equal(part, big[:, y + 40 : y + 40 + h, x - 17 : x - 17 + w])
    per = render_tile(coarse_exported, 2, -64, 0, 64, 128, (32, 64))
    assert np.array_equal(per[:, :32], per[:, 32:])
    assert np.array_equal(per[:, :, :64], per[:, :, 64:])


def test_coarse_integer_metadata(coarse_model, coarse_exported):
    """The contract describes it: the float model's window (its stages' trims), and
    tilegen.arithmetic says it is integer and which coarse stages come first."""
    info = open_model(coarse_exported).info
    assert info.arch == coarse_model.arch and info.arch.tr == coarse_model.cfg.arch.tr > 2
    assert info.arithmetic["kind"] == "integer"
    assert info.arithmetic["coarse_stages"] == [4, 2]
    assert info.arithmetic["projection"] == "MatMulInteger scores"


def test_coarse_integer_close_to_the_float_model(coarse_model, coarse_quantised):
    """The stages keep the integer model near the float one: output pixels are still averages
    of four whole-level patches of the final stage."""
    f = sample_tile(coarse_model, 1, 0, 0, 64, 64).numpy()
    i = sample_tile_integer(coarse_quantised, 1, 0, 0, 64, 64).numpy()
    assert np.abs(f - i).mean() < 0.08
    assert np.allclose(np.rint(i * 1020), i * 1020, atol=1e-3)


def test_export_integer_with_coarse_stages(coarse_model, tmp_path):
    """`export_integer_verified` on a model with coarse stages (no longer refused): the graph
    equals the reference on the export's parity windows and the self-contained form paints the
    tiler's bytes, both checked exactly before writing."""
    info = model_info(coarse_model, {"exemplar_sha256": "ef" * 32})
    out = tmp_path / "coarse_sc.onnx"
    _, report, deviation = export_integer_verified(
        coarse_model, replace(info, form="self-contained"), out, fit_samples=4
    )
    assert report.cases and all(d == 0 for _, d in report.cases) and 0 < deviation < 20
    assert open_model(out).info.arithmetic["coarse_stages"] == [4, 2]
