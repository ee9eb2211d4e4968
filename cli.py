"""tilegen's command line: one function per command, each options -> config -> one library call.

The configurations own the defaults, the checks and the work: train/jobs.py (synth, inpaint,
blend, train, sample), tilegen/tiler.py (generate), tilegen/evaluate.py (evaluate). Heavy
libraries (torch, onnxruntime, dask) are imported inside the commands, so `tilegen --help` is
quick and the tiling commands run where torch is not installed. Every failure is one line on
stderr (tilegen/commandline.py, tilegen/errors.py): exit code 2, or 130 for Ctrl-C, saying what
was kept and how to continue.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from tilegen import commandline as cl
from tilegen import memory, options
from tilegen.commandline import O
from tilegen.errors import UserError
from tilegen.evaluate import EvaluateJob
from tilegen.tiler import GenerateConfig
from train.jobs import BlendJob, InpaintJob, PixelJob, SampleJob, SynthJob, TrainJob

app = typer.Typer(
    help="Learn a texture from one example image with patch optimal transport, then paint "
    "seamless textures of any size.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs re-flow to the terminal width
)
command = cl.command_decorator(app)


@app.callback()
def _root() -> None:
    """tilegen: patch-OT texture synthesis. Run 'tilegen COMMAND --help' for a command's options."""


PIXEL = {k: f.default for k, f in PixelJob.__dataclass_fields__.items()}  # train/jobs.py's
NOT_WRITTEN = "{output} was not written; rerun the same command"
Exemplar = Annotated[
    Path | None,
    typer.Argument(
        help="Example texture (PNG, JPEG or TIFF; 8/16-bit), or a folder of a material's maps "
        "(albedo, normal, roughness, height, ao, metallic: ambientCG, 3dtextures or plain names; "
        "-o is then a folder, one file per map).",
        show_default=False,
    ),
]
# The shared output check by the name the export command uses.
check_output = options.output


def _pixel(kw: dict) -> dict:
    """The PixelJob settings among a command's options."""
    return {k: v for k, v in kw.items() if k in PIXEL}


def _material(kw: dict) -> dict:
    """The repeatable material options, as the jobs name them (_pixel passes --normal,
    --normal-out and --preview-lit)."""
    return {"maps": kw["map"] or [], "map_weights": kw["map_weight"] or []}


# --- synth, evaluate ----------------------------------------------------------------------------


@command(NOT_WRITTEN)
def synth(
    exemplar: Exemplar = None,
    output: cl.Output = ...,
    size: O(tuple[int, int] | None, "Output height and width (default: the exemplar's).") = None,
    iters: cl.Iters = PIXEL["iters"],
    scales: cl.Scales = PIXEL["scales"],
    patch: cl.Patch = PIXEL["patch"],
    lr: cl.PixelLr = PIXEL["lr"],
    seed: cl.Seed = 0,
    device: cl.Device = "auto",
    threads: cl.Threads = None,
    periodic: O(bool, "Make the output tile seamlessly.") = True,
    snapshot_every: O(int, "Write OUTPUT.NNNN.png every N iterations (0: never).") = 0,
    bits: cl.MaterialBits = None,
    overwrite: cl.Overwrite = False,
    max_memory: cl.MaxMemory = None,
    map: cl.Maps = None,
    normal: cl.Normal = None,
    normal_out: cl.NormalOut = None,
    map_weight: cl.MapWeights = None,
    preview_lit: cl.PreviewLit = None,
) -> None:  # fmt: skip
    """Synthesise a new image of the exemplar's texture by optimising its pixels (Alg. 1).

    A material (a folder of maps, or --map) is synthesised as one image of all its maps'
    channels and written as OUTPUT/albedo.png, OUTPUT/normal.png, ...
    """
    job = SynthJob(exemplar=exemplar, size=size, periodic=periodic, snapshot_every=snapshot_every,
                   bits=bits, **_pixel(locals()), **_material(locals()))  # fmt: skip
    typer.echo(job.run())


