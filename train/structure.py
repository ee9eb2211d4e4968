"""A structure statistic: how far an image's Portilla-Simoncelli statistics sit from those of
real pieces of the exemplar, as a multiple of what a typical real piece scores (docs/EVALUATE.md
section 4b).

The patch-OT distance (tilegen/metrics.py) compares 4x4 patches over four pyramid levels, so
nothing larger than about 32 pixels enters it, and a patch projection that copies exemplar
patches makes it right whatever the layout. Portilla & Simoncelli's texture statistics
(plenoptic's `PortillaSimoncelli`: a complex steerable pyramid of S scales and K orientations on
the luminance, with the marginal moments, the auto-correlations of the coefficients and their
magnitudes, and the correlations across orientations and scales) do see long connected
structure: a crack is a magnitude correlated along its direction and across scales.

Normalisation. The statistics have every unit and range (moments, correlations, variances), so
each is z-scored against N real pieces r_1..r_N of the exemplar the size of the image (cut at
places drawn from the seed, `tilegen.baselines.real_pieces`):

    z_k(x) = (s_k(x) - mean_n s_k(r_n)) / (std_n s_k(r_n) + eps_k)      (std with N - 1)
    D(x)   = || z(x) ||_2                                                the raw distance

eps_k = 1e-3 x the median over k of std_n s_k: a statistic that hardly varies between real
pieces (nearly constant by construction) must not turn float noise into a large z. A real
piece's raw distance is measured leave-one-out (the mean and spread from the other N - 1
pieces), and the figure reported is

    structure(x) = D(x) / median_n D_(-n)(r_n)

so a typical real piece scores 1.0; the exemplar cut into 32-pixel blocks and shuffled scores
about 1.5-2, into 16-pixel blocks more, a sigma = 2 blur far more (bench/structure_ranking.py).

Needs torch and plenoptic (the `train` extra). tilegen imports nothing of train/: the command
line hands `structure_scorer` to `tilegen evaluate` (or a one-line note when torch is missing).
"""

from __future__ import annotations

import numpy as np
import torch

from tilegen.errors import UserError

