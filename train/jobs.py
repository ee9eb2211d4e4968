"""The torch commands as jobs: each dataclass's fields are its command's options, by name
(`--psi-steps` is `psi_steps`), with the command's defaults; `check` parses and validates each
option once (tilegen/options.py's checks, naming the option) and `run(echo)` does the whole job,
echoing the lines it prints. The command line only builds one from its options and calls `run`.

    SynthJob    read the exemplar, synthesise (train/synth.py), write        tilegen synth
    InpaintJob  read the image and the mask, fill the hole (train/inpaint.py)  tilegen inpaint
    BlendJob    read the exemplars, blend them (train/blend.py)              tilegen blend
    TrainJob    defaults or a checkpoint, merged with the options given; train tilegen train
    SampleJob   load a trained model, paint --size pixels                    tilegen sample

Every job checks its output can be written and estimates its memory (tilegen/memory.py) before
it allocates anything, and turns Ctrl-C into one line that says what was kept (Interrupted).
This module imports torch only inside `run`: the command line stays quick to start, and the
torch-free commands (tilegen/jobs.py) run where torch is not installed. `tilegen export`'s job is
export/jobs.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tilegen import memory, options
from tilegen.errors import Interrupted, UserError, raise_if_interrupted
from tilegen.imageio import IMAGE_SUFFIXES
from tilegen.imageio import LOSSLESS_SUFFIXES as EXACT_SUFFIXES

if TYPE_CHECKING:  # torch only inside `run`
    from train.train_generator import TrainResult


def _bar(total: int, desc: str, initial: int = 0, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True, disable=not enabled
    )


def projection_choice_line(choice: dict) -> str:
    """What `train` says about the coarse projections it tried (choose_projection)."""
    a, c = choice["final_alone"], choice["with_coarse"]
    verdict = "kept" if choice["coarse"] else "left out"
    levels = ",".join(map(str, choice["tried"]))
    return (
        f"coarse projections (levels {levels}) {verdict}: held-out samples score {c:.6f} with "
        f"them, {a:.6f} with the final projection alone ({c / a - 1:+.0%}; --coarse "
        "off|auto|LEVELS)"
    )


def _on_cpu(device: str) -> bool:
    from train.device import pick_device

    return pick_device(device).type == "cpu"


def check_material_output(job, suffixes=IMAGE_SUFFIXES) -> None:
    """-o, --normal, --normal-out and --preview-lit of a job that writes an image or a
    material's maps (a folder), checked before any work."""
    from tilegen.material import check_output_folder

    options.normal(job.normal)
    options.normal(job.normal_out, "--normal-out")
    if not job.material and (job.preview_lit or job.normal_out):
        what = "--preview-lit" if job.preview_lit else "--normal-out"
        raise UserError(f"{what} is for materials (a folder of maps or --map ROLE=PATH)")
    if job.material:
        check_output_folder(job.output, job.overwrite)
    else:
        options.output(job.output, job.overwrite, suffixes)
    if job.preview_lit is not None:
        options.output(job.preview_lit, job.overwrite, (".png", ".tif", ".tiff", ".jpg"))


def snapshot_path(out: Path, it: int, layout: dict | None) -> Path:
    """OUT.NNNN.png beside an image; DIR/lit.NNNN.png (the lit material) in a material's folder."""
    if layout is not None:
        return out / f"lit.{it:04d}.png"
    return out.with_name(f"{out.stem}.{it:04d}{out.suffix}")


def write_result(
    output: Path,
    image,
    layout: dict | None,
    bits: int | None,
    normal_out: str | None = None,
    preview_lit: Path | None = None,
    keep=None,
) -> str:
    """Write a command's result: an image file, or a material as output/albedo.png,
    output/normal.png, ... (normals unit length, in the input's convention unless
    `normal_out`, each map at its source depth unless `bits`) and its lit rendering.
    `keep` (H, W) bool: pixels to leave exactly as they are (inpainting's known part).
    Returns what was written, for the command's report."""
    from tilegen.imageio import write_image
    from tilegen.material import finish, lit, write_maps

    if layout is None:
        write_image(output, image, bits or 8)
        return str(output)
    done = finish(image, layout)
    if keep is not None:
        done[keep] = image[keep]
    files = write_maps(output, done, layout, bits, normal_out)
    if preview_lit is not None:
        write_image(preview_lit, lit(done, layout))
    names = ", ".join(f.name for f in files)
    return f"{output}/{{{names}}}" + (f" and {preview_lit}" if preview_lit else "")


