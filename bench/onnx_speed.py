"""Megapixels per second of an exported generator in onnxruntime vs torch, same machine, same run.

    python bench/onnx_speed.py [--model MODEL.pt [--network-only | --integer]]
                               [--sizes 256 512 1024 2048] [--threads 2]

Without --model: the default-size generator (levels 6, width 16), randomly initialised, given
BatchNorm statistics by a few train-mode forwards, then folded (speed does not depend on the
weights). It is exported with export/onnx_export.py (windowed form) and both runtimes evaluate
the same graph on the same noise windows: onnxruntime on the CPU (intra_op_num_threads=THREADS,
sequential execution, all graph optimisations), torch with torch.set_num_threads(THREADS) under
no_grad. An output tile of S x S pixels at the origin needs a window of (S + 4) x (S + 4): the
rate counts the S x S pixels asked for (the halo is part of the cost). Noise generation is timed
separately (tilegen.noise, numpy). Each figure is the median of --repeat runs after one warm-up.

--integer (with --model): the model's float export and its integer-exact export (`tilegen export
--integer`: train/quantize.py, export/integer.py), each as the network alone and as the whole
model, in onnxruntime only: milliseconds per output megapixel for the network, for the projection
(the whole model's time less the network's) and in all, on the same noise windows.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from export.onnx_export import export_onnx, noise_feeds  # noqa: E402
from tilegen.contract import ModelInfo  # noqa: E402
from train.generator import (  # noqa: E402
    GeneratorConfig,
    TextureGenerator,
    fold,
    training_noise,
)


def default_generator() -> TextureGenerator:
    torch.manual_seed(0)
    cfg = GeneratorConfig()  # levels 6, width 16
    model = TextureGenerator(cfg).train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(3):
            model(*training_noise(cfg, 2, 64, g))
    return fold(model.eval())


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a MODEL.pt from 'tilegen train' (default: random init)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--network-only", action="store_true", help="without the model's projection")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--integer", action="store_true", help="float vs integer export (--model)")
    args = ap.parse_args()
    if args.integer:
        if not args.model:
            ap.error("--integer needs --model MODEL.pt")
        return float_vs_integer(args)

    if args.model:
        from train.checkpoint import load_generator

        model, _ = load_generator(args.model, "cpu")
        if args.network_only:
            from train.generator import without_projection

            model = without_projection(model)
    else:
        model = default_generator()
    cfg = model.cfg
    info = ModelInfo(
        arch=cfg.arch, noise_channels=cfg.noise_channels, out_channels=cfg.out_channels
    )
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.onnx")
        export_onnx(model, info, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    torch.set_num_threads(args.threads)
    n_params = sum(p.numel() for p in model.parameters())

    print(f"# generator: levels {cfg.levels}, width {cfg.width}, {n_params:,} parameters (folded)")
    print(f"# onnxruntime {ort.__version__} (CPU, {args.threads} intra-op threads), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads, no_grad), "
          f"numpy noise; median of {args.repeat}")  # fmt: skip
    print(f"# machine: {platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"{platform.processor() or platform.platform()}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
    print("| tile | window | noise ms | onnxruntime ms | onnxruntime MP/s | torch ms | "
          "torch MP/s | onnxruntime / torch | max abs diff |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in args.sizes:
        feeds, _ = noise_feeds(info, 0, 0, 0, s, s)
        t_noise = timed(lambda s=s: noise_feeds(info, 0, 0, 0, s, s), args.repeat)
        tensors = [torch.from_numpy(z) for z in feeds.values()]
        t_ort = timed(lambda f=feeds: sess.run(["image"], f), args.repeat)

        def run_torch(t=tensors):
            with torch.no_grad():
                return model(*t)

        t_torch = timed(run_torch, args.repeat)
        out_ort = sess.run(["image"], feeds)[0]
        diff = float(np.abs(out_ort - run_torch().numpy()).max())
        mp = s * s / 1e6
        print(
            f"| {s}x{s} | {out_ort.shape[2]}x{out_ort.shape[3]} | {t_noise * 1e3:.0f} | "
            f"{t_ort * 1e3:.0f} | {mp / t_ort:.2f} | {t_torch * 1e3:.0f} | {mp / t_torch:.2f} | "
            f"{t_torch / t_ort:.2f}x | {diff:.1e} |",
            flush=True,
        )


def float_vs_integer(args) -> None:
    """ms per output megapixel of the network and the projection, float and integer exports."""
    from export.integer import integer_graph, network_only
    from export.onnx_export import export_protos, model_info, session
    from train.checkpoint import load_generator
    from train.generator import without_projection
    from train.quantize import quantize_generator

    model, meta = load_generator(args.model, "cpu")
    info = model_info(model, meta)
    t = time.perf_counter()
    qg = quantize_generator(model)
    print(f"# {args.model}: quantised in {time.perf_counter() - t:.0f} s")
    graphs = {
        ("float", "network"): export_protos(without_projection(model), info)[0],
        ("float", "whole"): export_protos(model, info)[0],
        ("integer", "network"): integer_graph(network_only(qg), info),
        ("integer", "whole"): integer_graph(qg, info),
    }
    sessions = {k: session(g, args.threads) for k, g in graphs.items()}
    print(f"# onnxruntime {ort.__version__} (CPU, {args.threads} intra-op threads); median of "
          f"{args.repeat}; machine: {platform.machine()}, {os.cpu_count()} logical CPUs, load "
          f"average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
    print("| tile | arithmetic | network ms/MP | projection ms/MP | whole ms/MP | whole MP/s |")
    print("|---:|---|---:|---:|---:|---:|")
    for s in args.sizes:
        feeds, _ = noise_feeds(info, 0, 0, 0, s, s)
        mp = s * s / 1e6
        for kind in ("float", "integer"):
            net, whole = (timed(lambda g=sessions[kind, part], f=feeds: g.run(["image"], f),
                                args.repeat) for part in ("network", "whole"))  # fmt: skip
            print(f"| {s}x{s} | {kind} | {net / mp * 1e3:.0f} | {(whole - net) / mp * 1e3:.0f} | "
                  f"{whole / mp * 1e3:.0f} | {mp / whole:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
