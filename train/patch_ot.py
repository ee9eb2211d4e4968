"""The multiscale semi-discrete patch-OT loss (Houdard, Leclaire, Papadakis, Rabin, SSVM 2021).

Target: J patches y_1..y_J of the exemplar (p x p x C vectors, stride 1, J <= 2000 per scale,
drawn once). Source: the patches x_1..x_N of the image being optimised (or of a generator sample).
Cost c(x, y) = ||x - y||^2. The dual potential psi in R^J plays the discriminator:

    F(psi)  = mean_i min_j [c(x_i, y_j) - psi_j] + mean_j psi_j        concave; max_psi F = OT
    sigma(i) = argmin_j  c(x_i, y_j) - psi_j                            the transport map
    dF/dpsi_j = 1/J - #{i : sigma(i) = j} / N                           closed form, no autograd
    loss(x)  = mean_i c(x_i, y_sigma(i)) - psi_sigma(i)                 a gather: exact gradient

Speed (docs/DESIGN.md section 2): the argmin is one augmented matmul per chunk of source rows,
    argmin_j  -2 <x, y_j> + (||y_j||^2 - psi_j)          (||x||^2 does not change the argmin)
so memory is chunk x J, never N x J, and nothing is ever backpropagated through that matrix.
The psi steps use a random subsample of the source patches, and the loss's own argmin over all
N source patches counts as one more, exact, psi step for free. Everything stays float32: bf16
flips a few percent of the argmins. The code is channel-agnostic: any C works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class OTConfig:
    patch: int = 4  # p: patches are p x p x C
    scales: int = 4  # pyramid levels, the loss is summed over them with equal weights
    n_target: int = 2000  # J: exemplar patches kept per scale
    psi_steps: int = 5  # subsampled dual ascent steps per outer iteration
    psi_lr: float = 1.0  # step on psi (the gradient is O(1/J))
    psi_batch: int = 4096  # source patches drawn per psi step and scale
    chunk: int = 2048  # source rows per matmul: memory chunk x J
    # The loss's argmin over all N source patches gives the exact dF/dpsi: step psi with it too,
    # so 5 subsampled steps match the reference's 10 in quality at 0.7x the time.
    loss_psi_step: bool = True
    # The loss at the finest level takes the patches on a stride-s grid, its offset drawn anew
    # at every call: every pixel still lies in (p/s)^2 of them, and the finest level (3/4 of all
    # patches) costs 1/s^2. 1: every patch. synth uses 2 (train/synth.py, SYNTH_CUTS).
    loss_stride: int = 1
    # Per-channel weights of the cost, c(x, y) = sum_c w_c ||x_c - y_c||^2 (None: all ones).
    # Materials weigh their maps (tilegen/material.py, DEFAULT_WEIGHTS); images stay in [0, 1]:
    # the patches, not the pixels, are scaled by sqrt(w) (PatchOTLoss.weigh).
    weights: list[float] | None = None


# --- images -> pyramids -> patches ------------------------------------------------------------

_GAUSS_1D = torch.exp(-0.5 * (torch.arange(4, dtype=torch.float32) - 1.5) ** 2)  # sigma = 1
_GAUSS_1D = _GAUSS_1D / _GAUSS_1D.sum()


def downsample(img: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Blur with a 4x4 Gaussian (sigma 1) and keep every other pixel: (B,C,H,W) -> (B,C,H/2,W/2).

    Periodic images wrap around so the coarser level stays periodic; others reflect.
    """
    c = img.shape[1]
    k = (_GAUSS_1D[:, None] * _GAUSS_1D[None, :]).to(img)
    padded = F.pad(img, (1, 1, 1, 1), mode="circular" if periodic else "reflect")
    return F.conv2d(padded, k.expand(c, 1, 4, 4), stride=2, groups=c)


