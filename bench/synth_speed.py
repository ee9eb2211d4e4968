"""Alg. 1 speed: our outer iteration against a reference-style one, in the same run.

The reference style (DESIGN.md section 2, as ahoudard/wgenpatex does it): per scale, the whole
N x J cost matrix is built with autograd, psi takes 10 ASGD steps (lr 1) through backward on it,
then the image loss backpropagates through the same N x J matrix. Ours: chunked augmented-matmul
argmin, closed-form psi gradient on a subsample, a gather for the image loss.

    python bench/synth_speed.py                    # ratio at 256^2, 4 scales, J = 2000

(The default command's wall time with start-up, 128^2 x 200 iterations, per thread policy:
bench/threads.py, bench/RESULTS.md "Threads".)
    python bench/synth_speed.py --full             # + a full 500-iteration synthesis: time, RSS
    python bench/synth_speed.py --quality-iters 50 # + both styles' evaluate distance at 128^2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tilegen.imageio import read_image  # noqa: E402
from train.patch_ot import (  # noqa: E402
    OTConfig,
    PatchOTLoss,
    extract_patches,
    gaussian_pyramid,
    sample_target_patches,
)
from train.synth import to_tensor  # noqa: E402

EXEMPLAR = ROOT / "tilegen" / "assets" / "exemplars" / "bark.png"
REFERENCE_PSI_STEPS = 10  # the reference schedule (DESIGN.md section 2), whatever our default


class ReferenceStyle:
    """One outer iteration the way the reference code does it: full N x J matrices, autograd."""

    def __init__(self, exemplar: torch.Tensor, cfg: OTConfig, gen: torch.Generator):
        self.cfg = cfg
        self.targets = sample_target_patches(exemplar, cfg, gen)
        self.psis = [
            torch.zeros(t.shape[0], device=t.device, requires_grad=True) for t in self.targets
        ]
        self.psi_opts = [torch.optim.ASGD([p], lr=1.0) for p in self.psis]

    @staticmethod
    def cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2 * x @ y.t()  # N x J

    def step(self, image: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        levels = gaussian_pyramid(image, self.cfg.scales, periodic=True)
        losses = []
        opt.zero_grad()
        for level, y, psi, psi_opt in zip(levels, self.targets, self.psis, self.psi_opts):
            x = extract_patches(level, self.cfg.patch, periodic=True)
            for _ in range(REFERENCE_PSI_STEPS):  # maximise F(psi) by autograd through N x J
                psi_opt.zero_grad()
                f = (self.cost(x.detach(), y) - psi).min(1).values.mean() + psi.mean()
                (-f).backward()
                psi_opt.step()
            losses.append((self.cost(x, y) - psi.detach()).min(1).values.mean())
        loss = torch.stack(losses).sum()
        loss.backward()  # autograd through every N x J matrix into the image
        opt.step()
        return float(loss.detach())


def interleaved_times(steps: dict, rounds: int, repeats: dict) -> dict:
    """Median seconds per iteration of each step, timed in alternation (a, b, a, b, ...) so that
    every set-up sees the same machine load; `repeats[name]` iterations make one sample."""
    for step in steps.values():
        step()  # warm-up: allocations, thread pools
    samples = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(repeats[name]):
                step()
            samples[name].append((time.perf_counter() - t) / repeats[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def speed(size: int, rounds: int) -> dict:
    torch.manual_seed(0)
    ex = to_tensor(read_image(EXEMPLAR))
    cfg = OTConfig(scales=4, n_target=2000)

    image = torch.rand(1, ex.shape[1], size, size, requires_grad=True)
    opt = torch.optim.Adam([image], lr=0.01)
    ours = PatchOTLoss(ex, cfg, periodic=True, generator=torch.Generator().manual_seed(0))

    def our_step() -> None:
        ours.fit_potentials(image.detach())
        loss = ours.loss(image)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ref = ReferenceStyle(ex, cfg, torch.Generator().manual_seed(0))
    ref_image = torch.rand(1, ex.shape[1], size, size, requires_grad=True)
    ref_opt = torch.optim.Adam([ref_image], lr=0.01)
    t = interleaved_times(
        {"ours": our_step, "ref": lambda: ref.step(ref_image, ref_opt)},
        rounds,
        {"ours": 5, "ref": 1},
    )
    return {
        "size": size,
        "ours_s_per_iter": t["ours"],
        "ref_s_per_iter": t["ref"],
        "ratio": t["ref"] / t["ours"],
    }


def full_run(iters: int, size: int) -> dict:
    """A real `tilegen synth` in a child process: wall time and the child's peak RSS."""
    out = ROOT / "out" / "bench_synth_full.png"
    out.parent.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "synth",
        str(EXEMPLAR),
        "-o",
        str(out),
        "--overwrite",
        "--size",
        str(size),
        str(size),
        "--iters",
        str(iters),
        "--device",
        "cpu",
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"iters": iters, "size": size, "wall_s": wall, "peak_rss_mb": rss_mb, "output": str(out)}


