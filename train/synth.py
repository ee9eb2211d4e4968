"""Alg. 1: synthesise one image by optimising its pixels against the multiscale patch-OT loss.

Each outer iteration: a few ascent steps on the potentials psi (warm-started), then one Adam step
on the pixels along the exact gradient of the OT cost for those potentials. The image starts from
uniform noise (never from the exemplar, so the result is a new texture) and, by default, its
patches wrap around so the result tiles seamlessly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tilegen import options
from train.device import pick_device
from train.patch_ot import OTConfig, PatchOTLoss
from train.pixels import optimise_pixels

# Work synth skips because it buys no quality (distance within 0.5% for 1.9x less CPU per
# iteration; bench/synth_cuts.py): the finest loss on a stride-2 grid, 2048 patches a psi step.
SYNTH_CUTS = {"loss_stride": 2, "psi_batch": 2048}


@dataclass
class SynthConfig:
    size: tuple[int, int] = (256, 256)
    iters: int = 500
    lr: float = 0.01  # Adam on pixels in [0, 1]
    seed: int = 0
    periodic: bool = True
    device: str = "auto"
    ot: OTConfig = field(default_factory=lambda: OTConfig(**SYNTH_CUTS))


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, C) float32 -> (1, C, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device)


def to_image(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) -> (H, W, C) float32 clipped to [0, 1]."""
    return t.detach()[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def check_sizes(exemplar_hw: tuple[int, int], size: tuple[int, int], ot: OTConfig) -> None:
    """UserError with the fix when the pyramid has no room for a patch."""
    fix = "use a larger image or fewer --scales"
    options.room("the exemplar", exemplar_hw, ot.patch, ot.scales, fix)
    what = f"--size {size[0]} {size[1]}"
    options.room(what, size, ot.patch, ot.scales, "use a larger --size or fewer --scales")


def synthesize(
    exemplar: np.ndarray,
    cfg: SynthConfig,
    on_step: Callable[[int, torch.Tensor, float], None] | None = None,
) -> np.ndarray:
    """A new (H, W, C) image whose multiscale patch distribution matches the exemplar's.

    `on_step(iteration, image, loss)` is called after every outer iteration (progress bars,
    snapshots).
    """
    check_sizes(exemplar.shape[:2], cfg.size, cfg.ot)
    device = pick_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    target = to_tensor(exemplar, device)
    ot_loss = PatchOTLoss(target, cfg.ot, periodic=cfg.periodic, generator=gen)

    h, w = cfg.size
    image = torch.rand(1, exemplar.shape[2], h, w, generator=gen).to(device).requires_grad_()

    def objective(image: torch.Tensor) -> torch.Tensor:
        ot_loss.fit_potentials(image.detach())
        return ot_loss.loss(image)

    return to_image(optimise_pixels(image, objective, cfg.iters, cfg.lr, on_step))