def gaussian_pyramid(img: torch.Tensor, scales: int, periodic: bool) -> list[torch.Tensor]:
    """[img, img/2, img/4, ...]: `scales` levels, finest first."""
    levels = [img]
    for _ in range(scales - 1):
        levels.append(downsample(levels[-1], periodic))
    return levels


def extract_patches(
    img: torch.Tensor,
    patch: int,
    periodic: bool,
    stride: int = 1,
    offset: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """The p x p patches of (B,C,H,W) as rows (B*N, C*p*p): all of them (stride 1), or those
    whose top-left corner lies on the grid offset + stride * k.

    Periodic: every pixel starts a patch (N = H*W at stride 1, wrapping around), so every pixel
    is seen by the same number of patches and the result has no seam.
    """
    if periodic:
        img = F.pad(img, (0, patch - 1, 0, patch - 1), mode="circular")
    img = img[:, :, offset[0] :, offset[1] :]
    cols = F.unfold(img, patch, stride=stride)  # (B, C*p*p, N)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def min_size(cfg: OTConfig) -> int:
    """Smallest image side for which every pyramid level still holds a patch."""
    return cfg.patch * 2 ** (cfg.scales - 1)


# --- one scale: semi-discrete OT against a fixed set of target patches ------------------------


class SemiDiscreteOT:
    """OT between a source of patches and J fixed target patches, through the potential psi."""

    def __init__(self, target: torch.Tensor, chunk: int = 2048):
        self.y = target  # (J, D)
        self.psi = torch.zeros(target.shape[0], device=target.device)  # warm-started across calls
        self.chunk = chunk
        # -2 y^T: the matmul half of the augmented product (x, 1) @ (-2 y^T ; ||y||^2 - psi).
        self._minus2_yt = (-2.0 * target).t().contiguous()
        self._y2 = (target * target).sum(1)
        self._buf = torch.empty(0, device=target.device)  # reused: avoids allocator churn

    @property
    def n_target(self) -> int:
        return self.y.shape[0]

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma(i) = argmin_j c(x_i, y_j) - psi_j and that minimum (the c-transform psi^c(x_i))."""
        bias = self._y2 - self.psi  # the augmented row ||y_j||^2 - psi_j
        n = x.shape[0]
        idx = torch.empty(n, dtype=torch.long, device=x.device)
        val = torch.empty(n, device=x.device)
        rows = min(self.chunk, n)
        if self._buf.numel() < rows * self.n_target:
            self._buf = torch.empty(rows * self.n_target, device=x.device)
        for s in range(0, n, rows):
            xc = x[s : s + rows]
            scores = self._buf[: xc.shape[0] * self.n_target].view(xc.shape[0], self.n_target)
            torch.addmm(bias, xc, self._minus2_yt, out=scores)  # -2<x,y_j> + ||y_j||^2 - psi_j
            torch.min(scores, dim=1, out=(val[s : s + rows], idx[s : s + rows]))
        val += (x * x).sum(1)  # add back ||x||^2: now val_i = min_j c(x_i, y_j) - psi_j
        return idx, val

    @torch.no_grad()
    def dual_value(self, x: torch.Tensor) -> float:
        """F(psi) = mean_i psi^c(x_i) + mean_j psi_j: a lower bound on OT(source, target)."""
        _, val = self.assign(x)
        return float(val.mean() + self.psi.mean())

    @torch.no_grad()
    def ascend(
        self,
        x: torch.Tensor,
        steps: int,
        lr: float,
        batch: int,
        generator: torch.Generator | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Averaged stochastic gradient ascent on F, warm-started from the current psi.

        Each step draws `batch` source rows, moves psi along dF/dpsi_j = 1/J - n_j / n, and psi
        ends at the average of the iterates (Polyak averaging tames the noise of the subsample).

        `weights` (N,), optional and >= 0, makes the source the weighted measure
        sum_i w_i delta(x_i) / sum_i w_i: n_j / n becomes the weight share of the rows sent to
        y_j. None (or all weights equal) is the plain uniform source.
        """
        n = x.shape[0]
        avg = torch.zeros_like(self.psi)
        for _ in range(steps):
            if batch < n:
                rows = torch.randint(n, (batch,), generator=generator, device="cpu")
                rows = rows.to(x.device)
                xs, ws = x[rows], None if weights is None else weights[rows]
            else:
                xs, ws = x, weights
            sigma, _ = self.assign(xs)
            self.step(sigma, lr, ws)
            avg += self.psi
        self.psi = avg / steps

    @torch.no_grad()
    def step(self, sigma: torch.Tensor, lr: float, weights: torch.Tensor | None = None) -> None:
        """One ascent step psi += lr dF/dpsi, dF/dpsi_j = 1/J - (mass sent to y_j) / (all mass),
        from the assignment sigma of some source rows (weighted by `weights` if given)."""
        j = self.n_target
        if weights is None:
            share = torch.bincount(sigma, minlength=j).to(self.psi.dtype) / sigma.shape[0]
        else:
            w = weights.to(self.psi.dtype)
            share = torch.bincount(sigma, weights=w, minlength=j) / w.sum().clamp_min(1e-12)
        self.psi += lr * (1.0 / j - share)

    def loss(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, psi_lr: float = 0.0
    ) -> torch.Tensor:
        """mean_i c(x_i, y_sigma(i)) - psi_sigma(i), differentiable in x (sigma held fixed).

        By the envelope theorem this is the exact gradient of the OT cost for the current psi;
        the psi term has no gradient and is kept so the value reads as the dual estimate.

        With `weights` (N,): mean_i w_i [c(x_i, y_sigma(i)) - psi_sigma(i)] + mean(w) mean(psi),
        the OT cost of the measure sum_i w_i delta(x_i) / N (mass mean(w)) against the target
        scaled to that mass, so row i's gradient is scaled by w_i. Fit psi with the same weights.

        psi_lr > 0: afterwards, one ascent step on psi from this argmin (all N rows: the exact
        dF/dpsi, already paid for). The returned value uses psi from before that step.
        """
        sigma, _ = self.assign(x.detach())
        cost = ((x - self.y[sigma]) ** 2).sum(1)
        if weights is None:
            value = cost.mean() - self.psi[sigma].mean() + self.psi.mean()
        else:
            value = (weights * (cost - self.psi[sigma])).mean() + weights.mean() * self.psi.mean()
        if psi_lr > 0:
            self.step(sigma, psi_lr, None if weights is None else weights.detach())
        return value


# --- all scales -------------------------------------------------------------------------------


def sample_target_patches(
    exemplar: torch.Tensor, cfg: OTConfig, generator: torch.Generator
) -> list[torch.Tensor]:
    """J random exemplar patches per pyramid level (all of them where there are fewer)."""
    targets = []
    for level in gaussian_pyramid(exemplar, cfg.scales, periodic=False):
        patches = extract_patches(level, cfg.patch, periodic=False)
        if patches.shape[0] > cfg.n_target:
            keep = torch.randperm(patches.shape[0], generator=generator)[: cfg.n_target]
            patches = patches[keep.to(patches.device)]
        targets.append(patches.contiguous())
    return targets


class PatchOTLoss:
    """sum over scales of OT(patches of the image's level l, patches of the exemplar's level l).

    Call `fit_potentials(image)` (psi steps, no gradient) then `loss(image)` (for backward).
    Several images in the batch pool their patches into one source distribution.
    """

    def __init__(
        self,
        exemplar: torch.Tensor,
        cfg: OTConfig,
        periodic: bool,
        generator: torch.Generator,
    ):
        if min(exemplar.shape[-2:]) < min_size(cfg):
            raise ValueError(
                f"exemplar {tuple(exemplar.shape[-2:])} is smaller than {min_size(cfg)} px, "
                f"which {cfg.scales} scales of {cfg.patch}x{cfg.patch} patches need"
            )
        self._setup(sample_target_patches(exemplar, cfg, generator), cfg, periodic, generator)

    @classmethod
    def from_targets(
        cls,
        targets: list[torch.Tensor],
        cfg: OTConfig,
        periodic: bool,
        generator: torch.Generator,
    ) -> PatchOTLoss:
        """The loss against given target patches, one (J_l, C*p*p) tensor per pyramid level.

        For targets that are not all the patches of one exemplar (inpainting: the patches of the
        known region only). Each level's J_l may differ; none may be empty.
        """
        if len(targets) != cfg.scales or any(t.shape[0] == 0 for t in targets):
            raise ValueError(f"need {cfg.scales} non-empty sets of target patches, one per scale")
        self = cls.__new__(cls)
        self._setup([t.contiguous() for t in targets], cfg, periodic, generator)
        return self

    def _setup(
        self,
        targets: list[torch.Tensor],
        cfg: OTConfig,
        periodic: bool,
        generator: torch.Generator,
    ) -> None:
        self.cfg = cfg
        self.periodic = periodic
        self.generator = generator
        self._scale = None
        if cfg.weights is not None:  # sqrt(w_c) for every column of a patch (unfold order)
            d = targets[0].shape[1]
            if d != len(cfg.weights) * cfg.patch**2:
                raise ValueError(f"{len(cfg.weights)} channel weights for patches of {d} values")
            root = torch.tensor(cfg.weights, dtype=targets[0].dtype).sqrt()
            self._scale = root.repeat_interleave(cfg.patch**2).to(targets[0].device)
        self.scales = [SemiDiscreteOT(self.weigh(t), cfg.chunk) for t in targets]
        self.last_values: list[float] = [0.0] * cfg.scales  # per-scale dual estimates

    def source_patches(self, image: torch.Tensor, finest_stride: int = 1) -> list[torch.Tensor]:
        """Every level's patches; at the finest, those on a stride grid at a random offset."""
        levels = gaussian_pyramid(image, self.cfg.scales, self.periodic)
        out = [extract_patches(level, self.cfg.patch, self.periodic) for level in levels[1:]]
        offset = (0, 0)
        if finest_stride > 1:
            offset = tuple(torch.randint(finest_stride, (2,), generator=self.generator).tolist())
        finest = extract_patches(levels[0], self.cfg.patch, self.periodic, finest_stride, offset)
        return [finest, *out]

    @torch.no_grad()
    def fit_potentials(self, image: torch.Tensor) -> None:
        self.fit_patches(self.source_patches(image))

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        return self.patch_loss(self.source_patches(image, self.cfg.loss_stride))

    def weigh(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches in the weighted cost's space (each channel times sqrt(w_c)); as is without
        weights. Applied to the targets once and to the sources in fit_patches / patch_loss."""
        return patches if self._scale is None else patches * self._scale

    # The same two steps on source patches the caller built (a subset of an image's patches, or
    # patches shared by several losses), optionally weighted per patch: `weights` is None or one
    # (N_l,) tensor (or None) per level, see SemiDiscreteOT.ascend / loss.

    @torch.no_grad()
    def fit_patches(
        self, patches: list[torch.Tensor], weights: list[torch.Tensor | None] | None = None
    ) -> None:
        weights = weights if weights is not None else [None] * len(self.scales)
        for ot, x, w in zip(self.scales, patches, weights):
            c = self.cfg
            ot.ascend(self.weigh(x), c.psi_steps, c.psi_lr, c.psi_batch, self.generator, w)

    def patch_loss(
        self, patches: list[torch.Tensor], weights: list[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        weights = weights if weights is not None else [None] * len(self.scales)
        step = self.cfg.loss_psi_step
        losses = [
            ot.loss(self.weigh(x), w, self.cfg.psi_lr if step else 0.0)
            for ot, x, w in zip(self.scales, patches, weights)
        ]
        stacked = torch.stack(losses)
        self.last_values = stacked.detach().tolist()  # one device sync for all scales
        return stacked.sum()
