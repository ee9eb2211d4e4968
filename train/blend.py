"""Texture barycenters: one image whose patches sit between those of several exemplars (the seed
talk's "Other applications").

Minimise  sum_k w_k OT(patches(output), patches(exemplar_k))  over the pixels, multiscale (summed
over pyramid levels), with one PatchOTLoss per exemplar and so one potential psi_k per exemplar and
level, all fitted against the same source patches of the current image. A patch x_i is then pulled
towards sum_k w_k y^k_sigma_k(i): a barycenter in patch space, with the transport plans keeping the
patch distribution whole. The weights are normalised to sum 1 (the loss keeps synth's scale), and an
exemplar of weight 0 is left out, so weight 0 or 1 is exactly synth of A or B with the same seed.

Ramp (`ramp="horizontal"` or `"vertical"`): the weights vary across the image, w_k(i) from the
position of patch i (see `ramp_weights`), and the objective becomes
    sum_k ( sum_i w_k(i) [c(x_i, y^k_sigma_k(i)) - psi_k,sigma_k(i)] / N
            + mean_i w_k(i) mean_j psi_k,j ),
i.e. OT_k is the transport of the *weighted* source measure sum_i w_k(i) delta(x_i) / N (mass
mean_i w_k(i)) to exemplar k scaled to that mass. Each psi_k is fitted with the same weights
(SemiDiscreteOT.ascend(weights=...)): that psi_k is the optimal dual of this weighted problem, so by
the envelope theorem the weighted gather loss is its exact gradient. Fitting psi_k on the uniform
source instead would ask the whole image (B's side too) to reproduce all of A's patches, and the
weighted loss would then follow a transport plan of another problem. With constant weights both
forms equal the plain barycenter above.

Periodicity: without a ramp the output tiles (periodic patches and pyramid), as in synth. A ramp
goes from A on one side to B on the other, so wrapping would set B's edge against A's: the ramp
output is not periodic (patches do not wrap and the pyramid reflects), and periodic=True with a
ramp is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from train.device import pick_device
from train.patch_ot import OTConfig, PatchOTLoss, gaussian_pyramid
from train.pixels import optimise_pixels
from train.synth import check_sizes, to_image, to_tensor

RAMPS = ("horizontal", "vertical")
RAMP_MARGIN = 0.125  # the first and last eighth of the image keep the pure end textures


@dataclass
class BlendConfig:
    size: tuple[int, int] = (256, 256)
    iters: int = 500
    lr: float = 0.01  # Adam on pixels in [0, 1]
    seed: int = 0
    periodic: bool | None = None  # None: True without a ramp, False with one
    device: str = "auto"
    ot: OTConfig = field(default_factory=OTConfig)


def normalise_weights(weights: Sequence[float], n: int) -> list[float]:
    """Weights >= 0 with a positive sum, one per exemplar, scaled to sum 1 (ValueError if not)."""
    w = [float(v) for v in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} exemplars: give one weight per exemplar")
    if any(not np.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise ValueError(f"weights {w}: each must be >= 0 and their sum positive")
    total = sum(w)
    return [v / total for v in w]


def ramp_profile(u: torch.Tensor, n: int) -> torch.Tensor:
    """Weights (len(u), n) of n exemplars at positions u in [0, 1] across the image.

    t = the position with the first and last RAMP_MARGIN of the image held at 0 and 1, linear in
    between; exemplar k has the hat weight max(0, 1 - |t (n-1) - k|), so with two exemplars
    (1 - t, t): B's share grows linearly from 0 to 1, and the weights always sum to 1.
    """
    t = ((u - RAMP_MARGIN) / (1 - 2 * RAMP_MARGIN)).clamp(0, 1)
    k = torch.arange(n, dtype=u.dtype, device=u.device)
    return (1 - (t[:, None] * (n - 1) - k[None, :]).abs()).clamp_min(0)


def ramp_weights(
    size: tuple[int, int], n: int, ramp: str, cfg: OTConfig, device: torch.device | str = "cpu"
) -> list[list[torch.Tensor]]:
    """Per exemplar, per pyramid level: the weight (N_l,) of each non-periodic source patch.

    A patch's position is its centre, in fractions of its level's width (horizontal ramp: left
    to right) or height (vertical: top to bottom); the rows follow extract_patches' order.
    """
    probe = torch.zeros(1, 1, *size)
    out: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for level in gaussian_pyramid(probe, cfg.scales, periodic=False):
        h, w = level.shape[-2:]
        ny, nx = h - cfg.patch + 1, w - cfg.patch + 1
        centre = (cfg.patch - 1) / 2 + 0.5
        if ramp == "horizontal":
            u = ((torch.arange(nx) + centre) / w).repeat(ny)
        else:
            u = ((torch.arange(ny) + centre) / h).repeat_interleave(nx)
        prof = ramp_profile(u, n).to(device)
        for k in range(n):
            out[k].append(prof[:, k].contiguous())
    return out


def check_blend(
    exemplars: Sequence[np.ndarray],
    weights: Sequence[float] | None,
    cfg: BlendConfig,
    ramp: str | None,
) -> bool:
    """ValueError for a blend that cannot run; else whether its output tiles (periodic)."""
    if not exemplars:
        raise ValueError("blend needs at least one exemplar")
    chans = {e.shape[2] for e in exemplars}
    if len(chans) > 1:
        raise ValueError(
            f"the exemplars have {sorted(chans)} channels: give images with the same channels "
            f"(all RGB, or all grayscale)"
        )
    for e in exemplars:
        check_sizes(e.shape[:2], cfg.size, cfg.ot)
    if ramp is None:
        return True if cfg.periodic is None else cfg.periodic
    if ramp not in RAMPS:
        raise ValueError(f"unknown ramp {ramp!r}: use horizontal or vertical")
    if weights is not None:
        raise ValueError("a ramp sets the weights from the position: give no weights with it")
    if len(exemplars) < 2:
        raise ValueError("a ramp needs at least two exemplars")
    if cfg.periodic:
        raise ValueError("a ramp cannot tile (A's edge would meet B's): use periodic=False")
    return False


def blend(
    exemplars: Sequence[np.ndarray],
    weights: Sequence[float] | None,
    cfg: BlendConfig,
    ramp: str | None = None,
    on_step: Callable[[int, torch.Tensor, float], None] | None = None,
) -> np.ndarray:
    """An (H, W, C) texture between the exemplars ((h_k, w_k, C) each, C the same for all).

    `weights`: one per exemplar (normalised to sum 1); with two, weights=[1 - W, W] and W is B's
    share. None means equal weights. With `ramp` the weights come from the position instead and
    `weights` must be None. `on_step(iteration, image, loss)` runs after every outer iteration.
    """
    periodic = check_blend(exemplars, weights, cfg, ramp)
    w = normalise_weights(
        weights if weights is not None else [1.0] * len(exemplars), len(exemplars)
    )

    device = pick_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    # With fixed weights, an exemplar of weight 0 is no part of the objective: skip it.
    used = [k for k in range(len(exemplars)) if ramp is not None or w[k] > 0]
    losses = [
        PatchOTLoss(to_tensor(exemplars[k], device), cfg.ot, periodic=periodic, generator=gen)
        for k in used
    ]
    if ramp is not None:
        patch_w = ramp_weights(cfg.size, len(exemplars), ramp, cfg.ot, device)
    else:
        patch_w = [None] * len(exemplars)

    h, wd = cfg.size
    image = torch.rand(1, exemplars[0].shape[2], h, wd, generator=gen).to(device).requires_grad_()

    def objective(image: torch.Tensor) -> torch.Tensor:
        patches = losses[0].source_patches(image)  # one pyramid, shared by every exemplar's OT
        detached = [x.detach() for x in patches]
        total = None
        for k, ot_loss in zip(used, losses):
            ot_loss.fit_patches(detached, patch_w[k])
            term = ot_loss.patch_loss(patches, patch_w[k])
            term = term if ramp is not None else w[k] * term
            total = term if total is None else total + term
        return total

    return to_image(optimise_pixels(image, objective, cfg.iters, cfg.lr, on_step))
