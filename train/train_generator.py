"""Alg. 2: learn a texture generator from one exemplar with the multiscale patch-OT loss.

One readable loop (nanoGPT style); every setting lives in TrainConfig. Each iteration:

    z      = uniform [0, 1) noise for a size x size output window (torch RNG, batch B)
    image  = generator(z), cropped to size
    psi    = a few averaged ascent steps on the dual potentials (no gradient, warm-started)
    weights += one Adam step along the gradient of the patch-OT cost for those potentials

The generator's default normalisation (weight standardisation, train/generator.py) depends on
the weights only, so the function trained is the function sampled: after the loop it is folded
into plain convolutions and nothing is re-estimated. With norm="batch" (the reference's
BatchNorm, kept to compare against) the last `freeze` fraction of the run trains with fixed
population statistics, estimated once when that phase starts, which are then folded. Either way
a tile computed alone equals the same region of a giant evaluation, and `check_modes` measures
that inference-mode samples are training-mode ones. After the loop a patch projection is fitted
(`fit_projection`, `projection_targets` exemplar patches; docs/GENERATOR.md).

Checkpoints (train/checkpoint.py) hold the weights, Adam's state, psi, the RNG state and the
iteration, so a killed run resumed from its last checkpoint ends with bit-identical weights.

Defaults, and why. The reference trains 5000 iterations at 256^2 (batch 1, Adam lr 0.01, 5
scales). On a GPU that schedule is the default too (DEFAULT_SCHEDULE); the bundled grass model
is trained so, with the reference's lr and BatchNorm. On a CPU it would take hours, so there the
default is 1500 iterations on 128^2 crops with a stride-2 loss at the finest level, and 15 psi
steps instead of the reference's 10 (TrainConfig.ot). The generator is fully convolutional, so
the crop only sets how many patches each step sees; at 5 scales the coarsest level of a 128^2
crop still holds 25 patches. TrainConfig's own defaults are the CPU ones. Unlike the reference,
Adam's lr is 0.002, not 0.01, and the model kept is a moving average of the weights (`ema`): the
reference's lr makes weight-standardised networks explode in their first iterations and then
swing from checkpoint to checkpoint. The learning rate also decays (cosine, to 10%) over the
second half. docs/GENERATOR.md, section 4, weighs each default against the alternatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tilegen import options
from tilegen.errors import UserError
from tilegen.grid import tiles
from tilegen.imageio import as_saved, pixels_sha256
from tilegen.noise import tile_noise
from tilegen.windows import Arch, axis_window, period_fits
from train.checkpoint import save_checkpoint
from train.device import pick_device
from train.generator import (
    NORMS,
    GeneratorConfig,
    PatchProjection,
    TextureGenerator,
    fold,
    recalibrate_batchnorm,
    sample_tile,
    training_noise,
    unit_variance_init,
    with_projection,
    without_projection,
)
from train.patch_ot import (
    OTConfig,
    PatchOTLoss,
    SemiDiscreteOT,
    extract_patches,
    sample_target_patches,
)
from train.synth import to_image, to_tensor

CHANNEL_NAMES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass
class TrainConfig:
    iters: int = 1500  # outer iterations: psi steps + one Adam step on the weights
    size: int = 128  # side of the training crop (output window) in pixels
    batch: int = 1  # noise samples per iteration; their patches are pooled in one OT problem
    # Adam on the weights. The reference's 0.01 blows weight-standardised networks up in their
    # first iterations and leaves them painting wrong colours (docs/GENERATOR.md, section 4).
    lr: float = 0.002
    decay_start: float = 0.5  # fraction of the run after which lr decays (1.0: constant lr)
    lr_final: float = 0.1  # lr at the last iteration, as a fraction of lr (cosine decay)
    seed: int = 0  # weights, exemplar patches, training noise and psi subsampling
    device: str = "auto"
    bn_samples: int = 200  # norm=batch only: noise samples for the population statistics
    # > 0: keep an exponential moving average of the weights (a window of about 1 / (1 - ema)
    # iterations, shorter early on), since Adam's last iterate swings from one checkpoint to the
    # next. 0: the last iterate.
    ema: float = 0.99
    # norm=batch: for this last fraction of the iterations BatchNorm uses fixed statistics
    # (re-estimated once when the phase starts), so the weights the run ends with were trained
    # as the function inference computes, and nothing is re-estimated after the loop.
    freeze: float = 0.2
    # What the model ends with (--projection, --coarse), asked for here and fitted after the
    # loop; GeneratorConfig.projection and .coarse record what a model has. J > 0: a patch
    # projection onto J exemplar patches, its potentials fitted to the model's samples
    # (fit_projection); 0: the network alone.
    projection_targets: int = 2000
    # Projections at coarser levels before the final one (CoarseStages): by default "auto".
    coarse_stages: CoarseStages = field(default_factory=lambda: CoarseStages((), auto=True))
    # > 0: add this weight x the structure statistic of each training crop to the loss
    # (train/structure.py StructureLoss): large layout the 4x4 patches cannot see, such as
    # long grout lines (bench/RESULTS.md, "Structure"). Slower iterations.
    structure: float = 0.0
    gen: GeneratorConfig = field(default_factory=GeneratorConfig)
    # 15 averaged psi steps plus the loss argmin's exact step, and the finest loss on a stride-2
    # grid: 15 steps keep psi closer to the moving generator (docs/GENERATOR.md, section 4).
    ot: OTConfig = field(
        default_factory=lambda: OTConfig(scales=5, psi_steps=15, loss_psi_step=True, loss_stride=2)
    )

    # The record (to_dict: a checkpoint's config, a model's training meta, its ONNX metadata
    # and what `tilegen inspect` prints) keeps the names these fields had when the first models
    # were written, and the --coarse text: field -> key. Every record, old or new, loads.
    RECORDED_AS = {"projection_targets": "projection", "coarse_stages": "coarse"}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coarse_stages"] = self.coarse_stages.text
        return {self.RECORDED_AS.get(k, k): v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        gen = dict(d.pop("gen", {}))
        # Older checkpoints lack later fields (they resume as they were trained) and may hold
        # fields the code ignores.
        gen.setdefault("norm", "batch")
        gen.setdefault("residual", 0.0)
        gen.pop("coarse_targets", None)
        ot = dict(d.pop("ot", {}))
        ot.setdefault("loss_psi_step", False)
        d.setdefault("ema", 0.0)
        d.setdefault("projection", 0)
        d.setdefault("coarse", "off")
        d.setdefault("freeze", 0.0)
        for gone in ("warmup", "coarse_targets"):
            d.pop(gone, None)
        for gone in ("level_targets", "psi_lr_rows_exponent"):
            ot.pop(gone, None)
        for name, key in cls.RECORDED_AS.items():
            d[name] = d.pop(key)
        gen = GeneratorConfig(**gen)
        d["coarse_stages"] = parse_coarse(d["coarse_stages"], gen.levels)
        return cls(**d, gen=gen, ot=OTConfig(**ot))

    def settings(self) -> dict:
        """What a resumed run must share with the original (all but iters, lr, device and the
        projection, which comes after the loop), as recorded."""
        d = self.to_dict()
        for k in ("iters", "lr", "device", "projection_targets", "coarse_stages"):
            d.pop(self.RECORDED_AS.get(k, k))
        for k in ("relevel", "coarse"):  # the projection's too
            d["gen"].pop(k)
        return d

    # --- merging and validation (kept last: the class's fields and defaults come above) -------

    # option name -> field path: what `merged` accepts and `check` names in its messages
    OPTIONS = {
        "--iters": "iters",
        "--size": "size",
        "--batch": "batch",
        "--lr": "lr",
        "--seed": "seed",
        "--ema": "ema",
        "--device": "device",
        "--width": "gen.width",
        "--levels": "gen.levels",
        "--scales": "ot.scales",
        "--targets": "ot.n_target",
        "--projection": "projection_targets",
        "--coarse": "coarse_stages",
        "--psi-steps": "ot.psi_steps",
        "--structure": "structure",
        "--norm": "gen.norm",
    }

    def merged(self, given: dict) -> TrainConfig:
        """This config (the defaults, or a checkpoint's) with the options the user gave; `given`
        maps option names ("--iters", "--targets", ...) to values, None meaning not given."""
        top: dict = {}
        nested: dict[str, dict] = {"gen": {}, "ot": {}}
        for option, value in given.items():
            if value is None:
                continue
            part, _, name = self.OPTIONS[option].rpartition(".")
            (nested[part] if part else top)[name] = value
        gen = replace(self.gen, **nested["gen"])
        if "coarse_stages" in top:  # the --coarse text, parsed once: here
            top["coarse_stages"] = parse_coarse(top["coarse_stages"], gen.levels)
        return replace(self, **top, gen=gen, ot=replace(self.ot, **nested["ot"]))

    def check(self, exemplar_hw: tuple[int, int]) -> None:
        """UserError naming the option for settings that cannot train on this exemplar."""
        check_config(exemplar_hw, self)


# The coarse projection levels "auto" tries: pooled by 4, then by 2 (docs/GENERATOR.md, section 3).
COARSE_LEVELS = [2, 1]


@dataclass(frozen=True)
class CoarseStages:
    """The coarse projection stages `--coarse` asks for (TrainConfig.coarse_stages), parsed once
    from its text by `parse_coarse` (TrainConfig.merged and .from_dict); recorded as that text
    (`text`). What a trained model has is GeneratorConfig.coarse. Materials too: on the bundled
    pebbles material the stages improved every map and kept the normals' agreement with the
    height.

    "off": (), auto=False.  "2,1": (2, 1), auto=False: kept whatever they measure.
    "auto:2,1": (2, 1), auto=True: fitted and kept where they bring held-out samples closer to
    the exemplar (choose_projection; they help most textures and spoil a few).
    "auto": (), auto=True: the same with COARSE_LEVELS, those the model's stride allows.
    """

    levels: tuple[int, ...]  # coarse first; with auto, () means COARSE_LEVELS
    auto: bool = False

    @property
    def text(self) -> str:
        """The --coarse text this was parsed from (lower case, no spaces)."""
        levels = ",".join(map(str, self.levels))
        if self.auto:
            return f"auto:{levels}" if levels else "auto"
        return levels or "off"

    def for_model(self, model_levels: int) -> tuple[list[int], bool]:
        """The levels to fit on a generator of `model_levels` levels ([] for none), and whether
        they are only to be tried; a UserError naming --coarse for levels it cannot have."""
        top = model_levels - 2  # a stage pooling by 2^k needs windows aligned to 2^(k+1)
        if self.auto and not self.levels:
            levels = [k for k in COARSE_LEVELS if k <= top]
            return levels, bool(levels)
        if any(not 1 <= k <= top for k in self.levels):
            raise coarse_error(self.text, model_levels)
        return list(self.levels), self.auto


def parse_coarse(text: str, model_levels: int) -> CoarseStages:
    """The CoarseStages of a --coarse text: auto, off, levels ("2,1") or "auto:" and levels; a
    UserError naming --coarse (and the levels a generator of `model_levels` allows) otherwise.
    Whether the model can have those levels is `CoarseStages.for_model`'s check (check_config)."""
    clean = str(text).strip().lower()
    if clean in ("auto", "off"):
        return CoarseStages((), auto=clean == "auto")
    try:
        levels = tuple(int(v) for v in clean.removeprefix("auto:").split(","))
    except ValueError:
        raise coarse_error(text, model_levels) from None
    return CoarseStages(levels, auto=clean.startswith("auto:"))


def coarse_error(text: str, model_levels: int) -> UserError:
    """The one message for a --coarse value the model cannot take."""
    top = model_levels - 2
    return UserError(
        f"--coarse {text}: use auto, off, or levels between 1 and {max(top, 1)} "
        "separated by commas, coarse first (2,1: kept; auto:2,1: kept if they help)"
        + ("" if top >= 1 else "; this model has too few --levels for any")
    )


# The schedule `tilegen train` uses when --size / --iters are not given: the reference's on a
# GPU; on a CPU that would take hours, so crops are 128^2 and the run 1500 iterations.
DEFAULT_SCHEDULE = {"cuda": (256, 5000), "cpu": (128, 1500)}  # device type -> (size, iters)


def default_schedule(device: str) -> tuple[int, int]:
    """(size, iters) for `--device` auto|cpu|cuda when the user gives neither."""
    return DEFAULT_SCHEDULE[pick_device(device).type]


@dataclass
class TrainResult:
    model: TextureGenerator  # folded, eval mode, on the training device (+ its projection)
    meta: dict  # for save_generator: exemplar hash, settings, version, final loss
    history: list[float]  # loss per iteration (from iteration 1, across resumes)
    train_mode_sample: torch.Tensor  # (1, C, S, S): the unfolded generator in training mode
    eval_mode_sample: torch.Tensor  # the same noise through the folded, inference-mode model


def check_config(exemplar_hw: tuple[int, int], cfg: TrainConfig) -> None:
    """Raise UserError with the fix for settings that cannot train."""
    counts = ("--iters", "--batch", "--levels", "--width", "--scales", "--targets", "--size",
              "--psi-steps")  # fmt: skip
    for option in counts:
        part, _, name = TrainConfig.OPTIONS[option].rpartition(".")
        options.positive(option, getattr(getattr(cfg, part) if part else cfg, name))
    options.learning_rate(cfg.lr)
    options.seed(cfg.seed)
    options.choice("--norm", cfg.gen.norm, NORMS)
    j = cfg.projection_targets
    if j < 0:
        raise UserError(f"--projection {j}: use 0 (none) or a number of patches")
    if j and cfg.gen.levels < 2:
        raise UserError("a patch projection needs --levels 2 or more (its grid follows theirs)")
    if j:
        cfg.coarse_stages.for_model(cfg.gen.levels)  # a UserError for levels it cannot have
    if not 0.0 <= cfg.freeze <= 1.0:
        raise UserError(f"--freeze {cfg.freeze}: use a fraction of the run between 0 and 1")
    if not 0.0 <= cfg.ema < 1.0:
        raise UserError(f"--ema {cfg.ema}: use 0 (keep the last weights) or a decay below 1")
    if not (math.isfinite(cfg.structure) and cfg.structure >= 0):
        raise UserError(f"--structure {cfg.structure}: use 0 (off) or a positive weight")
    if cfg.structure:
        from train.structure import check_room

        try:
            check_room(exemplar_hw, cfg.size, cfg.size)
        except UserError as e:
            raise UserError(f"--structure: {e}")
    p, n = cfg.ot.patch, cfg.ot.scales
    options.room("the exemplar", exemplar_hw, p, n, "use a larger image or fewer --scales")
    options.room(
        f"--size {cfg.size}", (cfg.size, cfg.size), p, n, "use a larger one or fewer --scales"
    )


def freeze_start(cfg: TrainConfig) -> int:
    """The first iteration with frozen BatchNorm statistics (past the run: never)."""
    if cfg.gen.norm != "batch" or cfg.freeze <= 0:
        return cfg.iters + 1
    return cfg.iters - int(round(cfg.freeze * cfg.iters)) + 1


def learning_rate(cfg: TrainConfig, it: int) -> float:
    """lr for iteration `it` (1-based): constant, then a cosine decay to lr * lr_final."""
    start = cfg.decay_start * cfg.iters
    if it <= start or cfg.iters <= start:
        return cfg.lr
    t = (it - start) / (cfg.iters - start)
    return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


def crop_training(cfg: GeneratorConfig, out: torch.Tensor, size: int) -> torch.Tensor:
    """The size x size output window [0, size)^2 inside the generator's output for
    training_noise(..., size): the same placement sample_tile uses."""
    c = axis_window(cfg.arch, 0, size).crop
    return out[:, :, c : c + size, c : c + size]


def new_generator(cfg: GeneratorConfig, seed: int, device: torch.device) -> TextureGenerator:
    """A freshly initialised generator; the initial weights depend only on `seed` (random init,
    then unit-variance scaling on noise drawn from `seed` too)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TextureGenerator(cfg)
        noise = training_noise(cfg, 2, 128, torch.Generator().manual_seed(seed))
        return unit_variance_init(model, noise).to(device)


def eval_noise(cfg: TrainConfig, count: int, seed: int) -> Iterator[list[torch.Tensor]]:
    """`count` noise batches of the training distribution from their own RNG (deterministic,
    independent of the training stream)."""
    gen = torch.Generator().manual_seed(seed)
    device = pick_device(cfg.device)
    for _ in range(count):
        yield [z.to(device) for z in training_noise(cfg.gen, 1, cfg.size, gen)]


def train(
    exemplar: np.ndarray,
    cfg: TrainConfig,
    *,
    checkpoint: Path | None = None,
    checkpoint_every: int = 0,
    resume: dict | None = None,
    on_step: Callable[[int, float, torch.Tensor], None] | None = None,
    on_fit: Callable[[], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult | None:
    """Train a generator on `exemplar` (float (H, W, C) in [0, 1]) and return it folded.

    checkpoint / checkpoint_every: write a checkpoint every N iterations and at the end.
    resume: a loaded checkpoint (train.checkpoint.load_checkpoint) to continue from; its
    settings must match `cfg` except iters, lr and device.
    on_step(iteration, loss, image): after every iteration (progress, previews).
    on_fit(): after each step of the projection's fit, `projection_steps(cfg)` in all.
    stop_after: end after this iteration without finishing (returns None; for tests that
    simulate a killed run).
    """
    check_config(exemplar.shape[:2], cfg)
    device = pick_device(cfg.device)
    ex_hash = pixels_sha256(exemplar)
    cfg = for_exemplar(cfg, exemplar)
    gcfg = cfg.gen

    rng = torch.Generator().manual_seed(cfg.seed)  # the one training RNG stream
    model = new_generator(gcfg, cfg.seed, device)
    ot_loss = PatchOTLoss(to_tensor(exemplar, device), cfg.ot, periodic=False, generator=rng)
    structure = structure_loss(exemplar, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ema = average_weights(model) if cfg.ema else None
    start, history = 0, []

    if resume is not None:
        start, history = restore(resume, cfg, exemplar, model, opt, ot_loss, rng, ema)

    frozen_from = freeze_start(cfg)
    model.train(start < frozen_from)  # a resumed frozen phase keeps its saved statistics
    last_good = start
    for it in range(start + 1, cfg.iters + 1):
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, it)
        if it == frozen_from:  # BatchNorm: population statistics from here on, fixed
            recalibrate_batchnorm(model, eval_noise(cfg, cfg.bn_samples, cfg.seed + 1))
        noise = [z.to(device) for z in training_noise(gcfg, cfg.batch, cfg.size, rng)]
        image = crop_training(gcfg, model(*noise), cfg.size)
        ot_loss.fit_potentials(image.detach())
        loss = ot_loss.loss(image)
        if structure is not None:
            loss = loss + structure(image)
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged(it, value, cfg, checkpoint, last_good)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()])
        if not bool(finite.all()):  # one device sync, not one per tensor
            diverged(it, float("nan"), cfg, checkpoint, last_good, what="the weights")
        if ema is not None:
            update_average(ema, model, min(cfg.ema, (1 + it) / (10 + it)))  # short runs too
        history.append(value)
        if on_step is not None:
            on_step(it, value, image.detach())
        if checkpoint is not None and checkpoint_due(it, checkpoint_every, cfg.iters):
            write_checkpoint(checkpoint, it, cfg, ex_hash, model, opt, ot_loss, rng, ema, history)
            last_good = it
        if stop_after is not None and it >= stop_after:
            return None

    if ema is not None:
        load_average(model, ema)
    train_sample, eval_sample = fold_trained(model, cfg, frozen_from)
    model, choice = attach_projection(model, exemplar, cfg, on_fit)
    meta = training_meta(exemplar, ex_hash, cfg, history, choice)
    return TrainResult(model, meta, history, train_sample, eval_sample)


def structure_loss(exemplar: np.ndarray, cfg: TrainConfig):
    """The structure term for `cfg.structure` > 0 (None: off; check_config checked its room)."""
    if not cfg.structure:
        return None
    from train.structure import StructureLoss

    return StructureLoss(exemplar, cfg.size, cfg.structure)


def checkpoint_due(it: int, every: int, iters: int) -> bool:
    """Every `every` iterations (0: never) and at the last one."""
    return bool(every) and (it % every == 0 or it == iters)


def write_checkpoint(
    path: Path,
    it: int,
    cfg: TrainConfig,
    ex_hash: str,
    model: TextureGenerator,
    opt: torch.optim.Optimizer,
    ot_loss: PatchOTLoss,
    rng: torch.Generator,
    ema: dict[str, torch.Tensor] | None,
    history: list[float],
) -> None:
    """Everything a resumed run needs to continue bit-identically after iteration `it`."""
    save_checkpoint(
        path,
        iteration=it,
        config=cfg.to_dict(),
        exemplar_sha256=ex_hash,
        model=model,
        optimizer=opt,
        potentials=[s.psi for s in ot_loss.scales],
        rng_state=rng.get_state(),
        history=history,
        ema=ema,
    )


def fold_trained(
    model: TextureGenerator, cfg: TrainConfig, frozen_from: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold the trained network into plain convolutions, in place; returns one noise sample
    through the model as it was trained at the end (BatchNorm: the batch's own statistics, or
    the frozen ones) and the same noise through the folded inference-mode model, for
    `check_modes`."""
    gcfg = cfg.gen
    z = next(eval_noise(replace(cfg, size=2 * cfg.size), 1, cfg.seed + 2))
    frozen = frozen_from <= cfg.iters
    with torch.no_grad():
        train_sample = crop_training(gcfg, model.train(not frozen)(*z), 2 * cfg.size).clone()

    if gcfg.norm == "batch" and not frozen:  # batch -> population statistics, then fold
        recalibrate_batchnorm(model, eval_noise(cfg, cfg.bn_samples, cfg.seed + 1))
    fold(model)
    with torch.no_grad():
        eval_sample = crop_training(gcfg, model(*z), 2 * cfg.size).clone()
    return train_sample, eval_sample


def training_meta(
    exemplar: np.ndarray,
    ex_hash: str,
    cfg: TrainConfig,
    history: list[float],
    choice: dict | None,
) -> dict:
    """What save_generator records about the run."""
    return {
        "exemplar_sha256": ex_hash,
        "exemplar_shape": list(exemplar.shape),
        "channels": CHANNEL_NAMES.get(exemplar.shape[2], ""),  # a material: TrainJob names them
        "training": cfg.to_dict(),
        "iterations": len(history),
        "final_loss": float(np.mean(history[-50:])) if history else None,
        "projection_choice": choice,
    }


def average_weights(model: TextureGenerator) -> dict[str, torch.Tensor]:
    """A copy of the trainable weights, the start of their moving average."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def load_average(model: TextureGenerator, ema: dict[str, torch.Tensor]) -> None:
    """The model keeps the averaged weights, not Adam's last iterate."""
    for name, p in model.named_parameters():
        p.copy_(ema[name])


@torch.no_grad()
def update_average(ema: dict[str, torch.Tensor], model: TextureGenerator, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, in place."""
    for name, p in model.named_parameters():
        ema[name].lerp_(p, 1.0 - decay)


def diverged(
    it: int,
    value: float,
    cfg: TrainConfig,
    checkpoint: Path | None,
    last_good: int,
    what: str = "the loss",
) -> None:
    """Stop with a clear error; the last checkpoint on disk (written before) stays good."""
    lower = f"{cfg.lr / 3:.2g}"
    msg = f"training diverged at iteration {it}: {what} became {value}; use a lower --lr "
    msg += f"(now {cfg.lr:g}, e.g. --lr {lower})"
    if checkpoint is not None and last_good > 0:
        msg += (
            f"; the last good checkpoint {checkpoint} (iteration {last_good}) is intact: "
            f"continue it with --resume --lr {lower}"
        )
    raise FloatingPointError(msg)


def for_exemplar(cfg: TrainConfig, exemplar: np.ndarray) -> TrainConfig:
    """`cfg` with the generator's output channels set to the exemplar's."""
    return replace(cfg, gen=replace(cfg.gen, out_channels=exemplar.shape[2]))


def check_resume(ckpt: dict, cfg: TrainConfig, exemplar: np.ndarray) -> None:
    """Raise UserError unless the checkpoint can continue as `cfg` on `exemplar`. Cheap, so the
    CLI checks before it shows a progress bar; `train` checks again."""
    cfg = for_exemplar(cfg, exemplar)
    if ckpt["exemplar_sha256"] != pixels_sha256(exemplar):
        raise UserError(
            "the checkpoint was trained on another exemplar (its pixel hash differs): pass the "
            "same image, or start over with --overwrite"
        )
    try:
        saved = TrainConfig.from_dict(ckpt["config"])
    except TypeError as e:
        raise UserError(f"the checkpoint's settings are unreadable ({e})")
    if saved.settings() != cfg.settings():
        diff = [k for k in cfg.settings() if saved.settings().get(k) != cfg.settings()[k]]
        raise UserError(
            f"the checkpoint was made with other settings ({', '.join(diff)}): resume with the "
            "same options (only --iters, --lr and --device may change)"
        )
    if ckpt["iteration"] > cfg.iters:
        raise UserError(
            f"the checkpoint is at iteration {ckpt['iteration']}, past --iters {cfg.iters}"
        )


def restore(
    ckpt: dict,
    cfg: TrainConfig,
    exemplar: np.ndarray,
    model: TextureGenerator,
    opt: torch.optim.Optimizer,
    ot_loss: PatchOTLoss,
    rng: torch.Generator,
    ema: dict[str, torch.Tensor] | None,
) -> tuple[int, list[float]]:
    """Load a checkpoint's state into the fresh objects; (iteration, loss history)."""
    check_resume(ckpt, cfg, exemplar)
    if len(ckpt["potentials"]) != len(ot_loss.scales):
        raise UserError("the checkpoint's potentials do not match --scales")
    device = next(model.parameters()).device
    try:
        model.load_state_dict(ckpt["model"], strict=True)
        opt.load_state_dict(ckpt["optimizer"])
        for s, psi in zip(ot_loss.scales, ckpt["potentials"]):
            if psi.shape != s.psi.shape:
                raise RuntimeError("psi has the wrong size")
            s.psi = psi.to(device=device, dtype=s.psi.dtype).clone()
        rng.set_state(ckpt["rng_state"])
        if ema is not None:
            for name, avg in ckpt["ema"].items():
                ema[name].copy_(avg)  # KeyError/RuntimeError if it does not fit
            if ckpt["ema"].keys() != ema.keys():
                raise KeyError("the weight average does not fit the model")
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise UserError(f"the checkpoint does not fit this model ({str(e).splitlines()[0]})")
    return int(ckpt["iteration"]), list(ckpt.get("history", []))


# --- after training ---------------------------------------------------------------------------


FIT_SAMPLES, CHECKS = 96, 6  # fit_projection's windows per stage; choose_projection's samples


def attach_projection(
    network: TextureGenerator,
    exemplar: np.ndarray,
    cfg: TrainConfig,
    tick: Callable[[], None] | None = None,
) -> tuple[TextureGenerator, dict | None]:
    """The trained (folded) network with the projection stages `cfg` asks for
    (projection_targets, coarse_stages), fitted; and what `choose_projection` measured when it
    chose (None otherwise). tick() after each window a stage is fitted on and each sample
    scored."""
    j = cfg.projection_targets
    if not j:
        return without_projection(network), None
    levels, auto = cfg.coarse_stages.for_model(cfg.gen.levels)
    if auto:
        return choose_projection(network, exemplar, j, cfg.seed, levels, tick=tick)
    return fit_projection(network, exemplar, j, cfg.seed, coarse=levels, tick=tick), None


def projection_steps(cfg: TrainConfig) -> int:
    """How many times attach_projection ticks for `cfg`: a progress bar's total."""
    if not cfg.projection_targets:
        return 0
    levels, auto = cfg.coarse_stages.for_model(cfg.gen.levels)
    if auto:  # the final stage alone, the chain, then both scored
        return FIT_SAMPLES * (len(levels) + 2) + 2 * CHECKS
    return FIT_SAMPLES * (len(levels) + 1)


@torch.no_grad()
def fit_projection(
    model: TextureGenerator,
    exemplar: np.ndarray,
    n_targets: int = 2000,
    seed: int = 0,
    samples: int = FIT_SAMPLES,
    size: int = 128,
    steps: int = 30,
    coarse: list[int] | None = None,
    tick: Callable[[], None] | None = None,
) -> TextureGenerator:
    """`model`'s network (folded) followed by its projection stages: coarse levels `coarse`,
    then the final PatchProjection, each onto `n_targets` random patches of the exemplar (pooled
    as the stage pools), with potentials fitted to the model's own samples as the stages before
    it leave them: `samples` windows of size^2 (hashed noise, seeds drawn at random from `seed`),
    `steps` averaged ascent steps on each, so that each target patch receives an equal share of
    the patches (train/generator.py). 96 x 30 steps, since psi moves at most 1/J a step and
    fewer leave it far from converged (docs/GENERATOR.md, section 4)."""
    network = without_projection(model)
    out = with_projection(network, n_targets, coarse)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    p = PatchProjection.PATCH
    cfg = OTConfig(patch=p, scales=1, n_target=n_targets)
    ex = to_tensor(exemplar, device)
    targets = sample_target_patches(ex, cfg, gen)[0]
    # Noise seeds far from the small ones users and the yardstick sample with.
    noise_seeds = torch.randint(2**20, 2**31, (samples,), generator=gen).tolist()
    windows = [network_window(network, out.arch, s, size) for s in noise_seeds]

    def as_levels(x: torch.Tensor) -> torch.Tensor:  # what a projection scores: 8-bit levels
        return torch.round(x.clamp(0, 1) * 255) / 255

    for stage in out.coarse:
        pooled = F.avg_pool2d(torch.round(ex.clamp(0, 1) * 255), stage.factor) / 255
        ot = SemiDiscreteOT(as_levels(sample_target_patches(pooled, cfg, gen)[0]))
        for raw, _ in windows:
            d = torch.round(stage.pooled_levels(raw)) / 255
            ot.ascend(extract_patches(d, p, periodic=False), steps, 1.0, 4096, gen)
            if tick:
                tick()
        stage.project.set_targets(ot.y, ot.psi)
        windows = [(stage(raw), at - stage.crop_out) for raw, at in windows]
    ot = SemiDiscreteOT(as_levels(targets))
    for raw, at in windows:  # the final stage sees output pixels [0, size)^2
        image = as_levels(raw[:, :, at : at + size, at : at + size])
        ot.ascend(extract_patches(image, p, periodic=False), steps, 1.0, 4096, gen)
        if tick:
            tick()
    out.project.set_targets(ot.y, ot.psi)
    return out


@torch.no_grad()
def network_window(
    network: TextureGenerator, arch: Arch, seed: int, size: int
) -> tuple[torch.Tensor, int]:
    """The network's output for the window a model of `arch` (its projection stages' trims)
    reads to paint pixels [0, size)^2 of `seed`, and where pixel (0, 0) sits in it."""
    c = network.cfg
    noises, (at, _) = tile_noise(arch, c.noise_channels, seed, 0, 0, size, size, None)
    device = next(network.parameters()).device
    raw = network(*[torch.from_numpy(z).to(device) for z in noises])
    return raw, at + arch.tr


@torch.no_grad()
def choose_projection(
    model: TextureGenerator,
    exemplar: np.ndarray,
    n_targets: int = 2000,
    seed: int = 0,
    coarse: list[int] = COARSE_LEVELS,
    checks: int = CHECKS,
    size: int = 256,
    tick: Callable[[], None] | None = None,
    samples: int = FIT_SAMPLES,
) -> tuple[TextureGenerator, dict]:
    """The final projection alone or after coarse stages at `coarse` levels, whichever brings
    `checks` held-out samples (size^2, the same noise for both) closer to the exemplar
    (tilegen.evaluate, debiased). The coarse stages mend middle-scale structure on most
    textures and spoil some (rusty_metal's large flat areas: docs/GENERATOR.md, section 3), so the
    choice is measured on the user's own exemplar. Returns the model and what was measured."""
    from tilegen.evaluator import Evaluator

    score = Evaluator(exemplar, n=1000)
    seeds = [2**19 + i for i in range(checks)]  # neither the fit's nor the usual small seeds

    def distance(m: TextureGenerator) -> float:
        scores = []
        for s in seeds:
            scores.append(score(quantized(sample(m, size, size, s)))["debiased"])
            if tick:
                tick()
        return float(np.mean(scores))

    alone = fit_projection(model, exemplar, n_targets, seed, samples, tick=tick)
    chained = fit_projection(model, exemplar, n_targets, seed, samples, coarse=coarse, tick=tick)
    d_alone, d_chained = distance(alone), distance(chained)
    keep = d_chained < d_alone
    report = {
        "tried": list(coarse),
        "final_alone": d_alone,
        "with_coarse": d_chained,
        "coarse": list(coarse) if keep else [],
    }
    return (chained if keep else alone), report


def quantized(image: np.ndarray) -> np.ndarray:
    """The image as an 8-bit file holds it (what users and the yardstick score)."""
    return as_saved(image, 8)


def sample(
    model: TextureGenerator,
    height: int,
    width: int,
    seed: int,
    periodic: bool = False,
    tile: int = 1024,
) -> np.ndarray:
    """(H, W, C) float32 image from the folded model: pixels [0, H) x [0, W) of the infinite
    texture for `seed`, exact sizes. periodic: the image tiles seamlessly (period (H, W), each
    a multiple of the model's stride). Computed in tiles of at most `tile` pixels a side to
    bound memory; tiles are exact crops of one big evaluation, so the result is the same."""
    stride = model.arch.stride
    if periodic and not (period_fits(height, stride) and period_fits(width, stride)):
        up = lambda n: -(-n // stride) * stride  # noqa: E731
        raise UserError(
            f"a periodic sample needs sides that are multiples of {stride} (the model's stride); "
            f"got {height}x{width}, try --size {up(height)} {up(width)}"
        )
    period = (height, width) if periodic else None
    out = np.empty((height, width, model.cfg.out_channels), dtype=np.float32)
    for _, _, y, x, h, w in tiles(0, 0, height, width, tile):
        out[y : y + h, x : x + w] = to_image(sample_tile(model, seed, y, x, h, w, period))
    return out


def preview_image(exemplar: np.ndarray, image: np.ndarray, gap: int = 8) -> np.ndarray:
    """[image | gap | exemplar], both cut to a common height (at most 512 px), on white."""
    h = min(512, exemplar.shape[0], image.shape[0])
    a, b = image[:h, :512], exemplar[:h, :512]
    out = np.ones((h, a.shape[1] + gap + b.shape[1], exemplar.shape[2]), dtype=np.float32)
    out[:, : a.shape[1]] = a
    out[:, a.shape[1] + gap :] = b
    return out


def check_modes(exemplar: np.ndarray, result: TrainResult) -> dict:
    """Patch-OT distance (tilegen.evaluate, debiased) to the exemplar of one noise sample through
    the model in training mode and through the folded inference-mode model, and their largest
    pixel difference: the function sampled should be the function trained. With a patch
    projection, also a sample of the whole model (network + projection) of the same size."""
    from tilegen.metrics import patch_ot_distance

    train_img, eval_img = to_image(result.train_mode_sample), to_image(result.eval_mode_sample)
    kw = {"scales": 4, "n": 1000, "seeds": 2}
    out = {
        "size": train_img.shape[0],
        "train_mode": patch_ot_distance(exemplar, train_img, **kw)["debiased"],
        "eval_mode": patch_ot_distance(exemplar, eval_img, **kw)["debiased"],
        "max_difference": float(np.abs(train_img - eval_img).max()),
    }
    if result.model.project is not None:
        s = out["size"]
        projected = sample(result.model, s, s, seed=0)
        out["projected"] = patch_ot_distance(exemplar, projected, **kw)["debiased"]
    return out
