"""What the potentials do at each pyramid level of a training crop.

    python bench/psi_levels.py MODEL.pt EXEMPLAR.png [--iters 200] [--set ot.KEY=VALUE ...]

Runs the training loss's psi fitting (`fit_potentials`, then the loss's own exact step) on
`--iters` crops of the model's network (no projection, no weight update), then on one more crop
prints per level: the rows the psi steps see, psi's spread (std), the mean cost of the assigned
targets against the mean nearest-neighbour cost (psi = 0), and the share of the targets that
receive a patch. Where psi's spread is well above the nearest-neighbour cost, the assignment
follows psi more than the patches (docs/history/models.md, 'the psi step'). `--set` changes the
TrainConfig's OTConfig as bench/generator_quality.py does (`ot.psi_steps=5`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.generator_quality import parse_sets  # noqa: E402
from tilegen.imageio import read_image  # noqa: E402
from train.checkpoint import load_generator  # noqa: E402
from train.generator import training_noise, without_projection  # noqa: E402
from train.patch_ot import PatchOTLoss  # noqa: E402
from train.synth import to_tensor  # noqa: E402
from train.train_generator import TrainConfig, crop_training  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("exemplar")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], metavar="ot.KEY=VALUE")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = without_projection(load_generator(a.model)[0])
    cfg = TrainConfig()
    ot_changes = {k.removeprefix("ot."): v for k, v in parse_sets(a.set).items()}
    cfg = replace(cfg, ot=replace(cfg.ot, **ot_changes))
    rng = torch.Generator().manual_seed(0)
    loss = PatchOTLoss(to_tensor(read_image(a.exemplar), "cpu"), cfg.ot, False, rng)

    def crop() -> torch.Tensor:
        noise = training_noise(cfg.gen, 1, cfg.size, rng)
        with torch.no_grad():
            return crop_training(cfg.gen, model(*noise), cfg.size)

    for _ in range(a.iters):  # the training loop's psi updates, the network held fixed
        image = crop()
        loss.fit_potentials(image)
        loss.loss(image)
    image = crop()
    loss.fit_potentials(image)
    print("| level | rows | psi std | assigned cost | nearest cost | ratio | targets used |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for level, (ot, x) in enumerate(zip(loss.scales, loss.source_patches(image))):
        x = loss.weigh(x)
        sigma, _ = ot.assign(x)
        assigned = float(((x - ot.y[sigma]) ** 2).sum(1).mean())
        nearest = float((torch.cdist(x, ot.y) ** 2).min(1).values.mean())
        used = sigma.unique().numel() / ot.n_target
        print(
            f"| {level} | {x.shape[0]} | {float(ot.psi.std()):.4f} | {assigned:.4f} | "
            f"{nearest:.4f} | {assigned / nearest:.2f} | {used:.3f} |"
        )


if __name__ == "__main__":
    main()