@dataclass(kw_only=True)
class PixelJob:
    """What synth, inpaint and blend share: the pixel optimisation's settings and the output."""

    output: Path
    iters: int = 500
    scales: int = 4
    patch: int = 4
    lr: float = 0.01
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    overwrite: bool = False
    max_memory: float | None = None
    progress: bool = True
    # Materials (tilegen/material.py): --map ROLE=PATH, the normal convention in (--normal) and
    # out (--normal-out), --map-weight ROLE=W, and a lit rendering of the result.
    maps: list[str] | None = None  # None: none
    normal: str | None = None
    normal_out: str | None = None
    map_weights: list[str] | None = None
    preview_lit: Path | None = None
    suffixes = IMAGE_SUFFIXES

    def __post_init__(self) -> None:
        self.maps, self.map_weights = self.maps or [], self.map_weights or []

    def source(self) -> Path | None:
        """The command's input image (or material folder)."""
        return None

    @property
    def material(self) -> bool:
        from tilegen.material import is_material

        return is_material(self.source(), self.maps)

    def check(self) -> None:
        for option in ("iters", "scales", "patch"):  # --threads: train.device.use_threads
            options.positive(f"--{option}", getattr(self, option))
        options.learning_rate(self.lr)
        options.seed(self.seed)
        check_material_output(self, self.suffixes)
        memory.set_limit(self.max_memory)

    def ot(self, layout: dict | None = None):
        """The loss's settings; a material's per-channel weights from its layout."""
        from tilegen.material import channel_weights
        from train.patch_ot import OTConfig

        weights = channel_weights(layout, self.map_weights)
        return OTConfig(patch=self.patch, scales=self.scales, weights=weights)

    def read(self, path: Path | None) -> tuple:
        """(image (H, W, C), layout or None): an image file, a material folder or --map."""
        from tilegen.material import read_exemplar

        return read_exemplar(path, self.maps, self.normal)

    def write(self, image, layout: dict | None, bits: int | None, keep=None) -> str:
        """Write the result: an image, or a material's maps into the -o folder (and
        --preview-lit); returns what was written, for the report line."""
        out, lit = self.output, self.preview_lit
        return write_result(out, image, layout, bits, self.normal_out, lit, keep)

    def start(self) -> None:
        """Before reading inputs: the settings, then torch's threads."""
        self.check()
        from train.device import use_threads

        use_threads(self.threads)

    def require(self, size: tuple[int, int], channels: int, exemplars: list[tuple]) -> None:
        if _on_cpu(self.device):
            need = memory.pixel_job_bytes(size, channels, exemplars)
            what = f"optimising {size[0]}x{size[1]} pixels"
            memory.require(need, what, "use a smaller --size (or smaller images)")

    def optimise(self, desc: str, work: Callable, extra: Callable | None = None, kept: str = ""):
        """work(on_step) with a progress bar; Ctrl-C becomes one line saying what was kept."""
        bar = _bar(self.iters, desc, enabled=self.progress)

        def on_step(it: int, image, loss: float) -> None:
            raise_if_interrupted()
            bar.update(1)
            bar.set_postfix(ot=f"{loss:.4f}")
            if extra is not None:
                extra(it, image)

        try:
            return work(on_step)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted at iteration {bar.n} of {self.iters}: {self.output} was not "
                f"written{kept}; rerun the same command to start again"
            )
        finally:
            bar.close()