def quality(iters: int, size: int = 128, seed: int = 1, device: str = "cpu") -> dict:
    """Both styles for the same number of iterations from the same start, scored by evaluate.
    `seed` picks the start image and (with seed - 1) the target patches and psi subsamples."""
    from tilegen.metrics import patch_ot_distance

    ex_np = read_image(EXEMPLAR)
    ex = to_tensor(ex_np, torch.device(device))
    cfg = OTConfig(scales=4, n_target=2000)
    start = torch.rand(1, ex.shape[1], size, size, generator=torch.Generator().manual_seed(seed))
    start = start.to(device)
    results = {}
    for name in ("ours", "reference"):
        image = start.clone().requires_grad_()
        opt = torch.optim.Adam([image], lr=0.01)
        gen = torch.Generator().manual_seed(seed - 1)
        if name == "ours":
            engine = PatchOTLoss(ex, cfg, periodic=True, generator=gen)
            for _ in range(iters):
                engine.fit_potentials(image.detach())
                loss = engine.loss(image)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    image.clamp_(0, 1)
        else:
            ref = ReferenceStyle(ex, cfg, gen)
            for _ in range(iters):
                ref.step(image, opt)
        img = image.detach()[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        results[name] = patch_ot_distance(ex_np, img)["debiased"]
    return {"iters": iters, "size": size, "seed": seed, "device": device, **results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument(
        "--rounds", type=int, default=3, help="alternations (median of them); 0: no timing"
    )
    p.add_argument("--full", action="store_true", help="also run a 500-iteration synthesis")
    p.add_argument("--quality-iters", type=int, default=0)
    p.add_argument("--quality-seeds", type=int, default=1, help="start images 1..N, mean")
    p.add_argument("--quality-size", type=int, default=128)
    p.add_argument("--device", default="cpu", help="for --quality-iters (timings are CPU)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}"
    )
    report = {}
    if args.full:  # first: a child forked from a big parent would count the parent's pages
        f = full_run(500, args.size)
        print(
            f"full synthesis {f['iters']} iterations at {f['size']}^2: {f['wall_s']:.0f} s, "
            f"peak RSS {f['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        report["full"] = f
    if args.rounds:
        r = speed(args.size, args.rounds)
        print(
            f"outer iteration at {r['size']}^2, 4 scales, J=2000: ours "
            f"{r['ours_s_per_iter']:.3f} s, reference-style {r['ref_s_per_iter']:.2f} s, "
            f"ratio {r['ratio']:.1f}x"
        )
        report["speed"] = r
    if args.quality_iters:
        runs = []
        for seed in range(1, args.quality_seeds + 1):
            q = quality(args.quality_iters, args.quality_size, seed, args.device)
            print(
                f"evaluate distance after {q['iters']} iterations at {q['size']}^2, start "
                f"{seed}, {args.device}: ours {q['ours']:.6f}, reference-style "
                f"{q['reference']:.6f}",
                flush=True,
            )
            runs.append(q)
        if len(runs) > 1:
            ours = statistics.mean(q["ours"] for q in runs)
            ref = statistics.mean(q["reference"] for q in runs)
            print(f"mean of {len(runs)} starts: ours {ours:.6f}, reference-style {ref:.6f}")
        report["quality"] = runs
    print(json.dumps(report))


if __name__ == "__main__":
    main()
