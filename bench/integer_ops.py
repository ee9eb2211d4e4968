"""Which operators each onnxruntime executes exactly, and how fast: the ground the integer-exact
model stands on (docs/FORMAT.md section 11).

    python bench/integer_ops.py [--runtimes python node web] [--speed]

Each check builds a one- or two-node ONNX model, feeds it inputs chosen to hit the hard cases
(exact ties for rounding, the largest sums the integer model allows) and compares every output
value with numpy's exact integer result: onnxruntime for Python, onnxruntime-node and
onnxruntime-web's WebAssembly backend in Node (tests/js_run.mjs). `--speed` times the
operators the model's hot loops use on this machine (onnxruntime for Python, one thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from runtimes import js_run, no_node, no_ort_web_node  # noqa: E402

ONNX_TYPES = {
    np.float32: TP.FLOAT,
    np.uint8: TP.UINT8,
    np.int8: TP.INT8,
    np.int32: TP.INT32,
    np.int64: TP.INT64,
}


def graph_model(nodes, feeds: dict, outputs: dict, inits: dict, opset: int = 18):
    """A model of `nodes` with inputs like `feeds`, outputs {name: numpy dtype}, initializers."""
    ins = [
        helper.make_tensor_value_info(k, ONNX_TYPES[v.dtype.type], v.shape)
        for k, v in feeds.items()
    ]
    outs = [helper.make_tensor_value_info(k, ONNX_TYPES[t], None) for k, t in outputs.items()]
    g = helper.make_graph(
        nodes,
        "check",
        ins,
        outs,
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8

    return m


def run_python(model, feeds, outputs, threads=1, repeat=1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    times = []
    for _ in range(repeat + (repeat > 1)):
        t = time.perf_counter()
        got = s.run(outputs, feeds)
        times.append(time.perf_counter() - t)
    return dict(zip(outputs, got)), statistics.median(times[1:] if repeat > 1 else times)


def round_half_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x)


def checks(rng: np.random.Generator):
    """(name, model, feeds, {output: exact expected})."""
    out = []
    # Round: ONNX says halves to even.
    halves = (np.arange(-8, 8, dtype=np.float32) + 0.5).astype(np.float32)
    out.append(
        (
            "Round (halves to even)",
            graph_model(
                [helper.make_node("Round", ["x"], ["y"])], {"x": halves}, {"y": np.float32}, {}
            ),
            {"x": halves},
            {"y": round_half_even(halves)},
        )
    )
    # QuantizeLinear with a power-of-two scale on exact halves (x / 2^-2: .5 ties).
    q_in = (np.arange(-600, 600, dtype=np.float32) * 0.125).astype(np.float32)
    out.append(
        (
            "QuantizeLinear, scale 2^-2, ties to even, saturating",
            graph_model(
                [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
                {"x": q_in},
                {"y": np.uint8},
                {"s": np.float32(0.25), "z": np.uint8(100)},
            ),
            {"x": q_in},
            {"y": np.clip(round_half_even(q_in / 0.25) + 100, 0, 255).astype(np.uint8)},
        )
    )
    # Conv in float32 on integer values: the largest fan-in sum the integer model allows.
    x = rng.integers(-255, 256, (1, 24, 20, 20)).astype(np.float32)
    w = rng.integers(-127, 128, (16, 24, 3, 3)).astype(np.float32)
    w[0] = 127 * np.sign(x[0, :, :3, :3])  # one sum of 216 products of 255 x 127 (6,994,935)
    w[0][w[0] == 0] = 127
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x[0].astype(np.int64), (3, 3), axis=(1, 2))  # (24, 18, 18, 3, 3)
    ref = np.einsum("chwij,ocij->ohw", win, w.astype(np.int64))[None]
    out.append(
        (
            "Conv float32 on integers (|sum| < 2^24)",
            graph_model(
                [helper.make_node("Conv", ["x", "w"], ["y"])], {"x": x}, {"y": np.float32}, {"w": w}
            ),
            {"x": x},
            {"y": ref.astype(np.float32)},
        )
    )
    # QDQ conv: DequantizeLinear -> Conv -> QuantizeLinear, power-of-two scales (onnxruntime
    # fuses it into QLinearConv); the sums hit exact ties of the output rounding.
    xq = rng.integers(0, 256, (1, 24, 20, 20)).astype(np.uint8)
    wq = (rng.integers(-127, 128, (16, 24, 3, 3))).astype(np.int8)
    bq = rng.integers(-3000, 3000, 16).astype(np.int32)
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "bs"], ["bf"], axis=0),
        helper.make_node("Conv", ["xf", "wf", "bf"], ["yf"]),
        helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"]),
    ]
    ws = (2.0 ** -rng.integers(6, 9, 16)).astype(np.float32)
    xs, ys = np.float32(2**-5), np.float32(2**-4)
    inits = {
        "xs": xs,
        "xz": np.uint8(128),
        "w": wq,
        "ws": ws,
        "wz": np.zeros(16, np.int8),
        "b": bq,
        "bs": (xs * ws).astype(np.float32),
        "ys": ys,
        "yz": np.uint8(120),
    }
    win = sliding_window_view(xq[0].astype(np.int64) - 128, (3, 3), axis=(1, 2))
    acc = np.einsum("chwij,ocij->ohw", win, wq.astype(np.int64)) + bq[:, None, None]
    real = acc * (xs.astype(np.float64) * ws.astype(np.float64))[:, None, None]
    want = np.clip(round_half_even(real / float(ys)) + 120, 0, 255).astype(np.uint8)[None]
    ties = int((np.abs(real / float(ys) - np.floor(real / float(ys))) == 0.5).sum())
    out.append(
        (
            f"QDQ Conv (QLinearConv), power-of-two scales ({ties} ties)",
            graph_model(nodes, {"x": xq}, {"y": np.uint8}, inits),
            {"x": xq},
            {"y": want},
        )
    )
    # DequantizeLinear -> LeakyRelu (alpha 3/16) -> QuantizeLinear (onnxruntime: QLinearLeakyRelu).
    v = np.arange(256, dtype=np.uint8)
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
        helper.make_node("LeakyRelu", ["xf"], ["lf"], alpha=0.1875),
        helper.make_node("QuantizeLinear", ["lf", "s", "z"], ["y"]),
    ]
    real = (v.astype(np.float64) - 140) * 2**-3
    leaky = np.where(real >= 0, real, real * 0.1875)
    want = np.clip(round_half_even(leaky / 2**-3) + 140, 0, 255).astype(np.uint8)
    out.append(
        (
            "QDQ LeakyRelu 3/16 (QLinearLeakyRelu)",
            graph_model(
                nodes, {"x": v}, {"y": np.uint8}, {"s": np.float32(2**-3), "z": np.uint8(140)}
            ),
            {"x": v},
            {"y": want},
        )
    )
    # MatMulInteger u8 x s8 -> Cast -> Mul -> Add(bias) (onnxruntime: MatMulIntegerToFloat).
    a = rng.integers(0, 256, (512, 48)).astype(np.uint8)
    b = rng.integers(-128, 128, (48, 300)).astype(np.int8)
    a[0], b[:, 0] = 255, -128  # the most negative product sum
    bias = rng.integers(-(2**22), 2**22, 300).astype(np.float32)
    nodes = [
        helper.make_node("MatMulInteger", ["a", "b"], ["p"]),
        helper.make_node("Cast", ["p"], ["pf"], to=TP.FLOAT),
        helper.make_node("Mul", ["one", "one"], ["scale"]),
        helper.make_node("Mul", ["pf", "scale"], ["ps"]),
        helper.make_node("Add", ["ps", "bias"], ["y"]),
    ]
    want = (a.astype(np.int64) @ b.astype(np.int64) + bias.astype(np.int64)).astype(np.float32)
    out.append(
        (
            "MatMulInteger u8 x s8 + bias (MatMulIntegerToFloat)",
            graph_model(
                nodes, {"a": a}, {"y": np.float32}, {"b": b, "bias": bias, "one": np.float32(1)}
            ),
            {"a": a},
            {"y": want},
        )
    )
    # Resize linear x2 (half-pixel) on integers: weights 1/4, 3/4, exact sums.
    r = rng.integers(-128, 128, (1, 4, 9, 11)).astype(np.float32)
    nodes = [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear")]
    up = np.repeat(np.repeat(r, 2, axis=2), 2, axis=3).astype(np.float64)
    pad = np.pad(up, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    rows = (pad[:, :, :-2] + 2 * pad[:, :, 1:-1] + pad[:, :, 2:]) / 4
    rows = rows[:, :, :, 1:-1]
    cols_pad = np.pad(rows, ((0, 0), (0, 0), (0, 0), (1, 1)), mode="edge")
    ref_r = (cols_pad[..., :-2] + 2 * cols_pad[..., 1:-1] + cols_pad[..., 2:]) / 4
    inner = np.s_[:, :, 1:-1, 1:-1]  # the border repeats differently; the model crops it
    model = graph_model(
        nodes, {"x": r}, {"y": np.float32}, {"sc": np.array([1, 1, 2, 2], np.float32)}
    )
    out.append(
        (
            "Resize linear x2 on integers (inner pixels)",
            model,
            {"x": r},
            {"y": (ref_r.astype(np.float32), inner)},
        )
    )
    return out


def compare(got: np.ndarray, want) -> tuple[int, int]:
    region = np.s_[...]
    if isinstance(want, tuple):
        want, region = want
    g, w = np.asarray(got)[region], np.asarray(want)[region]
    if g.shape != w.shape:
        return -1, w.size
    return int((g != w).sum()), int(w.size)


def speed() -> None:
    """Milliseconds per call of the hot operators, onnxruntime for Python, one thread."""
    rng = np.random.default_rng(1)
    size = 520
    rows = []
    x = rng.integers(0, 256, (1, 24, size, size)).astype(np.uint8)
    xf = (x.astype(np.float32) - 128) * 2**-5
    w = rng.integers(-127, 128, (16, 24, 3, 3)).astype(np.int8)
    ws = np.full(16, 2**-7, np.float32)
    conv = [
        helper.make_node("Conv", ["x", "wf", "b"], ["c"]),
        helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2),
    ]
    m = graph_model(
        conv,
        {"x": xf},
        {"y": np.float32},
        {"wf": w.astype(np.float32) * ws[:, None, None, None], "b": np.zeros(16, np.float32)},
    )
    _, t = run_python(m, {"x": xf}, ["y"], repeat=5)
    rows.append(("Conv 3x3 24->16 + LeakyRelu, float32", t))
    qdq = [
        helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"]),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "ys", "yz"], ["qd"]),
        helper.make_node("LeakyRelu", ["qd"], ["l"], alpha=0.1875),
        helper.make_node("QuantizeLinear", ["l", "ys", "yz"], ["y"]),
    ]
    inits = {
        "xs": np.float32(2**-5),
        "xz": np.uint8(128),
        "w": w,
        "ws": ws,
        "wz": np.zeros(16, np.int8),
        "ys": np.float32(2**-4),
        "yz": np.uint8(128),
    }
    m = graph_model(qdq, {"x": x}, {"y": np.uint8}, inits)
    _, t = run_python(m, {"x": x}, ["y"], repeat=5)
    rows.append(("the same in QDQ (QLinearConv + QLinearLeakyRelu), uint8", t))
    n, j = 1024, 2000
    a = rng.integers(0, 256, (n, 49)).astype(np.float32)
    b = rng.integers(-255, 256, (49, j)).astype(np.float32)
    mm = [
        helper.make_node("MatMul", ["a", "b"], ["s"]),
        helper.make_node("ReduceMin", ["s", "ax"], ["y"], keepdims=0),
    ]
    m = graph_model(mm, {"a": a}, {"y": np.float32}, {"b": b, "ax": np.array([1])})
    _, t = run_python(m, {"a": a}, ["y"], repeat=20)
    rows.append((f"scores {n}x49 @ 49x{j} float32 MatMul + ReduceMin", t))
    a8 = rng.integers(0, 256, (n, 48)).astype(np.uint8)
    b8 = rng.integers(-128, 128, (48, j)).astype(np.int8)
    bias = rng.integers(-(2**20), 2**20, j).astype(np.float32)
    mmi = [
        helper.make_node("MatMulInteger", ["a", "b"], ["p"]),
        helper.make_node("Cast", ["p"], ["pf"], to=TP.FLOAT),
        helper.make_node("Mul", ["one", "one"], ["sc"]),
        helper.make_node("Mul", ["pf", "sc"], ["ps"]),
        helper.make_node("Add", ["ps", "bias"], ["s"]),
        helper.make_node("ReduceMin", ["s", "ax"], ["y"], keepdims=0),
    ]
    m = graph_model(
        mmi,
        {"a": a8},
        {"y": np.float32},
        {"b": b8, "bias": bias, "one": np.float32(1), "ax": np.array([1])},
    )
    _, t = run_python(m, {"a": a8}, ["y"], repeat=20)
    rows.append((f"scores {n}x48 @ 48x{j} MatMulInteger u8 x s8 + bias + ReduceMin", t))
    print("\n| operator (onnxruntime for Python, 1 thread) | ms |\n|---|---:|")
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", nargs="+", default=["python", "node", "web"])
    ap.add_argument("--speed", action="store_true")
    args = ap.parse_args()
    import onnxruntime as ort

    print(f"# {platform.machine()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}")
    skip = {"node": no_node(), "web": no_ort_web_node(), "python": None}
    names = {
        "python": "onnxruntime (Python)",
        "node": "onnxruntime-node",
        "web": "onnxruntime-web wasm (Node)",
    }
    runtimes = [r for r in args.runtimes if not skip[r]]
    for r in args.runtimes:
        if skip[r]:
            print(f"# {names[r]} skipped: {skip[r]}")
    print("| check | " + " | ".join(names[r] for r in runtimes) + " |")
    print("|---|" + "---|" * len(runtimes))
    for name, model, feeds, want in checks(np.random.default_rng(0)):
        cells = []
        for r in runtimes:
            try:
                if r == "python":
                    got, _ = run_python(model, feeds, list(want))
                else:
                    got, _ = js_run(r, model, feeds, list(want))
                bad = [compare(got[k], want[k]) for k in want]
                wrong = sum(b for b, _ in bad)
                total = sum(t for _, t in bad)
                cells.append("exact" if wrong == 0 else f"{wrong} of {total} differ")
            except Exception as e:  # a runtime without the operator
                cells.append(f"fails: {str(e).splitlines()[0][:80]}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if args.speed:
        speed()


if __name__ == "__main__":
    main()