@dataclass(kw_only=True)
class SynthJob(PixelJob):
    exemplar: Path | None  # None: a material given with --map
    size: tuple[int, int] | None = None  # None: the exemplar's
    periodic: bool = True
    snapshot_every: int = 0
    bits: int | None = None  # None: 8, or a material's maps at their source depth

    def ot(self, layout: dict | None = None):
        from train.synth import SYNTH_CUTS

        return replace(super().ot(layout), **SYNTH_CUTS)

    def source(self) -> Path | None:
        return self.exemplar

    def check(self) -> None:
        super().check()
        options.positive("--snapshot-every", self.snapshot_every, allow_zero=True)
        options.bits(self.bits)
        if self.size is not None:
            self.size = options.size(self.size)

    def run(self, echo: Callable[[str], None]) -> None:
        self.start()
        from tilegen.imageio import write_image
        from tilegen.material import viewable
        from train.synth import SynthConfig, check_sizes, synthesize, to_image

        img, layout = self.read(self.exemplar)
        size = self.size or img.shape[:2]
        cfg = SynthConfig(
            size, self.iters, self.lr, self.seed, self.periodic, self.device, self.ot(layout)
        )
        check_sizes(img.shape[:2], cfg.size, cfg.ot)
        self.require(size, img.shape[2], [img.shape])
        out, snaps = self.output, []

        def snapshot(it: int, image) -> None:
            if self.snapshot_every and it % self.snapshot_every == 0 and it < self.iters:
                snaps.append(snapshot_path(out, it, layout))
                write_image(snaps[-1], viewable(to_image(image), layout), self.bits or 8)

        kept = lambda: f" (snapshots up to {snaps[-1].name} are kept)" if snaps else ""  # noqa: E731
        try:
            result = self.optimise("synth", lambda step: synthesize(img, cfg, step), snapshot)
        except Interrupted as e:
            raise Interrupted(str(e).replace(" written;", f" written{kept()};"))
        wrote = self.write(result, layout, self.bits)
        echo(f"wrote {wrote} ({size[0]}x{size[1]}, {img.shape[2]} channels)")


@dataclass(kw_only=True)
class InpaintJob(PixelJob):
    image: Path
    mask: Path | None = None
    box: tuple[int, int, int, int] | None = None
    bits: int | None = None  # None: 8 if every pixel is an 8-bit level, else 16
    suffixes = EXACT_SUFFIXES

    def check(self) -> None:
        if (self.mask is None) == (self.box is None):
            raise UserError("give the hole as exactly one of --mask MASK or --box Y X H W")
        super().check()
        options.bits(self.bits)

    def source(self) -> Path | None:
        return self.image

    def hole(self, hw: tuple[int, int]):
        """The hole as (H, W) bool, True = missing: the mask's white (gray above 0.5) or --box."""
        import numpy as np

        from tilegen.imageio import read_image

        if self.box is not None:
            y, x, h, w = self.box
            if h < 1 or w < 1 or y < 0 or x < 0 or y + h > hw[0] or x + w > hw[1]:
                raise UserError(
                    f"--box {y} {x} {h} {w} must have positive height and width and lie inside "
                    f"the {hw[0]}x{hw[1]} image"
                )
            mask = np.zeros(hw, dtype=bool)
            mask[y : y + h, x : x + w] = True
            return mask
        m = read_image(self.mask)
        colour = m[:, :, :3] if m.shape[2] >= 3 else m[:, :, :1]  # leave out alpha
        mask = colour.mean(axis=2) > 0.5
        if mask.shape != tuple(hw):
            raise UserError(
                f"the mask {self.mask} is {mask.shape[0]}x{mask.shape[1]} but {self.image} is "
                f"{hw[0]}x{hw[1]}: the mask must have the image's size"
            )
        return mask

    def run(self, echo: Callable[[str], None]) -> None:
        self.start()
        from tilegen.imageio import exact_bits
        from train.inpaint import InpaintConfig, check_mask, inpaint

        img, layout = self.read(self.image)
        hw = img.shape[:2]
        hole = self.hole(hw)
        check_mask(hw, hole)
        self.require(hw, img.shape[2], [img.shape])
        cfg = InpaintConfig(self.iters, self.lr, self.seed, self.device, self.ot(layout))
        result = self.optimise("inpaint", lambda step: inpaint(img, hole, cfg, step))
        bits = self.bits or (None if layout else exact_bits(img))
        wrote = self.write(result, layout, bits, keep=~hole)
        echo(f"wrote {wrote} ({int(hole.sum())} of {hw[0] * hw[1]} pixels filled)")