@command("no scores were kept; rerun the same command")
def evaluate(
    exemplar: Annotated[Path, typer.Argument(help="The example texture, or a material's folder "
                                                  "of maps.")],
    images: Annotated[list[Path] | None, typer.Argument(help="Images to score against it (for a "
                                                        "material: folders of maps).")] = None,
    json_out: O(bool, "Print machine-readable JSON only.", "--json") = False,
    baselines: O(bool, "Also score the exemplar against itself (independent draws), a sigma=1 "
                 "blur and a x0.7-contrast copy of it: the scale to read the other rows "
                 "against.", "--baselines") = False,
    pieces: O(int, "Also score N real pieces of the exemplar, cut at random places, the size of "
              "the first IMAGE, and print their median: what the texture itself scores at that "
              "size (docs/EVALUATE.md).") = EvaluateJob.pieces,
    seeds: O(int, "Independent patch draws averaged over.") = EvaluateJob.seeds,
    patches: O(int, "Random patches per draw and level.") = EvaluateJob.patches,
    scales: O(int, "Pyramid levels.") = EvaluateJob.scales,
    seed: cl.Seed = 0,
    max_memory: cl.MaxMemory = None,
    normal: cl.Normal = None,
) -> None:  # fmt: skip
    """Score images against an exemplar: debiased patch OT, colour W1, spectrum (EVALUATE.md).

    A material: every map scored alone against the exemplar's map, and the maps' consistency
    (normals against the height map's slopes; grey maps against each other where the exemplar
    shows a relation) beside the exemplar's own.
    """
    kw = {k: v for k, v in locals().items() if k != "images"}
    EvaluateJob(images=images or [], structure_scorer=_structure_scorer, **kw).run(typer.echo)


def _structure_scorer(exemplar, height: int, width: int, seed: int = 0):
    """evaluate's structure figure comes from train/ (torch), which tilegen does not import."""
    try:
        from train.structure import structure_scorer
    except ImportError:
        return "no structure figure: it needs torch and plenoptic (pip install 'tilegen[train]')"
    return structure_scorer(exemplar, height, width, seed)


# --- generate, tiles (the torch-free tiler) ---------------------------------------------------


def _default_model() -> Path:
    import tilegen

    return Path(tilegen.__file__).resolve().parent / "assets" / "default.onnx"


