"""tilegen's command line: one function per command.

Heavy libraries (torch, onnxruntime, dask) are imported inside the commands that need them, so
`tilegen --help` is instant and the tiling commands run where torch is not installed. Every
expected failure is a UserError (or a ValueError from the engine), printed as one line with exit
code 2.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from tilegen.errors import Interrupted, UserError

app = typer.Typer(
    help="Learn a texture from one example image with patch optimal transport, then paint "
    "seamless textures of any size.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs re-flow to the terminal width
)


@app.callback()
def _root() -> None:
    """tilegen: patch-OT texture synthesis. Run 'tilegen COMMAND --help' for a command's options."""


# --- shared options and checks ----------------------------------------------------------------

Seed = Annotated[
    int, typer.Option(help="Random seed: the same inputs and seed give the same bytes.")
]
Device = Annotated[str, typer.Option(help="auto (GPU when there is one), cpu or cuda.")]
Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for torch (default: the cores no other program is busy on).",
        show_default=False,
    ),
]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output file.")]
Iters = Annotated[int, typer.Option(help="Outer iterations (psi steps + one pixel step).")]
Scales = Annotated[int, typer.Option(help="Pyramid levels of the multiscale loss.")]
Patch = Annotated[int, typer.Option(help="Patch side in pixels.")]
PixelLr = Annotated[float, typer.Option(help="Adam step on the pixels (in [0, 1]).")]


def check_optimiser(iters: int, scales: int, patch: int, lr: float) -> None:
    """The settings every pixel-optimising command shares."""
    if iters < 1 or scales < 1 or patch < 1:
        raise UserError("--iters, --scales and --patch must be positive")
    if not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"--lr {lr}: the step must be a positive number, e.g. 0.01")


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse to clobber an existing output unless asked; make sure its folder can be written."""
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists: pass --overwrite or choose another -o")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is not a folder")


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    if min(size) < 1:
        raise UserError(f"--size {size[0]} {size[1]}: both sides must be positive")
    return size


# --- commands ---------------------------------------------------------------------------------


@app.command()
def synth(
    exemplar: Annotated[
        Path, typer.Argument(help="Example texture (PNG, JPEG or TIFF; 8/16-bit).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the result.")],
    size: Annotated[
        tuple[int, int] | None,
        typer.Option(help="Output height and width (default: the exemplar's size)."),
    ] = None,
    iters: Iters = 500,
    scales: Scales = 4,
    patch: Patch = 4,
    lr: PixelLr = 0.01,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
    periodic: Annotated[bool, typer.Option(help="Make the output tile seamlessly.")] = True,
    snapshot_every: Annotated[
        int, typer.Option(help="Write OUTPUT.NNNN.png every N iterations (0: never).")
    ] = 0,
    bits: Annotated[int, typer.Option(help="8 or 16 bits per channel (16 needs .png/.tif).")] = 8,
    overwrite: Overwrite = False,
) -> None:
    """Synthesise a new image of the exemplar's texture by optimising its pixels (Alg. 1)."""
    from tqdm import tqdm

    from tilegen.imageio import read_image, write_image
    from train.device import use_threads
    from train.patch_ot import OTConfig
    from train.synth import SynthConfig, check_sizes, synthesize

    check_output(output, overwrite)
    use_threads(threads)
    check_optimiser(iters, scales, patch, lr)
    if bits not in (8, 16):
        raise UserError(f"--bits {bits}: use 8 or 16")
    img = read_image(exemplar)
    cfg = SynthConfig(
        size=check_size(size) if size else img.shape[:2],
        iters=iters,
        lr=lr,
        seed=seed,
        periodic=periodic,
        device=device,
        ot=OTConfig(patch=patch, scales=scales),
    )
    check_sizes(img.shape[:2], cfg.size, cfg.ot)
    bar = tqdm(total=iters, desc="synth", unit="it", dynamic_ncols=True)

    def on_step(it: int, image, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(ot=f"{loss:.4f}")
        if snapshot_every and it % snapshot_every == 0 and it < iters:
            from train.synth import to_image

            snap = output.with_name(f"{output.stem}.{it:04d}{output.suffix}")
            write_image(snap, to_image(image), bits)

    try:
        result = synthesize(img, cfg, on_step)
    finally:
        bar.close()
    write_image(output, result, bits)
    typer.echo(f"wrote {output} ({cfg.size[0]}x{cfg.size[1]}, {img.shape[2]} channels)")


@app.command()
def evaluate(
    exemplar: Annotated[Path, typer.Argument(help="The example texture.")],
    images: Annotated[
        list[Path] | None, typer.Argument(help="Images to score against the exemplar.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON only.")
    ] = False,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines",
            help="Also score the exemplar against itself (independent draws), a sigma=1 blur "
            "and a x0.7-contrast copy of it: the scale to read the other rows against.",
        ),
    ] = False,
    seeds: Annotated[int, typer.Option(help="Independent patch draws averaged over.")] = 3,
    patches: Annotated[int, typer.Option(help="Random patches per draw and level.")] = 2000,
    scales: Annotated[int, typer.Option(help="Pyramid levels.")] = 4,
    seed: Seed = 0,
) -> None:
    """Score images against an exemplar: debiased patch OT, colour W1, spectrum (EVALUATE.md)."""
    import json

    from tilegen.evaluate import Evaluator, baseline_images, table_header, table_row
    from tilegen.imageio import read_image

    images = images or []
    if not images and not baselines:
        raise UserError("give at least one IMAGE to score, or --baselines")
    if seeds < 1 or patches < 1 or scales < 1:
        raise UserError("--seeds, --patches and --scales must be positive")
    ex = read_image(exemplar)
    rows = [(str(p), "image", read_image(p)) for p in images]  # every file read before the work
    if baselines:
        rows.append(("exemplar (self)", "self", ex))
        names = {"blur_sigma1": "blur sigma=1", "contrast_0.7": "contrast x0.7"}
        rows += [(names[k], "baseline", v) for k, v in baseline_images(ex).items()]
    score = Evaluator(ex, scales=scales, n=patches, seeds=seeds, seed=seed)
    width = max(len("image"), *(len(r[0]) for r in rows))
    if not json_out:
        h, w, c = ex.shape
        typer.echo(f"exemplar {exemplar} ({h}x{w}, {c} channels); {scales} scales of 4x4 patches,")
        typer.echo(f"{patches} patches x {seeds} draws, seed {seed}")
        typer.echo(table_header(width))
    results, notes = [], []
    for i, (name, kind, img) in enumerate(rows):
        r = score(img, name)
        notes += r["notes"]
        results.append({"name": name, "kind": kind, **r})
        if not json_out:
            if kind != "image" and i > 0 and rows[i - 1][1] == "image":
                typer.echo("-" * len(table_header(width)))
            typer.echo(table_row(name, r, width))
    if json_out:
        settings = {"scales": scales, "patch": 4, "patches": patches, "seeds": seeds, "seed": seed}
        doc = {"exemplar": str(exemplar), "settings": settings, "results": results}
        typer.echo(json.dumps(doc, indent=2))
    else:
        for note in dict.fromkeys(notes):
            typer.echo(f"note: {note}")