@dataclass(kw_only=True)
class BlendJob(PixelJob):
    exemplars: list[Path]
    size: tuple[int, int]
    weight: float | None = None  # B's share of two exemplars
    weights: list[str] | None = None  # '0.2,0.3,0.5' or repeated options (None: equal)
    ramp: str | None = None
    periodic: bool | None = None  # None: yes without a ramp, no with one
    shares: list[float] | None = field(default=None, init=False)  # --weight(s), parsed by check

    def __post_init__(self) -> None:
        super().__post_init__()
        self.weights = self.weights or []

    def parsed_weights(self) -> list[float] | None:
        """The weights the options give (None: equal), checked against the exemplars."""
        n = len(self.exemplars)
        if self.weight is not None:
            if n != 2:
                raise UserError(f"--weight is B's share of two exemplars; for {n} give --weights")
            if not 0.0 <= self.weight <= 1.0:
                raise UserError(f"--weight {self.weight}: B's share must lie in [0, 1]")
            return [1.0 - self.weight, self.weight]
        if not self.weights:
            return None
        out = []
        for tok in " ".join(self.weights).replace(",", " ").split():
            try:
                out.append(float(tok))
            except ValueError:
                raise UserError(f"--weights: {tok!r} is not a number")
        if len(out) != n:
            raise UserError(f"--weights has {len(out)} values for {n} exemplars")
        return out

    def check(self) -> None:
        from train.blend import RAMPS

        for p in self.exemplars:  # --weights 0.5 0.5 leaves the second 0.5 as an exemplar
            try:
                if not p.exists():
                    float(str(p))
                    raise UserError(
                        f"{p} is not an image: give the weights as one list, e.g. --weights "
                        "0.2,0.3,0.5"
                    )
            except ValueError:
                pass  # read_image says it is missing
        if len(self.exemplars) < 2:
            raise UserError("blend needs at least two exemplars: A.png B.png [C.png ...]")
        for p in self.exemplars:
            if p.is_dir():
                raise UserError(f"{p} is a folder: blend takes images (materials: not yet)")
        super().check()
        self.size = options.size(self.size)
        if self.ramp is not None:
            options.choice("--ramp", self.ramp, RAMPS)
        if self.weight is not None and self.weights:
            raise UserError("give --weight W (two exemplars) or --weights w1 w2 ..., not both")
        if self.ramp is not None and (self.weight is not None or self.weights):
            raise UserError("--ramp sets the weights from the position: drop --weight/--weights")
        if self.ramp is not None and self.periodic:
            raise UserError("a --ramp cannot tile (A's edge would meet B's): drop --periodic")
        self.shares = self.parsed_weights()

    def run(self, echo: Callable[[str], None]) -> None:
        self.start()
        from tilegen.imageio import read_image, write_image
        from train.blend import BlendConfig, blend

        w = self.shares
        imgs = [read_image(p) for p in self.exemplars]
        cfg = BlendConfig(
            self.size, self.iters, self.lr, self.seed, self.periodic, self.device, self.ot()
        )
        self.require(self.size, imgs[0].shape[2], [i.shape for i in imgs])
        result = self.optimise("blend", lambda step: blend(imgs, w, cfg, self.ramp, step))
        write_image(self.output, result)
        echo(f"wrote {self.output} ({self.size[0]}x{self.size[1]}, {imgs[0].shape[2]} channels)")


@dataclass(kw_only=True)
class SampleJob:
    model: Path
    output: Path
    size: tuple[int, int] = (512, 512)
    seed: int = 0
    periodic: bool = False
    device: str = "auto"
    threads: int | None = None
    bits: int | None = None  # None: 8, or a material's maps at their source depth
    overwrite: bool = False
    max_memory: float | None = None
    normal_out: str | None = None  # a material model's normals: gl or dx (default: its input's)
    preview_lit: Path | None = None
    layout: dict | None = None  # a material model's (from its metadata, set by `run`)

    @property
    def material(self) -> bool:
        return self.layout is not None

    normal = None  # the input convention is the model's (check_material_output reads both)

    def check(self) -> None:
        self.size = options.size(self.size)
        options.seed(self.seed)
        options.bits(self.bits)
        memory.set_limit(self.max_memory)

    def run(self, echo: Callable[[str], None]) -> None:
        self.check()
        from train.checkpoint import load_generator
        from train.device import pick_device, use_threads
        from train.train_generator import sample

        use_threads(self.threads)
        gen, meta = load_generator(self.model, pick_device(self.device))
        self.layout = meta.get("material")
        check_material_output(self)  # the model says whether -o is an image or a folder
        h, w = self.size
        memory.require(h * w * 16 + 256 * 1024**2, f"a {h}x{w} sample", "use a smaller --size")
        try:
            img = sample(gen, h, w, self.seed, self.periodic)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {self.output} was not written; rerun the command")
        out, lit = self.output, self.preview_lit
        wrote = write_result(out, img, self.layout, self.bits, self.normal_out, lit)
        kind = " (periodic)" if self.periodic else ""
        echo(f"wrote {wrote} ({h}x{w}{kind}, seed {self.seed})")


