"""The texture generator: a small fully convolutional TextureNet-like network (DESIGN.md section 3).

Levels k = 0 (coarsest) .. K-1 (finest). Each level turns its own noise z_k into features with a
block (conv3x3 -> BN -> leaky, twice, then conv1x1 -> BN -> leaky), all *valid* convolutions, so
each block trims 2 pixels per side. Coarser features are upsampled x2 (nearest), concatenated with
the level's noise features and mixed by a join block. A final 1x1 conv gives the channels.

    h_0 = block(z_0);   h_k = join(concat(up2(h_{k-1}), block(z_k))) + r * bilinear2(h_{k-1})
    image = conv1x1(h_{K-1})

(the residual term, times GeneratorConfig.residual = 0.5 by default: `bilinear2` is bilinear x2
upsampling, cropped to the join's output).

Valid convolutions + nearest upsampling make the output a pure function of a finite noise
neighbourhood, so a tile computed alone equals the same region of one giant evaluation
(tilegen/windows.py has the arithmetic). That only holds if nothing depends on the window or the
batch once trained. The default normalisation is weight standardisation (`norm="ws"`): each
filter is centred and scaled by statistics of its own weights, the same function in training and
inference, started by `unit_variance_init`. `norm="batch"` (the reference's BatchNorm, trained
with fixed population statistics at the end: TrainConfig.freeze) and `norm="none"` are kept to
compare against (docs/GENERATOR.md). `fold` turns every block into plain convolutions with bias,
the one structure saved models and ONNX files have. An optional PatchProjection ends the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from tilegen.noise import tile_noise
from tilegen.windows import Arch, StageCrop, axis_window, projection_crops


@dataclass
class GeneratorConfig:
    levels: int = 6  # K noise inputs; K-1 upsamplings (stride 2^(K-1) = 32)
    width: int = 16  # channels of the joined features
    noise_channels: int = 3
    out_channels: int = 3
    # ws: weight standardisation (the same function in training and inference); batch:
    # BatchNorm, its statistics frozen for the end of training (TrainConfig.freeze), then
    # folded; none. docs/GENERATOR.md compares them.
    norm: str = "ws"
    # J > 0: the model ends with a patch projection onto J exemplar patches (PatchProjection),
    # attached after training; 0: none.
    projection: int = 0
    # Channels whose projected patches are re-levelled (PatchProjection.relevelled): a material's
    # height, where stitched patches of different levels make slopes its normals do not have
    # (docs/GENERATOR.md, section 3).
    relevel: list[int] | None = None
    # Each join adds `residual` x the coarser features upsampled bilinearly, a short path from
    # coarse noise to the image so no level goes unused (0.5: bench/noise_levels.py; old files 0).
    residual: float = 0.5
    # Levels k of the coarse projections that come before the final one, coarse first ([2, 1]:
    # the image pooled by 4, then by 2; CoarseProjection). Fine detail is all the final one
    # can mend; these move middle-scale structure towards the exemplar's (docs/GENERATOR.md).
    coarse: list[int] | None = None

    @property
    def arch(self) -> Arch:
        return Arch(self.levels, t0=2, tb=2, tj=2, tr=self.projection_crops()[1])

    def projection_crops(self) -> tuple[list[StageCrop], int]:
        """Each projection stage's crops (coarse stages, then the final one) and the total trim
        per side (tilegen/windows.py); ([], 0) without a projection."""
        if not self.projection:
            return [], 0
        finest = PatchProjection.trim(self.projection, self.relevel)
        return projection_crops(2 ** (self.levels - 1), 2, self.coarse or [], finest)

    def to_dict(self) -> dict:
        return asdict(self)


NORMS = ("ws", "none", "batch")
LEAK = 0.2
GAIN = (2.0 / (1.0 + LEAK**2)) ** 0.5  # keeps activations' scale through leaky ReLUs (He init)


class StandardizedConv2d(nn.Conv2d):
    """A valid convolution whose filters are standardised before use:

        w_hat = g * (w - mean(w)) / (std(w) * sqrt(fan_in)),   out = conv(x, w_hat) + b

    (per output filter; g starts at the He gain). The output's scale no longer depends on the
    weights' scale and a constant input offset is removed, which is what BatchNorm bought the
    reference, but computed from the weights alone: the same function in training and inference.
    """

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__(cin, cout, k, bias=True)
        nn.init.zeros_(self.bias)
        self.gain = nn.Parameter(torch.full((cout,), GAIN))

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        scale = self.gain[:, None, None, None] * torch.rsqrt(var * w[0].numel() + 1e-8)
        return (w - mean) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias)


def conv_layer(cin: int, cout: int, k: int, norm: str) -> list[nn.Module]:
    """[conv, normalisation, leaky ReLU] for one of NORMS; always 3 modules, so `fold` and the
    saved state keep one layout whatever the normalisation."""
    if norm == "ws":
        return [StandardizedConv2d(cin, cout, k), nn.Identity(), nn.LeakyReLU(LEAK)]
    if norm == "none":
        conv = nn.Conv2d(cin, cout, k, bias=True)
        nn.init.kaiming_normal_(conv.weight, a=LEAK, nonlinearity="leaky_relu")
        nn.init.zeros_(conv.bias)
        return [conv, nn.Identity(), nn.LeakyReLU(LEAK)]
    if norm == "batch":
        return [nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(LEAK)]
    raise ValueError(f"unknown normalisation {norm!r}: use one of {', '.join(NORMS)}")


def conv_block(cin: int, cout: int, norm: str = "ws") -> nn.Sequential:
    """conv3x3, conv3x3, conv1x1, each normalised and leaky; valid: trims 2 pixels per side."""
    layers: list[nn.Module] = []
    for i, k in enumerate((3, 3, 1)):
        layers += conv_layer(cin if i == 0 else cout, cout, k, norm)
    return nn.Sequential(*layers)


class PatchProjection(nn.Module):
    """The optional last stage: one step of patch-OT projection with the trained potentials.

    Every 4x4 patch x_i of the image on a stride-2 grid is replaced by the exemplar patch the
    trained transport map assigns it, and the overlapping patches are averaged (4 per pixel):

        sigma(i) = argmin_j ||x_i - y_j||^2 - psi_j        (y_j, psi_j: the finest loss scale's)

    It puts the exemplar's own fine detail where the generator paints a smoothed version of it,
    at the cost of one J-column matrix product per pixel (docs/GENERATOR.md, section 3).
    Pixels within TRIM of the edge lie in fewer patches and are cut (Arch.tr), and the grid
    starts on even global coordinates, so tiles stay exact (tilegen/windows.py). A material's
    height channel is re-levelled as well (`relevelled`), which trims one patch stride more.

    The argmin is made exact in every runtime: patches are rounded to 8-bit levels (0..255) and
    psi to whole units of 1/255^2, so every score is an integer below 2^24, which float32 adds and
    multiplies without rounding in any order: torch, onnxruntime and a browser pick the same j.
    """

    PATCH, STRIDE, TRIM = 4, 2, 2
    LEVELS = 255.0
    BLOCK = 50  # columns per block of the two-pass argmin (first_argmin)

    def __init__(
        self, n_targets: int, channels: int, relevel: list[int] | None = None, crop: int = 0
    ):
        super().__init__()
        self.crop = crop  # pixels cut per side first, after coarse stages (StageCrop.crop_in)
        d = channels * self.PATCH * self.PATCH
        # y_j in 8-bit levels, rows in F.unfold order (channel, row, column).
        self.register_buffer("targets", torch.zeros(n_targets, d))
        self.register_buffer("bias", torch.zeros(n_targets))  # ||y_j||^2 - psi_j, whole levels^2
        eye = torch.eye(d).view(d, channels, self.PATCH, self.PATCH)
        self.register_buffer("one_hot", eye, persistent=False)  # patches <-> pixels as convs
        # Pixels -> rows (x_i, 1): one more output channel, all zero weights and bias 1, so the
        # bias rides in the score product (onnxruntime fuses a separate Add into a slower Gemm).
        self.register_buffer("unfold", torch.cat([eye, eye[:1] * 0]), persistent=False)
        self.register_buffer("unfold_bias", F.one_hot(torch.tensor(d), d + 1).float(), False)
        mask = None  # (C, 1, 1): 1 in the re-levelled channels
        if relevel:
            mask = torch.zeros(channels, 1, 1)
            mask[list(relevel)] = 1.0
        self.register_buffer("relevel", mask, persistent=False)

    @classmethod
    def trim(cls, n_targets: int, relevel: list[int] | None) -> int:
        """Pixels a projection cuts per side (Arch.tr): TRIM, and one patch stride more when
        it re-levels (the level's blur needs each patch's neighbours); 0 without one."""
        return (cls.TRIM + (cls.STRIDE if relevel else 0)) if n_targets else 0

    @torch.no_grad()
    def set_targets(self, targets: torch.Tensor, psi: torch.Tensor) -> None:
        """y_j (J, C*16) and psi_j (J,) in [0, 1] units, as the patch-OT loss holds them."""
        y = torch.round(targets.clamp(0, 1) * self.LEVELS)
        self.targets.copy_(y)
        self.bias.copy_((y * y).sum(1) - torch.round(psi * self.LEVELS**2))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        c = self.crop
        x = image[:, :, c:-c, c:-c] if c else image
        return self.from_levels(torch.round(x.clamp(0.0, 1.0) * self.LEVELS))

    def from_levels(self, x: torch.Tensor) -> torch.Tensor:
        """The projection of an image of whole 8-bit levels, in [0, 1] units, TRIM cut."""
        cols = F.conv2d(x, self.unfold, self.unfold_bias, stride=self.STRIDE)  # (B, D+1, h, w)
        b, d1, h, w = cols.shape
        rows = cols.permute(0, 2, 3, 1).reshape(b * h * w, d1)  # each patch, then a 1
        chosen = self.targets[self.assign(rows)]
        y = chosen.reshape(b, h, w, d1 - 1).permute(0, 3, 1, 2)  # (B, D, h, w)
        if self.relevel is not None:
            y = self.relevelled(y, cols[:, :-1])  # one patch fewer per side
        summed = F.conv_transpose2d(y, self.one_hot, stride=self.STRIDE)  # overlaps add up
        t = self.TRIM
        return summed[:, :, t:-t, t:-t] * (1.0 / (4.0 * self.LEVELS))

    def relevelled(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The chosen patches y (B, D, h, w) with the `relevel` channels of each moved by the
        high-pass part of its level difference from the network's patch x:

            d_i = mean(x_i) - mean(y_sigma(i))         y_sigma(i) += d_i - blur(d)_i

        blur: [1 2 1]^2 / 16 over the neighbouring patches. The low frequencies of the level stay
        the exemplar's (taking mean(x_i) whole made a poor height map where the network's is
        poor), the patch-to-patch changes become the network's, whose height is smooth and
        follows its normals: the stitching steps are gone. Interior patches only (h-2, w-2).
        Exact in float32 in any order (levels, their sixteenths, then 256ths), so every runtime
        agrees to the bit; the blur is shifted slices, not a convolution a runtime may reorder."""
        b, d, h, w = y.shape
        c = self.relevel.shape[0]
        diff = (x - y).reshape(b, c, d // c, h, w).mean(dim=2)  # (B, C, h, w)
        blur = diff[..., :-2] + 2 * diff[..., 1:-1] + diff[..., 2:]
        blur = (blur[:, :, :-2] + 2 * blur[:, :, 1:-1] + blur[:, :, 2:]) / 16
        shift = (diff[:, :, 1:-1, 1:-1] - blur) * self.relevel
        inner = y[:, :, 1:-1, 1:-1].reshape(b, c, d // c, h - 2, w - 2)
        return (inner + shift[:, :, None]).reshape(b, d, h - 2, w - 2)

    def assign(self, rows: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
        """sigma(i) = argmin_j -2 <x_i, y_j> + ||y_j||^2 - psi_j (||x_i||^2 does not change it),
        as one product of the rows (x_i, 1) with the columns (-2 y_j ; ||y_j||^2 - psi_j).
        In torch, chunks of rows bound the memory (chunk x J scores); the export traces one
        product, which export/chunked.py then turns into a Loop over chunks of rows."""
        scores_of = torch.cat([self.targets.t() * -2.0, self.bias[None]])  # (D+1, J)
        pad = -scores_of.shape[1] % self.BLOCK  # columns that never win: score 2^23
        if pad:
            never = torch.zeros(scores_of.shape[0], pad, dtype=scores_of.dtype)
            never[-1] = 2.0**23
            scores_of = torch.cat([scores_of, never.to(scores_of.device)], 1)
        if torch.onnx.is_in_onnx_export() or rows.shape[0] <= chunk:
            return first_argmin(torch.matmul(rows, scores_of), self.BLOCK)
        parts = [
            first_argmin(torch.matmul(rows[i : i + chunk], scores_of), self.BLOCK)
            for i in range(0, rows.shape[0], chunk)
        ]
        return torch.cat(parts)


def first_argmin(scores: torch.Tensor, block: int) -> torch.Tensor:
    """scores.argmin(1) for (N, J) scores, J a multiple of `block`, in two passes that run 2x
    faster in onnxruntime than its ArgMin over J (docs/GENERATOR.md, section 3): the
    minimum of each block of columns, the first block that holds the row's minimum, then the
    first minimum inside that block. Ties resolve as argmin's do (the lowest index)."""
    n, j = scores.shape
    blocks = scores.reshape(n, j // block, block)
    b = blocks.amin(dim=2).argmin(dim=1, keepdim=True)  # (N, 1)
    inside = torch.gather(blocks, 1, b[:, :, None].expand(n, 1, block)).argmin(dim=2)  # (N, 1)
    return (b * block + inside)[:, 0]


class CoarseProjection(nn.Module):
    """A projection at a coarser level, before the final one: the image pooled by f = 2^k is
    projected as PatchProjection projects the full-resolution image, and the change is added
    back, upsampled:

        d = pool_f(x)                 (the mean of each f x f block, in 8-bit levels)
        x = x + up_f(P(d) - d)        (up_f: bilinear; P: 4x4 patches of the pooled exemplar)

    The final projection puts the exemplar's fine detail on the network's image but cannot move
    anything larger than its 4x4 patches; at level 2 a patch spans 16x16 pixels. The argmin is
    exact as the final one's is (pooled levels are rounded to whole levels before scoring). A
    function of global coordinates: blocks and the pooled patch grid are aligned to 2f pixels
    (crop_in), and the output drops the pixels whose change reads past the window (crop_out);
    tilegen/windows.py, `projection_crops`.
    """

    def __init__(self, n_targets: int, channels: int, crop: StageCrop):
        super().__init__()
        self.factor, self.crop_in, self.crop_out = crop.factor, crop.crop_in, crop.crop_out
        self.project = PatchProjection(n_targets, channels)

    def pooled_levels(self, image: torch.Tensor) -> torch.Tensor:
        """pool_f of the aligned input in 8-bit levels (means of f^2 whole levels: exact)."""
        c = self.crop_in
        x = image[:, :, c:-c, c:-c] if c else image
        return F.avg_pool2d(torch.round(x.clamp(0.0, 1.0) * PatchProjection.LEVELS), self.factor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f, t, o = self.factor, PatchProjection.TRIM, self.crop_out
        d = self.pooled_levels(image)
        change = self.project.from_levels(torch.round(d)) - d[:, :, t:-t, t:-t] / 255.0
        up = F.interpolate(change, scale_factor=float(f), mode="bilinear", align_corners=False)
        h = f // 2  # where the upsampled change reads past the pooled window's edge
        return image[:, :, o:-o, o:-o] + up[:, :, h:-h, h:-h]


class TextureGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        noise_width = max(cfg.width // 2, 1)
        self.noise_blocks = nn.ModuleList(
            [
                conv_block(cfg.noise_channels, cfg.width if k == 0 else noise_width, cfg.norm)
                for k in range(cfg.levels)
            ]
        )
        self.joins = nn.ModuleList(
            [conv_block(cfg.width + noise_width, cfg.width, cfg.norm) for _ in range(1, cfg.levels)]
        )
        self.to_image = nn.Conv2d(cfg.width, cfg.out_channels, 1)
        crops, _ = cfg.projection_crops()
        j = cfg.projection
        self.coarse = nn.ModuleList([CoarseProjection(j, cfg.out_channels, c) for c in crops[:-1]])
        self.project = (
            PatchProjection(cfg.projection, cfg.out_channels, cfg.relevel, crops[-1].crop_in)
            if cfg.projection
            else None
        )

    @property
    def arch(self) -> Arch:
        return self.cfg.arch

    @staticmethod
    def residual_term(h: torch.Tensor, weight: float) -> torch.Tensor:
        """weight x the coarser features upsampled x2 bilinearly, cropped to the join's output (2
        pixels per side). Bilinear, since a nearest-upsampled residual paints 8-32 pixel blocks.
        Away from the edges it is nearest x2 followed by [1 2 1]/4 along each axis, so each output
        pixel depends on a 2x2 neighbourhood of h and tiles stay exact (the crop removes every
        edge pixel, where Resize repeats the border). One Resize, weighted at the coarse size:
        onnxruntime runs the network 1.2x faster than with shifted slices of the nearest-upsampled
        map (bench/onnx_speed.py)."""
        up = F.interpolate(h * weight, scale_factor=2.0, mode="bilinear", align_corners=False)
        return up[:, :, 2:-2, 2:-2]

    def forward(self, *noises: torch.Tensor) -> torch.Tensor:
        """noises z_0 .. z_{K-1}, each (B, C_noise, H_k, W_k) on the upsampling grid."""
        h = self.noise_blocks[0](noises[0])
        for k in range(1, self.cfg.levels):
            up = F.interpolate(h, scale_factor=2.0, mode="nearest")
            joined = self.joins[k - 1](torch.cat([up, self.noise_blocks[k](noises[k])], dim=1))
            h = joined + self.residual_term(h, self.cfg.residual) if self.cfg.residual else joined
        return self.projected(self.to_image(h))

    def projected(self, image: torch.Tensor) -> torch.Tensor:
        """The network's image through the projection stages (coarse ones, then the final one)."""
        for stage in self.coarse:
            image = stage(image)
        return image if self.project is None else self.project(image)


@torch.no_grad()
def with_projection(
    model: TextureGenerator,
    n_targets: int,
    coarse: list[int] | None = None,
) -> TextureGenerator:
    """A new generator with `model`'s network (folded or not, weights copied) ending with the
    projection stages: coarse levels `coarse`, then the final one, each onto `n_targets`
    patches (0: none). Their targets and
    potentials are left to the caller (`set_targets`; train_generator.fit_projection)."""
    levels = list(coarse or []) or None
    cfg = replace(model.cfg, projection=n_targets, coarse=levels)
    out = TextureGenerator(cfg)
    if is_folded(model):
        fold(out)
    stages = ("project.", "coarse.")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(stages)}
    missing, unexpected = out.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(stages) for k in missing), (missing, unexpected)
    return out.to(next(model.parameters()).device).eval()


def without_projection(model: TextureGenerator) -> TextureGenerator:
    """The network alone (a copy sharing nothing), without its projection stages."""
    return model if model.project is None else with_projection(model, 0)


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


@torch.no_grad()
def unit_variance_init(model: TextureGenerator, noises: list[torch.Tensor]) -> TextureGenerator:
    """Data-dependent initialisation (LSUV-like) for the weight-standardised or plain network:
    in forward order, scale each convolution so its output has unit standard deviation per
    channel on `noises` (training noise). Without it the activations of ~20 unnormalised layers
    grow or shrink geometrically (a first loss 10^4 times BatchNorm's, measured). BatchNorm
    networks are returned unchanged."""
    if model.cfg.norm == "batch":
        return model
    for seq in list(model.noise_blocks) + list(model.joins):
        for i in range(0, len(seq), 3):
            conv, seen = seq[i], {}
            hook = conv.register_forward_hook(lambda m, x, out, seen=seen: seen.update(out=out))
            model(*noises)
            hook.remove()
            std = seen["out"].std(dim=(0, 2, 3)).clamp_min(1e-6)
            mean = seen["out"].mean(dim=(0, 2, 3))
            if isinstance(conv, StandardizedConv2d):
                conv.gain.div_(std)
            else:
                conv.weight.div_(std[:, None, None, None])
            conv.bias.sub_(mean / std)
    model.to_image.bias.fill_(0.5)  # start mid-grey: the output's range is [0, 1]
    if model.cfg.residual:
        # The residual sums grow with the levels: start the image at the plain network's
        # spread (std about 0.25 around mid-grey), not up to 3x it.
        out = model(*noises)
        mean, scale = out.mean(dim=(0, 2, 3)), 0.25 / out.std(dim=(0, 2, 3)).clamp_min(1e-6)
        model.to_image.weight.mul_(scale[:, None, None, None])
        model.to_image.bias.sub_((mean - 0.5) * scale)  # W h + b -> s (W h + b - mean) + 0.5
    return model


# --- folding: every normalisation -> plain convolutions with bias ---------------------------


@torch.no_grad()
def fold(model: TextureGenerator) -> TextureGenerator:
    """Turn every [conv, norm, leaky] into [conv with bias, Identity, leaky] (in place, eval mode):
    the structure saved models and ONNX files have, computing the same function.

    ws: the standardised weight is the conv's weight. batch (eval mode, population statistics):
    conv(x) * a + b with a = gamma / sqrt(var + eps), b = beta - mean * a. none: nothing to do.
    """
    for seq in list(model.noise_blocks) + list(model.joins):
        for i in range(0, len(seq), 3):
            conv, norm = seq[i], seq[i + 1]
            if isinstance(conv, StandardizedConv2d):
                weight, bias = conv.standardized_weight(), conv.bias
            elif isinstance(norm, nn.BatchNorm2d):
                a = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                weight = conv.weight * a[:, None, None, None]
                bias = norm.bias - norm.running_mean * a
            else:
                continue
            plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, bias=True)
            plain.weight.copy_(weight)
            plain.bias.copy_(bias)
            seq[i], seq[i + 1] = plain.to(conv.weight.device), nn.Identity()
    return model.eval()


def is_folded(model: nn.Module) -> bool:
    """True when every layer is a plain convolution (nothing left to fold)."""
    return not any(
        isinstance(m, (nn.modules.batchnorm._BatchNorm, StandardizedConv2d))
        for m in model.modules()
    )


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
