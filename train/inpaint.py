"""Texture inpainting: fill a hole so that the patches overlapping it follow the patch distribution
of the known part of the same image (the seed talk's "Other applications", same loss as Alg. 1).

Per pyramid level l (the mask goes down the same reflect-padded Gaussian pyramid as the image):
- a level pixel is *touched* when any hole pixel contributes to it (its blurred mask is > 0; a
  convolution of zeros is exactly 0, so "untouched" is exact, not a tolerance);
- target patches y^l: the p x p patches (stride 1, not wrapping) with no touched pixel, i.e. patches
  of the known part only, J <= n_target drawn once;
- source patches x^l: every patch with at least one touched pixel (the hole's patches together with
  the known border around it, which is what makes the fill continue the surroundings).
Those two sets split the level's patches in two. The loss is sum_l OT(x^l, y^l) through the same
semi-discrete engine as synth (train/patch_ot.py), one psi per level.

Only the hole is a parameter: a (1, C, K) tensor for the K missing pixels, scattered into a frozen
copy of the image, so known pixels are never touched (not even rounded) and the result returns
them bit for bit. Patches never wrap (a hole at the border just has fewer patches around it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tilegen import options
from train.device import pick_device
from train.patch_ot import OTConfig, PatchOTLoss, extract_patches, gaussian_pyramid
from train.pixels import optimise_pixels
from train.synth import to_tensor


@dataclass
class InpaintConfig:
    iters: int = 500
    lr: float = 0.01  # Adam on the hole's pixels in [0, 1]
    seed: int = 0
    device: str = "auto"
    ot: OTConfig = field(default_factory=OTConfig)


@dataclass
class _LevelSources:
    """Where one level's source patches are: a crop of the level and rows of its patches."""

    y0: int
    y1: int  # crop rows y0:y1 of the level (patch top-left rows y0 .. y1-p)
    x0: int
    x1: int
    rows: torch.Tensor  # indices into extract_patches(crop) (row-major over the crop's patches)


def check_mask(image_hw: tuple[int, int], mask: np.ndarray) -> None:
    """ValueError with the reason when a mask cannot be used with an image of this size."""
    if mask.shape != tuple(image_hw):
        raise ValueError(
            f"the mask is {mask.shape[0]}x{mask.shape[1]} but the image is "
            f"{image_hw[0]}x{image_hw[1]}: they must have the same size"
        )
    if not mask.any():
        raise ValueError("the mask is empty: nothing to fill (white marks the missing pixels)")
    if mask.all():
        raise ValueError(
            "the mask covers the whole image: nothing is known to learn the texture from"
        )


def _touched_patches(hole: torch.Tensor, patch: int) -> torch.Tensor:
    """(h-p+1, w-p+1) bool: the patch starting there has a touched pixel (hole: (1,1,h,w) 0/1)."""
    return F.max_pool2d(hole, patch, stride=1)[0, 0] > 0


def _plan(
    known: torch.Tensor, mask: torch.Tensor, cfg: OTConfig, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[_LevelSources]]:
    """Target patches (known part) and source-patch locations (touching the hole), per level."""
    p = cfg.patch
    holes = gaussian_pyramid(mask, cfg.scales, periodic=False)
    levels = gaussian_pyramid(known, cfg.scales, periodic=False)
    targets, sources = [], []
    for lvl, (hole, level) in enumerate(zip(holes, levels)):
        touched = _touched_patches((hole > 0).to(hole.dtype), p)
        keep = (~touched).flatten().nonzero()[:, 0]
        if keep.numel() == 0:
            h, w = level.shape[-2:]
            raise ValueError(
                f"at scale {lvl + 1} ({h}x{w} px) no {p}x{p} patch lies fully in the known part: "
                f"use fewer --scales or a smaller hole"
            )
        if keep.numel() > cfg.n_target:
            pick = torch.randperm(keep.numel(), generator=generator)[: cfg.n_target]
            keep = keep[pick.to(keep.device)]
        targets.append(extract_patches(level, p, periodic=False)[keep])

        ys, xs = touched.nonzero(as_tuple=True)  # never empty: the mask has a hole pixel
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        rows = (ys - y0) * (x1 - x0) + (xs - x0)
        sources.append(_LevelSources(y0, y1 + p - 1, x0, x1 + p - 1, rows.to(level.device)))
    return targets, sources


def inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    cfg: InpaintConfig,
    on_step: Callable[[int, torch.Tensor, float], None] | None = None,
) -> np.ndarray:
    """The (H, W, C) image with its masked pixels (mask (H, W) bool, True = missing) filled.

    Every pixel outside the mask is returned unchanged, bit for bit. `on_step(iteration, image,
    loss)` is called after every outer iteration, with the current (1, C, H, W) composite.
    """
    mask = np.asarray(mask, dtype=bool)
    check_mask(image.shape[:2], mask)
    ot = cfg.ot
    h, w, c = image.shape
    options.room("the image", (h, w), ot.patch, ot.scales, "use fewer --scales")
    device = pick_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    hole_idx = torch.from_numpy(np.flatnonzero(mask)).to(device)  # flat indices of the hole
    known = to_tensor(np.where(mask[:, :, None], 0.0, image).astype(np.float32), device)
    m = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)

    targets, sources = _plan(known, m, ot, gen)
    ot_loss = PatchOTLoss.from_targets(targets, ot, periodic=False, generator=gen)

    # Start from noise around the known part's colours: each channel uniform with the known
    # pixels' mean and standard deviation (clipped to [0, 1]).
    known_px = torch.from_numpy(image[~mask]).to(device)  # (H*W - K, C)
    mean, std = known_px.mean(0), known_px.std(0)
    noise = torch.rand(1, c, hole_idx.numel(), generator=gen).to(device) * 2 - 1
    hole = (mean[None, :, None] + 3**0.5 * std[None, :, None] * noise).clamp(0, 1)
    hole.requires_grad_()
    flat_known = known.flatten(2)
    scatter_idx = hole_idx.expand(1, c, -1)

    def composite(hole: torch.Tensor) -> torch.Tensor:
        # Out-of-place scatter: known pixels are copied, the hole's come from the parameter.
        return flat_known.scatter(2, scatter_idx, hole).view(1, c, h, w)

    def source_patches(img: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for level, s in zip(gaussian_pyramid(img, ot.scales, periodic=False), sources):
            crop = level[:, :, s.y0 : s.y1, s.x0 : s.x1]
            out.append(extract_patches(crop, ot.patch, periodic=False)[s.rows])
        return out

    def objective(hole: torch.Tensor) -> torch.Tensor:
        patches = source_patches(composite(hole))
        ot_loss.fit_patches([x.detach() for x in patches])
        return ot_loss.patch_loss(patches)

    optimise_pixels(hole, objective, cfg.iters, cfg.lr, on_step, view=composite)
    out = image.astype(np.float32, copy=True)
    out[mask] = hole.detach()[0].t().cpu().numpy()
    return out