@dataclass(kw_only=True)
class TrainJob:
    """`tilegen train`: the training settings left None come from the device's schedule and
    TrainConfig's defaults, or with --resume from the checkpoint (TrainConfig.merged, whose
    OPTIONS table maps each option onto its TrainConfig field)."""

    exemplar: Path | None  # None: a material given with --map
    output: Path
    # The training settings (TrainConfig.OPTIONS); None: not given.
    iters: int | None = None
    scales: int | None = None
    targets: int | None = None
    width: int | None = None
    levels: int | None = None
    size: int | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int | None = None
    projection: int | None = None
    coarse: str | None = None
    ema: float | None = None
    psi_steps: int | None = None
    norm: str | None = None  # one of train.generator.NORMS
    structure: float | None = None
    device: str = "auto"
    maps: list[str] | None = None  # a material: --map ROLE=PATH
    normal: str | None = None  # its normal map's convention (default: from the file name, or gl)
    map_weights: list[str] | None = None  # --map-weight ROLE=W
    threads: int | None = None
    checkpoint_every: int = 100
    resume: bool = False
    preview_every: int = 0
    check_modes: bool = True
    overwrite: bool = False
    max_memory: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.maps, self.map_weights = self.maps or [], self.map_weights or []

    def given(self) -> dict:
        """The training settings as TrainConfig.merged takes them: option name -> value."""
        from train.train_generator import TrainConfig

        return {o: getattr(self, o[2:].replace("-", "_")) for o in TrainConfig.OPTIONS}

    @property
    def checkpoint(self) -> Path:
        return self.output.with_name(self.output.name + ".ckpt")

    @property
    def preview(self) -> Path:
        return self.output.with_name(self.output.stem + ".preview.png")

    def check(self) -> None:
        options.output(self.output, self.overwrite)
        options.normal(self.normal)
        options.positive("--checkpoint-every", self.checkpoint_every, allow_zero=True)
        options.positive("--preview-every", self.preview_every, allow_zero=True)
        memory.set_limit(self.max_memory)

    def config(self, img, layout: dict | None = None):
        """(TrainConfig, checkpoint or None): the defaults or the checkpoint's, merged; a
        material's map weights (a resumed run keeps its own unless --map-weight is given)."""
        from train.checkpoint import load_checkpoint
        from train.train_generator import TrainConfig, check_resume, default_schedule

        given, state = self.given(), None
        if self.resume:
            if not self.checkpoint.is_file():
                raise UserError(f"--resume: there is no checkpoint {self.checkpoint} to continue")
            state = load_checkpoint(self.checkpoint)
            base = TrainConfig.from_dict(state["config"])
        else:
            if self.checkpoint.exists() and not self.overwrite:
                raise UserError(
                    f"{self.checkpoint} exists (an unfinished run?): pass --resume to continue "
                    "it, or --overwrite to start over"
                )
            size, iters = default_schedule(given.get("--device") or "auto")
            given["--size"] = size if given.get("--size") is None else given["--size"]
            given["--iters"] = iters if given.get("--iters") is None else given["--iters"]
            base = TrainConfig()
        given.setdefault("--device", "auto")
        cfg = base.merged(given)
        from tilegen.material import channel_weights, height_channels

        weights = channel_weights(layout, self.map_weights)
        if state is None or self.map_weights:
            cfg = replace(cfg, ot=replace(cfg.ot, weights=weights))
        cfg = replace(cfg, gen=replace(cfg.gen, relevel=height_channels(layout)))
        cfg.check(img.shape[:2])
        if state is not None:
            check_resume(state, cfg, img)  # before the progress bar: a refusal is one line
        return cfg, state

    def interrupted(self, at: int) -> Interrupted:
        from train.checkpoint import load_checkpoint

        try:  # what is on disk, whenever the Ctrl-C came
            kept = load_checkpoint(self.checkpoint)["iteration"] if self.checkpoint_every else 0
        except UserError:
            kept = 0
        if not kept:
            return Interrupted(
                f"interrupted at iteration {at}, before any checkpoint: nothing was kept; rerun "
                "the same command to start again"
            )
        return Interrupted(
            f"interrupted at iteration {at}; {self.checkpoint} holds iteration {kept}: rerun the "
            "same command with --resume to continue exactly"
        )

    def run(self, echo: Callable[[str], None]) -> None:
        self.check()
        from tilegen.imageio import write_image
        from tilegen.material import channel_labels, read_exemplar, viewable
        from train.checkpoint import save_generator
        from train.device import use_threads
        from train.synth import to_image
        from train.train_generator import (
            check_modes,
            preview_image,
            projection_steps,
            sample,
            train,
        )

        use_threads(self.threads)
        img, layout = read_exemplar(self.exemplar, self.maps, self.normal)
        cfg, state = self.config(img, layout)
        shown = viewable(img, layout)  # previews: a material lit from the upper left
        if _on_cpu(cfg.device):
            need = memory.train_bytes(cfg.size, cfg.batch, img.shape)
            memory.require(need, f"training on {cfg.size}x{cfg.size} crops", "use a smaller --size")
        start = state["iteration"] if state else 0
        bar = _bar(cfg.iters, "train", start, self.progress)
        smooth: list[float] = []

        def on_step(it: int, loss: float, image) -> None:
            raise_if_interrupted()
            smooth.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{sum(smooth[-20:]) / len(smooth[-20:]):.4f}")
            if self.preview_every and it % self.preview_every == 0 and it < cfg.iters:
                snap = self.output.with_name(f"{self.output.stem}.preview.{it:04d}.png")
                write_image(snap, preview_image(shown, viewable(to_image(image[:1]), layout)))

        fit_bar = None

        def on_fit() -> None:  # the projection's fit, after the loop: a bar of its own
            nonlocal fit_bar
            raise_if_interrupted()
            if fit_bar is None:
                bar.close()
                fit_bar = _bar(projection_steps(cfg), "fit projection", 0, self.progress)
            fit_bar.update(1)

        ckpt = self.checkpoint if self.checkpoint_every else None
        try:
            result = train(img, cfg, checkpoint=ckpt, checkpoint_every=self.checkpoint_every,
                           resume=state, on_step=on_step, on_fit=on_fit)  # fmt: skip
            if self.check_modes:
                result.meta["check"] = check_modes(img, result)
        except KeyboardInterrupt:
            raise self.interrupted(bar.n)
        finally:
            bar.close()
            if fit_bar is not None:
                fit_bar.close()
        if layout is not None:  # the model says which channels hold which map
            result.meta |= {"material": layout, "channels": ",".join(channel_labels(layout))}
        save_generator(self.output, result.model, result.meta)
        side = min(512, max(img.shape[0], result.model.arch.stride))
        look = viewable(sample(result.model.cpu(), side, side, cfg.seed), layout)
        write_image(self.preview, preview_image(shown, look))
        self.report(result, echo)

    def report(self, result: TrainResult, echo: Callable[[str], None]) -> None:
        """What `train` says once the model and its preview are written."""
        model = result.model
        n = sum(p.numel() for p in model.parameters())
        echo(
            f"wrote {self.output} ({n} parameters, stride {model.arch.stride}, final loss "
            f"{result.meta['final_loss']:.4f}) and {self.preview} (sample | exemplar)"
        )
        if self.check_modes:
            c = result.meta["check"]
            echo(
                f"patch-OT distance of {c['size']}x{c['size']} samples: inference mode "
                f"{c['eval_mode']:.5f}, training mode {c['train_mode']:.5f}"
                + (f", with the patch projection {c['projected']:.5f}" if "projected" in c else "")
            )
        if result.meta.get("projection_choice"):
            echo(projection_choice_line(result.meta["projection_choice"]))
        if self.checkpoint_every:
            echo(f"checkpoint {self.checkpoint} kept: --resume --iters N trains further")