@command("rerun the same command to finish (a .zarr store resumes where it stopped)")
def generate(
    model: Annotated[Path | None, typer.Argument(
        help="A tilegen .onnx model (default: the bundled tilegen/assets/default.onnx).")] = None,
    output: O(Path, "OUT.zarr (OME-Zarr, any size), or OUT.png / OUT.tif.", "-o", "--output") = ...,
    size: O(tuple[int, int], "Output height and width in pixels.") = ...,
    seed: cl.Seed = 0,
    periodic: O(bool, "Make the output tile seamlessly (sides multiples of the model's "
                "stride).") = False,
    chunk: O(int, "Zarr chunk side (pixels).") = GenerateConfig.chunk,
    shard: O(int | None, "Zarr shard side, a multiple of --chunk; one task writes one whole "
             "shard (default: 2048, smaller for small images so every core gets work).") = None,
    dtype: O(str, "uint8 or uint16.") = GenerateConfig.dtype,
    codec: O(str, "zstd or blosc.") = GenerateConfig.codec,
    pyramid: O(bool, "Write OME-NGFF multiscale levels (2x2 mean).") = True,
    scheduler: O(str, "threads, processes, local (a dask.distributed LocalCluster of --workers "
                 "x --threads) or the address of a running dask.distributed scheduler "
                 "(tcp://host:8786; workers must see the same file system); default: threads, "
                 "local with --workers.") = "",
    connect_timeout: O(float, "Seconds to reach a dask.distributed scheduler (its address as "
                       "--scheduler) before giving up.") = GenerateConfig.connect_timeout,
    workers: O(int | None, "Worker processes (processes, local).") = None,
    threads: O(int | None, "Dask threads (threads) or threads per worker (local).") = None,
    device: cl.Device = "auto",
    overwrite: O(bool, "Replace an existing output (never a path that is not tilegen's).") = False,
    progress: cl.Progress = True,
    max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Paint a texture of any size from an .onnx model, tile by tile, into OME-Zarr (or PNG/TIFF).

    Rerunning an interrupted command finishes only the missing shards; the result has the same
    bytes as an uninterrupted run. A material model writes a .zarr store whose channels are
    labelled (albedo.r, ..., normal.x, ..., height), normals unit length; 'tilegen tiles' cuts
    it into one file per map.
    """
    from tilegen.tiler import run

    if model is None:
        model = _default_model()
        if not model.is_file():
            raise UserError(
                f"no MODEL given and the bundled default model ({model}) is not installed: "
                "pass a tilegen .onnx file"
            )
    cfg = GenerateConfig(
        model=str(model), output=str(output), size=size, seed=seed, chunk=chunk, shard=shard,
        period=size if periodic else None, dtype=dtype, codec=codec, pyramid=pyramid,
        scheduler=scheduler or ("local" if workers else "threads"), workers=workers,
        threads=threads, device=device, overwrite=overwrite, progress=progress,
        max_memory=max_memory, connect_timeout=connect_timeout,
    )  # fmt: skip
    typer.echo(run(cfg))


@command("rerun the same command to finish (a .zarr store resumes where it stopped)")
def world(
    layout: Annotated[Path, typer.Argument(help="The layout: a PNG/TIFF whose colours (or "
                                           "palette indices, or grey values) say which model "
                                           "paints where.")],
    label: O(list[str], "COLOUR=MODEL.onnx ('#3a7d2c=grass.onnx'), or VALUE=MODEL.onnx for a "
             "palette index or grey value; repeat for every label of the layout.", "--label",
             metavar="KEY=MODEL") = ...,
    output: O(Path, "OUT.zarr (OME-Zarr, any size), or OUT.png / OUT.tif.", "-o", "--output") = ...,
    cell: O(int | None, "Output pixels per layout pixel (the size follows).") = None,
    size: O(tuple[int, int] | None, "Output height and width instead of --cell.") = None,
    blend: O(float, "Width in pixels of the transitions between labels (at most 1.25x the "
             "cell).") = 32.0,
    mix: O(str, "How models mix in a transition: auto (height for materials with a height map, "
           "else variance), variance (keeps the contrast), linear, height.") = "auto",
    seed: cl.Seed = 0,
    periodic: O(bool, "Make the world tile seamlessly (the layout wraps; sides multiples of the "
                "models' stride).") = False,
    shard: O(int | None, "Zarr shard side, a multiple of 512 (default: as generate).") = None,
    dtype: O(str, "uint8 or uint16.") = GenerateConfig.dtype,
    scheduler: O(str, "threads, processes, local or a dask.distributed address (as "
                 "generate).") = "",
    workers: O(int | None, "Worker processes (processes, local).") = None,
    threads: O(int | None, "Dask threads (threads) or threads per worker (local).") = None,
    device: cl.Device = "auto",
    overwrite: O(bool, "Replace an existing output (never a path that is not tilegen's).") = False,
    progress: cl.Progress = True,
    max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Paint a world: one model per label of a layout, with natural transitions, tile by tile.

    Boundaries follow the layout smoothly upsampled and displaced by seeded noise, so they are
    curved and irregular, never the layout's cell edges; inside a transition (--blend pixels
    wide) the models mix (--mix). Each window evaluates only the models whose labels reach it.
    Everything `generate` guarantees holds: exact tiles, --periodic, resume by rerunning; the
    store records the layout, the legend and the models with their hashes.
    """
    from tilegen.tiler import run
    from tilegen.world import plan_world

    memory.set_limit(max_memory)
    spec = plan_world(str(layout), label, cell, size, blend, mix, periodic)
    cfg = GenerateConfig(
        model=spec.models[0], output=str(output), size=spec.size, seed=seed, shard=shard,
        period=spec.size if periodic else None, dtype=dtype,
        scheduler=scheduler or ("local" if workers else "threads"), workers=workers,
        threads=threads, device=device, overwrite=overwrite, progress=progress,
        max_memory=max_memory, world=spec,
    )  # fmt: skip
    typer.echo(run(cfg))


@command("the tiles in {output} are incomplete; rerun the same command (--overwrite for numbered)")
def tiles(
    store: Annotated[Path, typer.Argument(help="A store written by 'tilegen generate'.")],
    output: O(Path, "Folder for the tiles (pmtiles: one file, OUT.pmtiles).", "-o", "--output"),
    tile: O(int | None, "Tile side in pixels [default: 2048; xyz/dzi/pmtiles: 256].") = None,
    format: O(str, "png, tif or jpg: numbered tiles; xyz or dzi: a web-map pyramid (Leaflet, "
              "OpenLayers, MapLibre, OpenSeadragon, 'tilegen view'); pmtiles: the xyz pyramid "
              "in one PMTiles file.", "--format") = "png",
    image: O(str, "xyz/dzi/pmtiles tiles: png or jpg.") = "png",
    bits: O(int | None, "8 or 16 bits per channel (default: the store's).") = None,
    region: O(tuple[int, int, int, int] | None, "Y X H W: cut only this region (default: "
              "everything).") = None,
    level: O(int, "Pyramid level (0: full resolution).") = 0,
    url: O(str | None, "xyz: the address the folder will be served at "
           "(https://host/path/): tilejson.json then lists absolute tile URLs, as TileJSON "
           "3.0.0 requires [default: relative to tilejson.json].", show_default=False) = None,
    overwrite: O(bool, "Replace tiles already in the folder.") = False,
    progress: cl.Progress = True,
    max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Cut a store (or a region of it) into numbered tiles for engines and map tools, or into a
    web-map pyramid.

    Numbered: DIR/tile_r{row}_c{col}.png, row-major from the top-left, zero-padded, edge tiles
    smaller; DIR/tiles.json maps each file to its pixels. A material's store: one file per map
    per tile (tile_r0_c0_albedo.png, tile_r0_c0_normal.png, ...), each map at its source depth
    where the store holds it (--bits: all at one). xyz: DIR/{z}/{x}/{y}.png and
    DIR/tilejson.json; dzi: DIR/image.dzi and DIR/image_files/. Web pyramids come from the
    store's own pyramid, stream, and resume when rerun. pmtiles: the xyz tiles in one
    OUT.pmtiles archive for static hosting (rerun from the start if interrupted).
    """
    from tilegen.webtiles import WEB_FORMATS, write_web_tiles

    memory.set_limit(max_memory)
    if url is not None and format != "xyz":
        raise UserError(f"--url is for --format xyz (the tile URLs in tilejson.json), not {format}")
    if format == "pmtiles" or output.suffix.lower() == ".pmtiles":
        return _pmtiles(store, output, format, image, tile, region or level or bits, overwrite,
                        progress)  # fmt: skip
    if format in WEB_FORMATS:
        if region or level or bits:
            raise UserError(f"--region, --level and --bits are for numbered tiles, not {format}")
        f = write_web_tiles(store, output, format, image, tile or 256, overwrite,
                            progress=progress, url=url)  # fmt: skip
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


def _pmtiles(store: Path, output: Path, format: str, image: str, tile: int | None,
             numbered_only: bool, overwrite: bool, progress: bool) -> None:  # fmt: skip
    """tiles --format pmtiles: the xyz pyramid in one OUT.pmtiles file."""
    from tilegen.pmtiles_out import write_pmtiles

    if format != "pmtiles":
        raise UserError(f"-o {output}: add --format pmtiles for a PMTiles archive")
    if numbered_only:
        raise UserError("--region, --level and --bits are for numbered tiles, not pmtiles")
    f = write_pmtiles(store, output, image, tile or 256, overwrite, progress=progress)
    typer.echo(
        f"wrote {f['tiles']} {image} tiles, {f['levels']} levels of {f['tile']} pixels, "
        f"to {output} ({f['bytes'] / 1e6:.1f} MB)"
    )


@command("the page was not served")
def view(
    path: Annotated[Path, typer.Argument(help="A store, an xyz/dzi folder, or a self-contained "
                                              ".onnx model.")],
    port: O(int, "Port (0: any free port).") = 8765,
    open_browser: O(bool, "Open the page in the default browser.", "--open") = False,
    host: O(str | None, "Serve on this address instead of 127.0.0.1 (e.g. 0.0.0.0): the page "
            "is then reachable from the network.", show_default=False) = None,
    cors: O(str | None, "Let pages served from ORIGIN (https://host:port) load the tiles.",
            metavar="ORIGIN", show_default=False) = None,
) -> None:  # fmt: skip
    """Show a store or a tile folder as a zoomable map, or paint a model in the browser.

    Serves a local page on 127.0.0.1 until Ctrl-C; a material's store shows its albedo. Only
    what the page shows is served (a store's tiles, an xyz/dzi pyramid's tiles, the model). A
    model must be the dynamic self-contained form ('tilegen export MODEL -o WEB.onnx
    --self-contained'); its page needs onnxruntime-web ('npm ci --prefix tilegen/web').
    """
    from tilegen.view import view as serve

    serve(path, port, open_browser, log=typer.echo, host=host, cors=cors)


# --- train, sample (the generator, Alg. 2) ----------------------------------------------------


def S(tp: type, what: str, default: object):
    """A training setting: None means the default, or with --resume the checkpoint's."""
    return O(tp | None, f"{what} (default {default}; with --resume: the checkpoint's).",
             show_default=False)  # fmt: skip


@command("rerun the same command with --resume to continue from the last checkpoint", "train")
def train_cmd(
    exemplar: Exemplar = None,
    output: O(Path, "Where to write the trained model (.pt).", "-o", "--output") = ...,
    iters: S(int, "Training iterations", "5000 on a GPU, 1500 on the CPU") = None,
    scales: S(int, "Pyramid levels of the loss", 5) = None,
    targets: S(int, "Exemplar patches per scale the loss matches (J); more gives finer detail "
               "and slower iterations, e.g. 8000", 2000) = None,
    width: S(int, "Channels of the generator", 16) = None,
    levels: S(int, "Noise scales of the generator (stride 2^(L-1))", 6) = None,
    size: S(int, "Side of the training crop in pixels", "256 on a GPU, 128 on the CPU") = None,
    batch: S(int, "Noise samples per iteration", 1) = None,
    lr: S(float, "Adam learning rate", 0.002) = None,
    seed: S(int, "Random seed", 0) = None,
    projection: S(int, "Exemplar patches of the final patch projection, which paints the "
                  "exemplar's own fine detail over the network's output (0: none)", 2000) = None,
    coarse: S(str, "Projections at coarser levels before the final one: auto (levels 2,1, "
              "kept when they bring held-out samples closer to the exemplar; auto:LEVELS tries "
              "others), off, or levels such as 2,1 kept regardless", "auto"
              ) = None,
    ema: S(float, "Keep a moving average of the weights with this decay, not the last ones "
           "(0: the last ones)", 0.99) = None,
    psi_steps: S(int, "Ascent steps on the potentials psi per iteration; more keep them closer "
                 "to the generator and cost time", 15) = None,
    device: cl.Device = "auto",
    threads: cl.Threads = None,
    checkpoint_every: O(int, "Write OUTPUT.ckpt every N iterations and at the end (0: "
                        "never).") = TrainJob.checkpoint_every,
    resume: O(bool, "Continue the run whose checkpoint is OUTPUT.ckpt, exactly.") = False,
    preview_every: O(int, "Also write OUTPUT.preview.NNNN.png every N iterations (0: never).") = 0,
    check: O(bool, "Compare inference-mode and training-mode samples at the end.") = True,
    overwrite: cl.Overwrite = False,
    max_memory: cl.MaxMemory = None,
    map: cl.Maps = None,
    normal: cl.Normal = None,
    map_weight: cl.MapWeights = None,
) -> None:  # fmt: skip
    """Learn a generator of the exemplar's texture (Alg. 2); writes OUTPUT and a preview PNG.

    A material (a folder of maps, or --map) trains one generator of all its maps; the model
    records which channels hold which map, and its preview shows the material lit.
    """
    given = {"--iters": iters, "--scales": scales, "--targets": targets, "--width": width,
             "--levels": levels, "--size": size, "--batch": batch, "--lr": lr, "--seed": seed,
             "--ema": ema, "--device": device, "--projection": projection,
             "--coarse": coarse, "--psi-steps": psi_steps}  # fmt: skip
    job = TrainJob(exemplar=exemplar, output=output, given=given, threads=threads,
                   checkpoint_every=checkpoint_every, resume=resume, preview_every=preview_every,
                   check_modes=check, overwrite=overwrite, max_memory=max_memory, maps=map or [],
                   normal=normal, map_weights=map_weight or [])  # fmt: skip
    for line in job.run():
        typer.echo(line)


@command(NOT_WRITTEN, "sample")
def sample_cmd(
    model: Annotated[Path, typer.Argument(help="A trained model (.pt from 'tilegen train').")],
    output: O(Path, "Image to write (a material model: a folder, one file per map).", "-o",
              "--output"),
    size: O(tuple[int, int], "Height and width in pixels.") = SampleJob.size,
    seed: cl.Seed = 0,
    periodic: O(bool, "Tile seamlessly (period = size; a multiple of the model's stride).") = False,
    device: cl.Device = "auto",
    threads: cl.Threads = None,
    bits: cl.MaterialBits = None,
    overwrite: cl.Overwrite = False,
    max_memory: cl.MaxMemory = None,
    normal_out: cl.NormalOut = None,
    preview_lit: cl.PreviewLit = None,
) -> None:  # fmt: skip
    """Paint a texture of exactly --size pixels with a trained generator (a quick look)."""
    typer.echo(SampleJob(**locals()).run())


# --- export, inspect (the ONNX contract: export/, tilegen/inspect.py, docs/FORMAT.md) ----------


@command("{output} was not written (it is written only after its checks pass); rerun", "export")
def export_cmd(
    model: Annotated[Path, typer.Argument(
        help="A trained model (.pt from 'tilegen train'), or a windowed .onnx to wrap into the "
        "--self-contained form (no torch needed).")],
    output: O(Path, "The .onnx file to write.", "-o", "--output"),
    self_contained: O(bool, "Compute the noise inside the graph: inputs seed, y0, x0, height, "
                      "width, period_y, period_x (int64 scalars); with --tile, inputs seed, y0, "
                      "x0 and a fixed tile. Default: the windowed form the tiler reads.",
                      "--self-contained") = False,
    tile: O(tuple[int, int] | None, "Fix the self-contained form's tile height and width "
            "(default: inputs).", metavar="H W") = None,
    period: O(str | None, "With --tile: make the texture periodic with period P (or PYxPX) "
              "output pixels, multiples of the model's stride.", metavar="P") = None,
    opset: O(int, "ONNX opset (18 or newer).") = 18,
    integer: O(bool, "Quantise the network to 8-bit integers (1-2 minutes): every runtime "
               "then computes the same bytes, and onnxruntime runs it faster "
               "(docs/FORMAT.md section 11).", "--integer") = False,
    overwrite: cl.Overwrite = False,
) -> None:  # fmt: skip
    """Export a trained generator to ONE self-describing .onnx file and verify it against torch.

    The file is written only when onnxruntime matches torch within 1e-4 (--integer: the
    integer arithmetic exactly; and, for --self-contained, the tiler's tiles); otherwise exit
    code 2. MODEL.onnx.json beside it holds the contract for runtimes that cannot read ONNX
    metadata.
    """
    from dataclasses import replace

    from export.onnx_export import check_options, wrap_verified

    check_output(output, overwrite)
    tile = check_options(self_contained, tile, period, opset)
    if model.suffix.lower() == ".onnx":
        if integer:
            raise UserError(f"--integer quantises a trained model: give the .pt, not {model}")
        if not self_contained:
            raise UserError(f"{model} is already an .onnx file: add --self-contained to wrap it")
        proto, report = wrap_verified(
            model, output, tile, options.period(period), overwrite=overwrite
        )
        typer.echo(
            f"wrote {output} (self-contained, {output.stat().st_size:,} bytes) and "
            f"{output}.json; tiles vs the tiler's, max |diff| {report.max_diff:.3g}"
        )
        return
    from export.onnx_export import export_verified, model_info
    from train.checkpoint import load_generator

    gen, meta = load_generator(model, "cpu")
    info = model_info(gen, meta)
    if self_contained:  # the period checked now, not after the export's 20 s
        info = replace(info, form="self-contained", tile=tile,
                       period=options.period(period, gen.cfg.arch))  # fmt: skip
    if integer:
        from export.integer import export_integer_verified

        log = lambda message: typer.echo(message, err=True)  # noqa: E731
        proto, report, deviation = export_integer_verified(
            gen, info, output, opset=opset, overwrite=overwrite, log=log
        )
        typer.echo(
            f"wrote {output} ({info.form}, integer, {output.stat().st_size:,} bytes) and "
            f"{output}.json; onnxruntime equals the integer arithmetic on every check; the "
            f"network moved by {deviation:.2f} 8-bit levels on average from the float one"
        )
        return
    typer.echo(f"exporting {model}: tracing it with torch, then checking onnxruntime", err=True)
    proto, report = export_verified(gen, info, output, opset=opset, overwrite=overwrite)
    size = output.stat().st_size
    typer.echo(
        f"wrote {output} ({info.form}, {size:,} bytes, opset {opset}, IR {proto.ir_version}) "
        f"and {output}.json; onnxruntime vs torch, max |diff| {report.max_diff:.3g}:"
    )
    for line in report.lines():
        typer.echo(line)


@command("nothing was written", "inspect")
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="A tilegen .onnx file.")],
    tile: O(tuple[int, int, int, int] | None, "Output tile origin and size: show the noise "
            "windows it needs [default: 0 0 1024 1024, or the self-contained tile].",
            metavar="Y X H W") = None,
    json_out: O(bool, "Print JSON only.", "--json") = False,
) -> None:  # fmt: skip
    """Show an .onnx model's metadata, parameters, cost per megapixel and noise windows.

    Needs only the onnx package (no torch, no onnxruntime).
    """
    import json

    from tilegen.inspect import describe, format_text, load

    d = describe(load(model), tile)
    typer.echo(json.dumps(d, indent=2) if json_out else format_text(d))