# --- generate, tiles (the torch-free tiler) ---------------------------------------------------


def _default_model() -> Path:
    import tilegen

    return Path(tilegen.__file__).resolve().parent / "assets" / "default.onnx"


@app.command()
def generate(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="A tilegen .onnx model (default: the bundled tilegen/assets/default.onnx)."
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="OUT.zarr (OME-Zarr, any size), or OUT.png / OUT.tif."),
    ] = ...,
    size: Annotated[tuple[int, int], typer.Option(help="Output height and width in pixels.")] = ...,
    seed: Seed = 0,
    periodic: Annotated[
        bool,
        typer.Option(
            help="Make the output tile seamlessly (sides multiples of the model's stride)."
        ),
    ] = False,
    chunk: Annotated[int, typer.Option(help="Zarr chunk side (pixels).")] = 512,
    shard: Annotated[
        int | None,
        typer.Option(
            help="Zarr shard side, a multiple of --chunk; one task writes one whole shard "
            "(default: 2048, smaller for small images so every core gets work)."
        ),
    ] = None,
    dtype: Annotated[str, typer.Option(help="uint8 or uint16.")] = "uint8",
    codec: Annotated[str, typer.Option(help="zstd or blosc.")] = "zstd",
    pyramid: Annotated[
        bool, typer.Option(help="Write OME-NGFF multiscale levels (2x2 mean).")
    ] = True,
    scheduler: Annotated[
        str,
        typer.Option(
            help="threads, processes, local (a dask.distributed LocalCluster of --workers x "
            "--threads) or the address of a running dask.distributed scheduler (tcp://host:8786; "
            "workers must see the same file system); default: threads, local with --workers."
        ),
    ] = "",
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (processes, local).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Dask threads (threads) or threads per worker (local).")
    ] = None,
    device: Device = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing output (never a path that is not tilegen's).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Paint a texture of any size from an .onnx model, tile by tile, into OME-Zarr (or PNG/TIFF).

    Rerunning an interrupted command finishes only the missing shards; the result has the same
    bytes as an uninterrupted run.
    """
    from tilegen.tiler import GenerateConfig, generate_image
    from tilegen.tiler import generate as run_generate

    if model is None:
        model = _default_model()
        if not model.is_file():
            raise UserError(
                f"no MODEL given and the bundled default model ({model}) is not installed: "
                "pass a tilegen .onnx file"
            )
    check_size(size)
    if dtype not in ("uint8", "uint16"):
        raise UserError(f"--dtype {dtype}: use uint8 or uint16")
    for name, value in (("--workers", workers), ("--threads", threads), ("--chunk", chunk)):
        if value is not None and value < 1:
            raise UserError(f"{name} {value}: must be positive")
    sched = scheduler or ("local" if workers else "threads")
    suffix = output.suffix.lower()
    cfg = GenerateConfig(
        model=str(model),
        output=str(output),
        size=size,
        seed=seed,
        period=size if periodic else None,
        dtype=dtype,
        chunk=chunk,
        shard=shard,
        codec=codec,
        pyramid=pyramid,
        scheduler=sched,
        workers=workers,
        threads=threads,
        device=device,
        overwrite=overwrite,
        progress=progress,
    )
    if suffix in (".png", ".tif", ".tiff"):
        check_output(output, overwrite)
        s = generate_image(cfg)
        what = f"{size[0]}x{size[1]}"
    elif suffix == ".zarr" or output.is_dir():
        s = run_generate(cfg)
        if s.state == "complete" and s.shards_written == 0:
            typer.echo(f"{output} is already complete ({s.shards_total} shards): nothing to do")
            return
        what = f"{size[0]}x{size[1]}, {s.levels} level{'s' if s.levels > 1 else ''}, OME-NGFF 0.5"
    else:
        raise UserError(f"-o {output}: use a .zarr store, or .png / .tif for a single image")
    used = ", ".join(sorted(s.providers)) or "none"
    typer.echo(
        f"wrote {output} ({what}): {s.megapixels:.1f} MP in {s.seconds:.1f} s "
        f"({s.mp_per_s:.2f} MP/s), onnxruntime provider {used}"
    )


@app.command()
def tiles(
    store: Annotated[Path, typer.Argument(help="A store written by 'tilegen generate'.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the tiles.")],
    tile: Annotated[
        int | None, typer.Option(help="Tile side in pixels [default: 2048; xyz/dzi: 256].")
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="png, tif or jpg: numbered tiles; xyz or dzi: a web-map pyramid (Leaflet, "
            "OpenLayers, OpenSeadragon, 'tilegen view').",
        ),
    ] = "png",
    image: Annotated[str, typer.Option(help="xyz/dzi tiles: png or jpg.")] = "png",
    bits: Annotated[
        int | None, typer.Option(help="8 or 16 bits per channel (default: the store's).")
    ] = None,
    region: Annotated[
        tuple[int, int, int, int] | None,
        typer.Option(help="Y X H W: cut only this region (default: everything)."),
    ] = None,
    level: Annotated[int, typer.Option(help="Pyramid level (0: full resolution).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace tiles already in the folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Cut a store (or a region of it) into numbered tiles for engines and map tools, or into a
    web-map pyramid.

    Numbered: DIR/tile_r{row}_c{col}.png, row-major from the top-left, zero-padded, edge tiles
    smaller; DIR/tiles.json maps each file to its pixels. xyz: DIR/{z}/{x}/{y}.png and
    DIR/tilejson.json; dzi: DIR/image.dzi and DIR/image_files/. Web pyramids come from the
    store's own pyramid, stream, and resume when rerun.
    """
    from tilegen.webtiles import WEB_FORMATS, write_web_tiles

    if format in WEB_FORMATS:
        if region or level or bits:
            raise UserError(f"--region, --level and --bits are for numbered tiles, not {format}")
        f = write_web_tiles(store, output, format, image, tile or 256, overwrite, progress=progress)
        typer.echo(
            f"wrote {f['written']} {format} tiles ({f['kept']} kept from an earlier run), "
            f"{f['levels']} levels of {f['tile']}-pixel {image} tiles, to {output}"
        )
        return
    from tilegen.tiles import cut_tiles

    index = cut_tiles(
        store, output, tile or 2048, format, bits, region, level, overwrite, progress=progress
    )
    typer.echo(
        f"wrote {index['rows'] * index['cols']} tiles ({index['rows']} rows x {index['cols']} "
        f"columns, {index['bits']}-bit {format}) to {output}"
    )


@app.command()
def view(
    path: Annotated[
        Path,
        typer.Argument(help="A store, an xyz/dzi folder, or a self-contained .onnx model."),
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
) -> None:
    """Show a store or a tile folder as a zoomable map, or paint a model in the browser.

    Serves a local page on 127.0.0.1 until Ctrl-C. A model must be the dynamic self-contained
    form ('tilegen export MODEL -o WEB.onnx --self-contained'); its page needs onnxruntime-web
    ('npm ci --prefix tilegen/web').
    """
    from tilegen.view import view as serve

    serve(path, port, open_browser, log=typer.echo)


# --- train, sample (the generator, Alg. 2) ----------------------------------------------------


def _settings_help(what: str, default) -> str:
    return f"{what} (default {default}; with --resume: the checkpoint's)."


@app.command("train")
def train_cmd(
    exemplar: Annotated[
        Path, typer.Argument(help="Example texture (PNG, JPEG or TIFF; 8/16-bit).")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the trained model (.pt).")
    ],
    iters: Annotated[
        int | None,
        typer.Option(
            help="Training iterations (default 5000 on a GPU, 1500 on the CPU; with --resume: "
            "the checkpoint's).",
            show_default=False,
        ),
    ] = None,
    scales: Annotated[
        int | None, typer.Option(help=_settings_help("Pyramid levels of the loss", 5))
    ] = None,
    targets: Annotated[
        int | None,
        typer.Option(
            help=_settings_help(
                "Exemplar patches per scale the loss matches (J); more gives finer detail "
                "and slower iterations, e.g. 8000",
                2000,
            )
        ),
    ] = None,
    width: Annotated[
        int | None, typer.Option(help=_settings_help("Channels of the generator", 16))
    ] = None,
    levels: Annotated[
        int | None,
        typer.Option(help=_settings_help("Noise scales of the generator (stride 2^(L-1))", 6)),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help=_settings_help(
                "Side of the training crop in pixels", "256 on a GPU, 128 on the CPU"
            )
        ),
    ] = None,
    batch: Annotated[
        int | None, typer.Option(help=_settings_help("Noise samples per iteration", 1))
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate (default 0.01).", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(help=_settings_help("Random seed", 0))] = None,
    projection: Annotated[
        int | None,
        typer.Option(
            help=_settings_help(
                "Exemplar patches of the final patch projection, which paints the exemplar's "
                "own fine detail over the network's output (0: none)",
                2000,
            )
        ),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help=_settings_help(
                "Keep a moving average of the weights with this decay, e.g. 0.995, not the "
                "last ones",
                0,
            )
        ),
    ] = None,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_every: Annotated[
        int,
        typer.Option(help="Write OUTPUT.ckpt every N iterations and at the end (0: never)."),
    ] = 100,
    resume: Annotated[
        bool, typer.Option(help="Continue the run whose checkpoint is OUTPUT.ckpt, exactly.")
    ] = False,
    preview_every: Annotated[
        int,
        typer.Option(help="Also write OUTPUT.preview.NNNN.png every N iterations (0: never)."),
    ] = 0,
    check: Annotated[
        bool,
        typer.Option(help="Compare inference-mode and training-mode samples at the end."),
    ] = True,
    overwrite: Overwrite = False,
) -> None:
    """Learn a generator of the exemplar's texture (Alg. 2); writes OUTPUT and a preview PNG."""
    from dataclasses import replace

    from tqdm import tqdm

    from tilegen.imageio import read_image, write_image
    from train.checkpoint import load_checkpoint, save_generator
    from train.device import use_threads
    from train.synth import to_image
    from train.train_generator import (
        TrainConfig,
        check_config,
        check_modes,
        check_resume,
        default_schedule,
        preview_image,
        sample,
        train,
    )

    ckpt = output.with_name(output.name + ".ckpt")
    preview = output.with_name(output.stem + ".preview.png")
    check_output(output, overwrite)
    use_threads(threads)
    for opt, v in (("--checkpoint-every", checkpoint_every), ("--preview-every", preview_every)):
        if v < 0:
            raise UserError(f"{opt} must be 0 (never) or positive")
    img = read_image(exemplar)
    if not resume:  # the device's schedule fills what the user left out
        default_size, default_iters = default_schedule(device)
        size = default_size if size is None else size
        iters = default_iters if iters is None else iters
    given = dict(size=size, batch=batch, seed=seed, ema=ema, projection=projection)
    given = {k: v for k, v in given.items() if v is not None}
    gen_given = {k: v for k, v in dict(levels=levels, width=width).items() if v is not None}
    ot_given = {k: v for k, v in dict(scales=scales, n_target=targets).items() if v is not None}
    state = None
    if resume:
        if not ckpt.is_file():
            raise UserError(f"--resume: there is no checkpoint {ckpt} to continue")
        state = load_checkpoint(ckpt)
        cfg = TrainConfig.from_dict(state["config"])
    else:
        if ckpt.exists() and not overwrite:
            raise UserError(
                f"{ckpt} exists (an unfinished run?): pass --resume to continue it, or "
                "--overwrite to start over"
            )
        cfg = TrainConfig()
    cfg = replace(cfg, **given, gen=replace(cfg.gen, **gen_given), ot=replace(cfg.ot, **ot_given))
    cfg = replace(
        cfg,
        iters=iters if iters is not None else cfg.iters,
        lr=lr if lr is not None else cfg.lr,
        device=device,
    )
    check_config(img.shape[:2], cfg)
    if state is not None:
        check_resume(state, cfg, img)  # before the progress bar: a refusal is one line
    start = state["iteration"] if state else 0
    bar = tqdm(total=cfg.iters, initial=start, desc="train", unit="it", dynamic_ncols=True)
    smooth: list[float] = []

    def on_step(it: int, loss: float, image) -> None:
        smooth.append(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{sum(smooth[-20:]) / len(smooth[-20:]):.4f}")
        if preview_every and it % preview_every == 0 and it < cfg.iters:
            snap = output.with_name(f"{output.stem}.preview.{it:04d}.png")
            write_image(snap, preview_image(img, to_image(image[:1])))

    try:
        result = train(
            img,
            cfg,
            checkpoint=ckpt if checkpoint_every else None,
            checkpoint_every=checkpoint_every,
            resume=state,
            on_step=on_step,
        )
    except KeyboardInterrupt:
        try:  # what is on disk, whenever the Ctrl-C came
            kept = load_checkpoint(ckpt)["iteration"] if checkpoint_every else 0
        except UserError:
            kept = 0
        if not kept:
            raise Interrupted(f"interrupted at iteration {bar.n}, before any checkpoint")
        raise Interrupted(
            f"interrupted at iteration {bar.n}; {ckpt} holds iteration {kept}: rerun the same "
            "command with --resume to continue exactly"
        )
    finally:
        bar.close()
    if check:
        result.meta["check"] = check_modes(img, result)
    save_generator(output, result.model, result.meta)
    side = min(512, max(img.shape[0], result.model.arch.stride))
    write_image(preview, preview_image(img, sample(result.model.cpu(), side, side, cfg.seed)))
    n = sum(p.numel() for p in result.model.parameters())
    typer.echo(
        f"wrote {output} ({n} parameters, stride {result.model.arch.stride}, "
        f"final loss {result.meta['final_loss']:.4f}) and {preview} (sample | exemplar)"
    )
    if check:
        c = result.meta["check"]
        typer.echo(
            f"patch-OT distance of {c['size']}x{c['size']} samples: inference mode "
            f"{c['eval_mode']:.5f}, training mode {c['train_mode']:.5f}"
            + (f", with the patch projection {c['projected']:.5f}" if "projected" in c else "")
        )
    if checkpoint_every:
        typer.echo(f"checkpoint {ckpt} kept: --resume --iters N trains further")


@app.command("sample")
def sample_cmd(
    model: Annotated[Path, typer.Argument(help="A trained model (.pt from 'tilegen train').")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image to write.")],
    size: Annotated[tuple[int, int], typer.Option(help="Height and width in pixels.")] = (
        512,
        512,
    ),
    seed: Seed = 0,
    periodic: Annotated[
        bool,
        typer.Option(help="Tile seamlessly (period = size; a multiple of the model's stride)."),
    ] = False,
    device: Device = "auto",
    threads: Threads = None,
    bits: Annotated[int, typer.Option(help="8 or 16 bits per channel (16 needs .png/.tif).")] = 8,
    overwrite: Overwrite = False,
) -> None:
    """Paint a texture of exactly --size pixels with a trained generator (a quick look)."""
    from tilegen.imageio import write_image
    from train.checkpoint import load_generator
    from train.device import pick_device, use_threads
    from train.train_generator import sample

    check_output(output, overwrite)
    use_threads(threads)
    check_size(size)
    if bits not in (8, 16):
        raise UserError("--bits must be 8 or 16")
    gen, _ = load_generator(model, pick_device(device))
    img = sample(gen, size[0], size[1], seed, periodic)
    write_image(output, img, bits)
    kind = " (periodic)" if periodic else ""
    typer.echo(f"wrote {output} ({size[0]}x{size[1]}{kind}, seed {seed})")


# --- export, inspect (the ONNX contract: export/, tilegen/inspect.py, docs/FORMAT.md) ----------


def _parse_period(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(v) for v in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise UserError(f"--period {text}: give P or PYxPX, positive integers")
    return (vals[0], vals[-1])


@app.command("export")
def export_cmd(
    model: Annotated[
        Path,
        typer.Argument(
            help="A trained model (.pt from 'tilegen train'), or a windowed .onnx to wrap into "
            "the --self-contained form (no torch needed)."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .onnx file to write.")],
    self_contained: Annotated[
        bool,
        typer.Option(
            "--self-contained",
            help="Compute the noise inside the graph: inputs seed, y0, x0, height, width, "
            "period_y, period_x (int64 scalars); with --tile, inputs seed, y0, x0 and a fixed "
            "tile. Default: the windowed form the tiler reads.",
        ),
    ] = False,
    tile: Annotated[
        tuple[int, int] | None,
        typer.Option(
            help="Fix the self-contained form's tile height and width (default: inputs).",
            metavar="H W",
        ),
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="With --tile: make the texture periodic with period P (or PYxPX) output "
            "pixels, multiples of the model's stride.",
            metavar="P",
        ),
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    overwrite: Overwrite = False,
) -> None:
    """Export a trained generator to ONE self-describing .onnx file and verify it against torch.

    The file is written only when onnxruntime matches torch within 1e-4 (and, for
    --self-contained, the tiler's tiles within 1e-6); otherwise exit code 2. MODEL.onnx.json
    beside it holds the contract for runtimes that cannot read ONNX metadata.
    """
    from dataclasses import replace

    check_output(output, overwrite)
    if (tile or period) and not self_contained:
        raise UserError("--tile and --period belong to --self-contained")
    if period and tile is None:
        raise UserError("--period needs --tile H W: the dynamic form takes period_y, period_x")
    if opset < 18:
        raise UserError(f"--opset {opset}: tilegen exports opset 18 or newer")
    tile = check_size(tile) if tile else None
    if model.suffix.lower() == ".onnx":
        from export.onnx_export import wrap_verified

        if not self_contained:
            raise UserError(f"{model} is already an .onnx file: add --self-contained to wrap it")
        proto, report = wrap_verified(
            model, output, tile, _parse_period(period), overwrite=overwrite
        )
        typer.echo(
            f"wrote {output} (self-contained, {output.stat().st_size:,} bytes) and "
            f"{output}.json; tiles vs the tiler's, max |diff| {report.max_diff:.3g}"
        )
        return
    from export.onnx_export import export_verified
    from tilegen.contract import ModelInfo
    from train.checkpoint import load_generator

    gen, meta = load_generator(model, "cpu")
    cfg = gen.cfg
    extra = ("iterations", "final_loss", "exemplar_shape")
    training = {**meta.get("training", {}), **{k: meta[k] for k in extra if k in meta}}
    training["generator"] = cfg.to_dict()
    info = ModelInfo(
        arch=cfg.arch,
        noise_channels=cfg.noise_channels,
        out_channels=cfg.out_channels,
        channels=meta.get("channels") or {1: "L", 3: "RGB", 4: "RGBA"}.get(cfg.out_channels, ""),
        exemplar_sha256=meta.get("exemplar_sha256", ""),
        training=training,
    )
    if self_contained:
        info = replace(info, form="self-contained", tile=tile, period=_parse_period(period))
    proto, report = export_verified(gen, info, output, opset=opset, overwrite=overwrite)
    size = output.stat().st_size
    typer.echo(
        f"wrote {output} ({info.form}, {size:,} bytes, opset {opset}, IR {proto.ir_version}) "
        f"and {output}.json; onnxruntime vs torch, max |diff| {report.max_diff:.3g}:"
    )
    for line in report.lines():
        typer.echo(line)


@app.command("inspect")
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="A tilegen .onnx file.")],
    tile: Annotated[
        tuple[int, int, int, int] | None,
        typer.Option(
            help="Output tile origin and size: show the noise windows it needs "
            "[default: 0 0 1024 1024, or the self-contained tile].",
            metavar="Y X H W",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Show an .onnx model's metadata, parameters, cost per megapixel and noise windows.

    Needs only the onnx package (no torch, no onnxruntime).
    """
    import json

    from tilegen.inspect import describe, format_text, load

    d = describe(load(model), tile)
    typer.echo(json.dumps(d, indent=2) if json_out else format_text(d))


# --- inpaint, blend (single-image optimisations on the patch-OT loss: train/inpaint.py, blend.py)


def _read_mask(path: Path, image_hw: tuple[int, int], image_name: Path):
    """A mask file as (H, W) bool, True = missing: white, its gray level above 0.5."""
    from tilegen.imageio import read_image

    m = read_image(path)
    colour = m[:, :, :3] if m.shape[2] >= 3 else m[:, :, :1]  # leave out alpha
    mask = colour.mean(axis=2) > 0.5
    if mask.shape != tuple(image_hw):
        raise UserError(
            f"the mask {path} is {mask.shape[0]}x{mask.shape[1]} but {image_name} is "
            f"{image_hw[0]}x{image_hw[1]}: the mask must have the image's size"
        )
    return mask


def _box_mask(box: tuple[int, int, int, int], image_hw: tuple[int, int]):
    import numpy as np

    y, x, h, w = box
    if h < 1 or w < 1 or y < 0 or x < 0 or y + h > image_hw[0] or x + w > image_hw[1]:
        raise UserError(
            f"--box {y} {x} {h} {w} must have positive height and width and lie inside the "
            f"{image_hw[0]}x{image_hw[1]} image"
        )
    mask = np.zeros(image_hw, dtype=bool)
    mask[y : y + h, x : x + w] = True
    return mask


def _exact_bits(img) -> int:
    """8 when every value is an 8-bit level (so writing 8 bits changes no pixel), else 16."""
    import numpy as np

    from tilegen.imageio import quantize

    return 8 if np.array_equal(quantize(img, 8).astype(np.float32) / 255.0, img) else 16


@app.command()
def inpaint(
    image: Annotated[Path, typer.Argument(help="The texture photo with a hole to fill.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the result.")],
    mask: Annotated[
        Path | None,
        typer.Option(help="Mask image of the same size (any format): white = missing."),
    ] = None,
    box: Annotated[
        tuple[int, int, int, int] | None,
        typer.Option(help="The hole as a rectangle instead of a mask: top, left, height, width."),
    ] = None,
    iters: Iters = 500,
    scales: Scales = 4,
    patch: Patch = 4,
    lr: PixelLr = 0.01,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
    bits: Annotated[
        int | None,
        typer.Option(help="8 or 16 bits per channel (default: 8 if the image is 8-bit, else 16)."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Fill a hole with the texture around it; known pixels are kept exactly.

    The hole's patches follow the known part's patch distribution. Write PNG or TIFF: JPEG
    would change the known pixels.
    """
    from tqdm import tqdm

    from tilegen.imageio import read_image, write_image
    from train.device import use_threads
    from train.inpaint import InpaintConfig, check_mask
    from train.inpaint import inpaint as run_inpaint
    from train.patch_ot import OTConfig

    check_output(output, overwrite)
    use_threads(threads)
    if (mask is None) == (box is None):
        raise UserError("give the hole as exactly one of --mask MASK or --box Y X H W")
    check_optimiser(iters, scales, patch, lr)
    if bits not in (None, 8, 16):
        raise UserError(f"--bits {bits}: use 8 or 16")
    img = read_image(image)
    hw = img.shape[:2]
    hole = _read_mask(mask, hw, image) if mask is not None else _box_mask(box, hw)
    check_mask(hw, hole)
    cfg = InpaintConfig(
        iters=iters, lr=lr, seed=seed, device=device, ot=OTConfig(patch=patch, scales=scales)
    )
    bar = tqdm(total=iters, desc="inpaint", unit="it", dynamic_ncols=True)

    def on_step(it: int, current, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(ot=f"{loss:.4f}")

    try:
        result = run_inpaint(img, hole, cfg, on_step)
    finally:
        bar.close()
    write_image(output, result, bits or _exact_bits(img))
    typer.echo(f"wrote {output} ({int(hole.sum())} of {hw[0] * hw[1]} pixels filled)")


def _parse_weights(items: list[str]) -> list[float]:
    """--weights as '0.2,0.3,0.5', '0.2 0.3 0.5' or repeated options."""
    out = []
    for item in items:
        for tok in item.replace(",", " ").split():
            try:
                out.append(float(tok))
            except ValueError:
                raise UserError(f"--weights: {tok!r} is not a number")
    return out


@app.command()
def blend(
    exemplars: Annotated[
        list[Path], typer.Argument(help="Two or more example textures: A B [C ...].")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the result.")],
    size: Annotated[tuple[int, int], typer.Option(help="Output height and width.")],
    weight: Annotated[
        float | None,
        typer.Option(help="B's share with two exemplars: 0 gives A's texture, 1 B's [0.5]."),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            help="One weight per exemplar, as one list: --weights 1,2,1 (normalised to sum 1)."
        ),
    ] = None,
    ramp: Annotated[
        str | None,
        typer.Option(
            help="horizontal or vertical: the weight moves smoothly from A to B (to C ...) "
            "across the image, left to right or top to bottom. Not tileable."
        ),
    ] = None,
    iters: Iters = 500,
    scales: Scales = 4,
    patch: Patch = 4,
    lr: PixelLr = 0.01,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
    periodic: Annotated[
        bool | None,
        typer.Option(help="Make the output tile seamlessly (default: yes; no with --ramp)."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Paint a texture between two or more exemplars (a patch-OT barycenter)."""
    from tqdm import tqdm

    from tilegen.imageio import read_image, write_image
    from train.blend import RAMPS, BlendConfig
    from train.blend import blend as run_blend
    from train.device import use_threads
    from train.patch_ot import OTConfig

    check_output(output, overwrite)
    use_threads(threads)
    for p in exemplars:
        if not p.exists():
            try:
                float(str(p))
            except ValueError:
                continue  # read_image says it is missing
            raise UserError(
                f"{p} is not an image: give the weights as one list, e.g. --weights 0.2,0.3,0.5"
            )
    if len(exemplars) < 2:
        raise UserError("blend needs at least two exemplars: A.png B.png [C.png ...]")
    check_optimiser(iters, scales, patch, lr)
    if ramp is not None and ramp not in RAMPS:
        raise UserError(f"--ramp {ramp}: use horizontal or vertical")
    if weight is not None and weights:
        raise UserError("give --weight W (two exemplars) or --weights w1 w2 ..., not both")
    if ramp is not None and (weight is not None or weights):
        raise UserError("--ramp sets the weights from the position: drop --weight/--weights")
    if ramp is not None and periodic:
        raise UserError("a --ramp cannot tile (A's edge would meet B's): drop --periodic")
    w = None
    if weight is not None:
        if len(exemplars) != 2:
            raise UserError(
                f"--weight is B's share of two exemplars; for {len(exemplars)} give --weights"
            )
        if not 0.0 <= weight <= 1.0:
            raise UserError(f"--weight {weight}: B's share must lie in [0, 1]")
        w = [1.0 - weight, weight]
    elif weights:
        w = _parse_weights(weights)
        if len(w) != len(exemplars):
            raise UserError(f"--weights has {len(w)} values for {len(exemplars)} exemplars")
    imgs = [read_image(p) for p in exemplars]
    cfg = BlendConfig(
        size=check_size(size),
        iters=iters,
        lr=lr,
        seed=seed,
        periodic=periodic,
        device=device,
        ot=OTConfig(patch=patch, scales=scales),
    )
    bar = tqdm(total=iters, desc="blend", unit="it", dynamic_ncols=True)

    def on_step(it: int, current, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(ot=f"{loss:.4f}")

    try:
        result = run_blend(imgs, w, cfg, ramp, on_step)
    finally:
        bar.close()
    write_image(output, result)
    typer.echo(f"wrote {output} ({size[0]}x{size[1]}, {imgs[0].shape[2]} channels)")


# --- entry point ------------------------------------------------------------------------------


def main() -> None:
    """Console entry point: expected failures become one line on stderr and exit code 2."""
    try:
        app()
    except Interrupted as e:
        print(f"tilegen: {e}", file=sys.stderr)
        sys.exit(130)
    except (UserError, ValueError, FloatingPointError) as e:
        print(f"tilegen: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("tilegen: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