SCALES, ORIENTATIONS = 5, 4
PIECES = 24
_LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709, as the spectrum figure of tilegen/metrics.py
_EPS = 1e-3  # eps_k as a fraction of the median spread of the statistics over real pieces


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) float64 luma of an (H, W, C) image: Rec. 709 of the first three channels (RGB(A),
    or a material's stacked maps, whose albedo comes first), the first channel of grey(+alpha)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.shape[2] >= 3:
        return image[:, :, :3] @ np.array(_LUMA)
    return image[:, :, 0]


def scales_for(height: int, width: int, scales: int = SCALES) -> int:
    """The most pyramid scales, up to `scales`, that an image of this size allows: the
    steerable pyramid halves the image at every scale and needs even sides each time, and the
    coarsest band should keep at least 8 pixels a side for its auto-correlations."""
    n = 0
    while n < scales:
        h, w = height >> n, width >> n
        if h % 2 or w % 2 or min(h, w) // 2 < 8:
            break
        n += 1
    return n


def check_room(exemplar_hw: tuple[int, int], height: int, width: int) -> None:
    """A one-line UserError unless the exemplar holds distinct real height x width pieces:
    pieces of nearly the whole exemplar overlap nearly whole, with no spread to read by."""
    eh, ew = exemplar_hw
    if eh * ew < 2 * height * width:
        raise UserError(
            f"the exemplar ({eh}x{ew}) is too small to cut distinct real {height}x{width} "
            "pieces: it needs at least twice the image's area"
        )
    try:
        import plenoptic  # noqa: F401
    except ImportError:
        raise UserError("the structure statistic needs plenoptic: pip install plenoptic")


class PSStatistics:
    """Portilla-Simoncelli statistics of luminance images of one size, as rows (N, S)."""

    def __init__(self, height: int, width: int, scales: int = SCALES, orientations: int = 4):
        try:
            from plenoptic.models import PortillaSimoncelli
        except ImportError:
            raise UserError("the structure statistic needs plenoptic: pip install plenoptic")
        self.scales = scales_for(height, width, scales)
        if self.scales < 2:
            raise UserError(
                f"an image of {height}x{width} is too small for the structure statistic: it "
                "needs sides that halve evenly at least twice and stay 32 pixels or more"
            )
        self.shape = (height, width)
        self.model = PortillaSimoncelli(
            (height, width), n_scales=self.scales, n_orientations=orientations
        )

    def __call__(self, lumas: torch.Tensor) -> torch.Tensor:
        """(N, H, W) luminance -> (N, S) statistics (differentiable)."""
        return self.model(lumas[:, None].to(torch.float64))[:, 0]

    def of_images(self, images: list[np.ndarray], batch: int = 8) -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                lum = np.stack([luminance(x) for x in images[i : i + batch]])
                rows.append(self(torch.from_numpy(lum)))
        return torch.cat(rows)


class StructureScorer:
    """The structure figure of images of one size against `pieces` real pieces of an exemplar
    (the module docstring). Deterministic: the pieces are cut at places drawn from `seed`."""

    def __init__(
        self,
        exemplar: np.ndarray,
        height: int,
        width: int,
        pieces: int = PIECES,
        seed: int = 0,
        scales: int = SCALES,
    ):
        from tilegen.baselines import real_pieces

        if pieces < 3:
            raise UserError(f"the structure statistic needs at least 3 real pieces, not {pieces}")
        check_room(np.asarray(exemplar).shape[:2], height, width)
        self.stats = PSStatistics(height, width, scales)
        # Their own stream ([seed, 1]), so `evaluate --pieces`' patch pieces (from `seed`) are
        # other pieces, scored as an image is: what another real piece scores.
        real = real_pieces(exemplar, height, width, pieces, [seed, 1])
        ref = self.stats.of_images(real)  # (N, S)
        self.mean, self.spread = _moments(ref)
        # Leave-one-out: each piece against the other N - 1, the scale of the figure.
        loo = []
        for n in range(pieces):
            others = torch.cat([ref[:n], ref[n + 1 :]])
            mean, spread = _moments(others)
            loo.append(float(torch.linalg.vector_norm((ref[n] - mean) / spread)))
        self.pieces_raw = loo
        self.unit = float(np.median(loo))

    @property
    def pieces(self) -> list[float]:
        """Every real piece's figure (leave-one-out): their median is 1."""
        return [d / self.unit for d in self.pieces_raw]

    def raw(self, stats: torch.Tensor) -> torch.Tensor:
        """||z||_2 of rows of statistics (N, S) -> (N,), differentiable."""
        return torch.linalg.vector_norm((stats - self.mean) / self.spread, dim=-1)

    def __call__(self, image: np.ndarray) -> float:
        """The image's figure: 1.0 is a typical real piece of the exemplar."""
        h, w = np.asarray(image).shape[:2]
        if (h, w) != self.stats.shape:
            raise UserError(
                f"the structure scorer was set up for {self.stats.shape[0]}x"
                f"{self.stats.shape[1]} images, not {h}x{w}"
            )
        return float(self.raw(self.stats.of_images([image]))[0]) / self.unit

    def many(self, images: list[np.ndarray]) -> list[float]:
        return [float(d) / self.unit for d in self.raw(self.stats.of_images(images))]


class StructureLoss:
    """`weight` x mean_k z_k^2, a training term: z the statistics of each training crop's
    luminance, z-scored against real crop-sized pieces of the exemplar (their own stream, seed 7,
    so the pieces `evaluate` scores against stay held out). Differentiable; float64 inside."""

    SEED = 7

    def __init__(self, exemplar: np.ndarray, size: int, weight: float):
        self.scorer = StructureScorer(exemplar, size, size, seed=self.SEED)
        self.weight = weight
        self.luma = torch.tensor(_LUMA, dtype=torch.float64)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, C, H, W) in [0, 1] -> the term (a float32 scalar on the image's device)."""
        x = image.cpu().double()
        lum = x[:, :3].permute(0, 2, 3, 1) @ self.luma if x.shape[1] >= 3 else x[:, 0]
        z = (self.scorer.stats(lum) - self.scorer.mean) / self.scorer.spread
        return (self.weight * (z**2).mean()).float().to(image.device)


def _moments(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread (std with N - 1, plus eps_k) of every statistic over the rows."""
    std = rows.std(dim=0, unbiased=True)
    return rows.mean(dim=0), std + _EPS * std.median().clamp_min(1e-12)


def structure_distance(
    exemplar: np.ndarray, image: np.ndarray, pieces: int = PIECES, seed: int = 0
) -> float:
    """The structure figure of one image (see the module docstring)."""
    h, w = np.asarray(image).shape[:2]
    return StructureScorer(exemplar, h, w, pieces, seed)(image)


def structure_scorer(exemplar: np.ndarray, height: int, width: int, seed: int = 0):
    """A StructureScorer for height x width images, or a one-line note saying why there is none
    (plenoptic missing, an image too small, or too large for the exemplar): the scorer factory
    `tilegen evaluate` gives tilegen.evaluator.Evaluator."""
    try:
        return StructureScorer(exemplar, height, width, seed=seed)
    except UserError as e:
        return f"no structure figure for {height}x{width} images: {e}"


def shuffle_blocks(image: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """The image cut into block x block squares, put back in a random order (sides must be
    multiples of block): every local statistic below the block size is kept, the layout not."""
    h, w = image.shape[:2]
    rows, cols = h // block, w // block
    blocks = image[: rows * block, : cols * block].reshape(rows, block, cols, block, -1)
    blocks = blocks.transpose(0, 2, 1, 3, 4).reshape(rows * cols, block, block, -1)
    blocks = blocks[rng.permutation(rows * cols)].reshape(rows, cols, block, block, -1)
    return blocks.transpose(0, 2, 1, 3, 4).reshape(rows * block, cols * block, -1)