# --- inpaint, blend (single-image optimisations on the patch-OT loss: train/inpaint.py, blend.py)


@command(NOT_WRITTEN)
def inpaint(
    image: Annotated[Path | None, typer.Argument(help="The texture photo with a hole to fill, or "
                                                 "a material's folder of maps (-o: a folder).",
                                                 show_default=False)] = None,
    output: O(Path, "Where to write the result (.png or .tif).", "-o", "--output") = ...,
    mask: O(Path | None, "Mask image of the same size (any format): white = missing.") = None,
    box: O(tuple[int, int, int, int] | None, "The hole as a rectangle instead of a mask: top, "
           "left, height, width.") = None,
    iters: cl.Iters = PIXEL["iters"],
    scales: cl.Scales = PIXEL["scales"],
    patch: cl.Patch = PIXEL["patch"],
    lr: cl.PixelLr = PIXEL["lr"],
    seed: cl.Seed = 0,
    device: cl.Device = "auto",
    threads: cl.Threads = None,
    bits: O(int | None, "8 or 16 bits per channel (default: 8 if the image is 8-bit, else "
            "16).") = None,
    overwrite: cl.Overwrite = False,
    max_memory: cl.MaxMemory = None,
    map: cl.Maps = None,
    normal: cl.Normal = None,
    normal_out: cl.NormalOut = None,
    map_weight: cl.MapWeights = None,
    preview_lit: cl.PreviewLit = None,
) -> None:  # fmt: skip
    """Fill a hole with the texture around it; known pixels are kept exactly.

    The hole's patches follow the known part's patch distribution. Write PNG or TIFF: JPEG
    would change the known pixels.
    """
    job = InpaintJob(image=image, mask=mask, box=box, bits=bits, **_pixel(locals()),
                     **_material(locals()))  # fmt: skip
    typer.echo(job.run())


