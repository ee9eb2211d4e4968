"""The texture generator: a small fully convolutional TextureNet-like network (DESIGN.md section 3).

Levels k = 0 (coarsest) .. K-1 (finest). Each level turns its own noise z_k into features with a
block (conv3x3 -> BN -> leaky, twice, then conv1x1 -> BN -> leaky), all *valid* convolutions, so
each block trims 2 pixels per side. Coarser features are upsampled x2 (nearest), concatenated with
the level's noise features and mixed by a join block. A final 1x1 conv gives the channels.

    h_0 = block(z_0);   h_k = join(concat(up2(h_{k-1}), block(z_k)));   image = conv1x1(h_{K-1})

Valid convolutions + nearest upsampling make the output a pure function of a finite noise
neighbourhood, so a tile computed alone equals the same region of one giant evaluation
(tilegen/windows.py has the arithmetic). After training, BatchNorm is replaced by per-channel
affine maps with population statistics and folded into the convolutions: the function must not
depend on the window it is evaluated on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tilegen.noise import tile_noise
from tilegen.windows import Arch, axis_window


@dataclass
class GeneratorConfig:
    levels: int = 6  # K noise inputs; K-1 upsamplings (stride 2^(K-1) = 32)
    width: int = 16  # channels of the joined features
    noise_channels: int = 3
    out_channels: int = 3

    @property
    def arch(self) -> Arch:
        return Arch(self.levels, t0=2, tb=2, tj=2)

    def to_dict(self) -> dict:
        return asdict(self)


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """conv3x3-BN-leaky, conv3x3-BN-leaky, conv1x1-BN-leaky; valid: trims 2 pixels per side."""
    layers: list[nn.Module] = []
    for i, k in enumerate((3, 3, 1)):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, k, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2),
        ]
    return nn.Sequential(*layers)


class TextureGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        noise_width = max(cfg.width // 2, 1)
        self.noise_blocks = nn.ModuleList(
            [
                conv_block(cfg.noise_channels, cfg.width if k == 0 else noise_width)
                for k in range(cfg.levels)
            ]
        )
        self.joins = nn.ModuleList(
            [conv_block(cfg.width + noise_width, cfg.width) for _ in range(1, cfg.levels)]
        )
        self.to_image = nn.Conv2d(cfg.width, cfg.out_channels, 1)

    @property
    def arch(self) -> Arch:
        return self.cfg.arch

    def forward(self, *noises: torch.Tensor) -> torch.Tensor:
        """noises z_0 .. z_{K-1}, each (B, C_noise, H_k, W_k) on the upsampling grid."""
        h = self.noise_blocks[0](noises[0])
        for k in range(1, self.cfg.levels):
            up = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = self.joins[k - 1](torch.cat([up, self.noise_blocks[k](noises[k])], dim=1))
        return self.to_image(h)


# --- sampling from the coordinate-hashed noise field ------------------------------------------


@torch.no_grad()
def sample_tile(
    model: TextureGenerator,
    seed: int,
    y0: int,
    x0: int,
    height: int,
    width: int,
    period: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Output pixels [y0, y0+height) x [x0, x0+width) of the infinite texture for `seed`:
    (1, C, height, width), exact sizes. The model must be in eval mode (or folded)."""
    device = next(model.parameters()).device
    cfg = model.cfg
    noises, (cy, cx) = tile_noise(cfg.arch, cfg.noise_channels, seed, y0, x0, height, width, period)
    out = model(*[torch.from_numpy(z).to(device) for z in noises])
    return out[:, :, cy : cy + height, cx : cx + width]


def training_noise(
    cfg: GeneratorConfig, batch: int, size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Uniform [0, 1) noise (the hashed field's distribution) for a size x size output window."""
    w = axis_window(cfg.arch, 0, size)
    return [torch.rand(batch, cfg.noise_channels, n, n, generator=generator) for _, n in w.noise]


# --- BatchNorm -> folded affine ---------------------------------------------------------------


@torch.no_grad()
def fold_batchnorm(model: TextureGenerator) -> TextureGenerator:
    """Fold each eval-mode BatchNorm into the conv before it (in place): conv(x) * a + b with
    a = gamma / sqrt(var + eps), b = beta - mean * a. The BN becomes an identity."""
    for seq in list(model.noise_blocks) + list(model.joins):
        for i in range(0, len(seq), 3):
            conv, bn = seq[i], seq[i + 1]
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, bias=True)
            folded.weight.copy_(conv.weight * a[:, None, None, None])
            folded.bias.copy_(bn.bias - bn.running_mean * a)
            seq[i], seq[i + 1] = folded.to(conv.weight.device), nn.Identity()
    return model.eval()


# --- BatchNorm population statistics ----------------------------------------------------------


@torch.no_grad()
def recalibrate_batchnorm(model: TextureGenerator, noises) -> TextureGenerator:
    """Re-estimate every BatchNorm's population mean and variance (in place, then eval mode).

    `noises` yields noise lists for `model(*z)` drawn from the training distribution. The
    running statistics are reset and accumulated as plain cumulative averages (momentum=None)
    over all of them, so the result does not depend on the order or on the last batches seen.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for z in noises:
        model(*z)
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    return model.eval()
