"""Training speed: our Alg. 2 iteration against a reference-style one, in one run.

Both train the same generator (GeneratorConfig defaults: 6 levels, width 16) on 256x256 outputs
with the 5-scale patch-OT loss, J = 2000 exemplar patches per scale, batch 1, 10 psi steps and one
Adam step per iteration. They differ only in how the loss is computed:

- reference-style (DESIGN.md section 2, as wgenpatex does it): every psi step and the generator
  loss build the full N x J cost matrix ||x||^2 + ||y||^2 - 2 x.y of ALL source patches (N = 64009
  at the finest scale: 512 MB) and take gradients with autograd through it (psi by ASGD on the
  semi-dual, the generator through min_j of the matrix);
- ours (train/patch_ot.py, the code `tilegen train` runs): one augmented matmul per chunk of rows
  (chunk x J memory), psi steps on a random subsample of 4096 source patches with the closed-form
  gradient, and a gather-based loss whose gradient never touches the matrix.

    python bench/train_speed.py [--exemplar PATH] [--ours N] [--ref N] [--threads T]

Prints ms/iteration for both and the ratio. Timings include the generator forward/backward.

    python bench/train_speed.py --defaults [--ours N] [--threads T]

instead times the first CPU training default (128^2 crops, 5 scales, 10 averaged psi
steps, every patch in the loss) against today's `TrainConfig` settings (see DEFAULT_SCHEDULE in
train/train_generator.py), interleaved, both at 128^2 and today's at its own crop size.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tilegen.imageio import read_image  # noqa: E402
from train.generator import GeneratorConfig, training_noise  # noqa: E402
from train.patch_ot import OTConfig, PatchOTLoss  # noqa: E402
from train.synth import to_tensor  # noqa: E402
from train.train_generator import (  # noqa: E402
    TrainConfig,
    crop_training,
    default_schedule,
    new_generator,
)

SIZE, SCALES, J = 256, 5, 2000
# 512x512, so that every scale has at least J patches (a 128x128 crop has fewer at coarse scales).
DEFAULT_EXEMPLAR = ROOT.parent / "shared" / "textures" / "bark.png"
if not DEFAULT_EXEMPLAR.is_file():
    DEFAULT_EXEMPLAR = ROOT / "tests" / "data" / "bark_128.png"


class ReferenceLoss:
    """Reference-style multiscale semi-dual: full N x J matrices, autograd everywhere."""

    def __init__(self, ours: PatchOTLoss):
        self.ours = ours  # same pyramid, patches and targets as ours
        self.y = [s.y for s in ours.scales]
        self.psi = [torch.zeros(t.shape[0], requires_grad=True) for t in self.y]
        self.opt = [torch.optim.ASGD([p], lr=1.0, alpha=0.5, t0=1) for p in self.psi]

    @staticmethod
    def cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The whole N x J matrix of squared distances."""
        return (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2.0 * x @ y.t()

    def fit_potentials(self, image: torch.Tensor, steps: int = 10) -> None:
        patches = self.ours.source_patches(image.detach())
        for x, y, psi, opt in zip(patches, self.y, self.psi, self.opt):
            for _ in range(steps):
                opt.zero_grad()
                semi_dual = (self.cost(x, y) - psi[None]).min(1)[0].mean() + psi.mean()
                (-semi_dual).backward()  # ascent on psi
                opt.step()

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for x, y, psi in zip(self.ours.source_patches(image), self.y, self.psi):
            total = total + (self.cost(x, y) - psi.detach()[None]).min(1)[0].mean()
        return total


def iteration(model, cfg, loss_fn, opt, rng, size: int = SIZE) -> float:
    """One Alg. 2 iteration: noise, forward (train mode), psi steps, one Adam step."""
    image = crop_training(cfg, model(*training_noise(cfg, 1, size, rng)), size)
    loss_fn.fit_potentials(image.detach())
    loss = loss_fn.loss(image)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


class Runner:
    """One training set-up (model, Adam, loss, RNG) that can be stepped and timed."""

    def __init__(
        self,
        name: str,
        exemplar: torch.Tensor,
        cfg: GeneratorConfig,
        ot: OTConfig | None = None,
        size: int = SIZE,
    ):
        self.name, self.cfg, self.times, self.size = name, cfg, [], size
        self.rng = torch.Generator().manual_seed(0)
        if ot is None:  # what `tilegen train` runs, at SCALES scales and J patches
            ot = replace(TrainConfig().ot, scales=SCALES, n_target=J)
        ours = PatchOTLoss(exemplar, ot, False, self.rng)
        self.loss_fn = ours if name != "reference" else ReferenceLoss(ours)
        self.model = new_generator(cfg, 0, torch.device("cpu")).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.01)

    def step(self, timed: bool = True) -> None:
        t = time.perf_counter()
        iteration(self.model, self.cfg, self.loss_fn, self.opt, self.rng, self.size)
        if timed:
            self.times.append(1000 * (time.perf_counter() - t))
            print(f"  {self.name}: {self.times[-1]:.0f} ms", flush=True)

    @property
    def median(self) -> float:
        return sorted(self.times)[len(self.times) // 2]


# tilegen train's first CPU default: the reference's 10 averaged psi steps, no exact
# step from the loss, every finest-level patch in the loss, 5 scales, 128^2 crops.
BEFORE = (OTConfig(scales=5, psi_steps=10, loss_psi_step=False, loss_stride=1), 128)


def compare_defaults(exemplar: torch.Tensor, cfg: GeneratorConfig, timed: int) -> None:
    """Before against today's CPU default, interleaved; today's also at the old crop size."""
    size = default_schedule("cpu")[0]
    runners = [Runner("before 128^2", exemplar, cfg, *BEFORE)]
    runners.append(Runner("now at 128^2", exemplar, cfg, TrainConfig().ot, 128))
    if size != 128:
        runners.append(Runner(f"now {size}^2", exemplar, cfg, TrainConfig().ot, size))
    for r in runners:
        r.step(timed=False)
    for _ in range(timed):
        for r in runners:
            r.step()
    for r in runners:
        print(f"{r.name:>14}: {r.median:6.0f} ms/iter, {runners[0].median / r.median:.2f}x before")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exemplar", default=str(DEFAULT_EXEMPLAR), help="512x512 gives J=2000")
    ap.add_argument("--ours", type=int, default=7, help="timed iterations of ours")
    ap.add_argument("--ref", type=int, default=3, help="timed iterations of the reference")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--defaults", action="store_true", help="CPU default: before vs now")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    exemplar = to_tensor(read_image(args.exemplar))
    cfg = GeneratorConfig(out_channels=exemplar.shape[1])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads, load average {load:.1f}"
    )
    js = [s.y.shape[0] for s in PatchOTLoss(exemplar, OTConfig(scales=SCALES), False,
                                            torch.Generator().manual_seed(0)).scales]  # fmt: skip
    print(f"exemplar {args.exemplar} {tuple(exemplar.shape[2:])}: J per scale {js}")
    if args.defaults:
        print(f"now: {TrainConfig().ot}, crops {default_schedule('cpu')[0]}^2")
        return compare_defaults(exemplar, cfg, args.ours)
    print(f"{SIZE}x{SIZE} output, {SCALES} scales, batch 1, generator {cfg}")

    # Interleaved (ours, reference, ours, ...) so that both see the same machine load.
    ours, ref = Runner("ours", exemplar, cfg), Runner("reference", exemplar, cfg)
    ours.step(timed=False)  # warm-up: allocations, first-call overheads
    ref.step(timed=False)
    for i in range(max(args.ours, args.ref)):
        if i < args.ours:
            ours.step()
        if i < args.ref:
            ref.step()

    ratio = ref.median / ours.median
    print(f"ours:      {ours.median:8.0f} ms/iter (median of {args.ours})")
    print(f"reference: {ref.median:8.0f} ms/iter (median of {args.ref})")
    print(f"speed-up:  {ratio:.1f}x")


if __name__ == "__main__":
    main()