@command(NOT_WRITTEN)
def blend(
    exemplars: Annotated[list[Path], typer.Argument(help="Two or more example textures: A B "
                                                         "[C ...].")],
    output: cl.Output,
    size: O(tuple[int, int], "Output height and width."),
    weight: O(float | None, "B's share with two exemplars: 0 gives A's texture, 1 B's "
              "[0.5].") = None,
    weights: O(list[str] | None, "One weight per exemplar, as one list: --weights 1,2,1 "
               "(normalised to sum 1).") = None,
    ramp: O(str | None, "horizontal or vertical: the weight moves smoothly from A to B (to C "
            "...) across the image, left to right or top to bottom. Not tileable.") = None,
    iters: cl.Iters = PIXEL["iters"],
    scales: cl.Scales = PIXEL["scales"],
    patch: cl.Patch = PIXEL["patch"],
    lr: cl.PixelLr = PIXEL["lr"],
    seed: cl.Seed = 0,
    device: cl.Device = "auto",
    threads: cl.Threads = None,
    periodic: O(bool | None, "Make the output tile seamlessly (default: yes; no with "
                "--ramp).") = None,
    overwrite: cl.Overwrite = False,
    max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Paint a texture between two or more exemplars (a patch-OT barycenter)."""
    job = BlendJob(exemplars=exemplars, size=size, weight=weight, weights=weights or [],
                   ramp=ramp, periodic=periodic, **_pixel(locals()))  # fmt: skip
    typer.echo(job.run())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every failure is one line on stderr; exit 2 (130 for Ctrl-C)."""
    sys.exit(cl.run(app, argv))


if __name__ == "__main__":
    main()
