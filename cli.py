"""tilegen's command line. Every command is one pattern: its parameters are its options (help
texts; defaults from the job's fields; the shared ones in tilegen/commandline.py, a group to a
line), and its body builds one job, a dataclass whose fields are the options' names, and runs it:

    SynthJob(**locals()).run(typer.echo)

The job parses and checks each option once (`check`, tilegen/options.py) and does the work:
train/jobs.py (synth, inpaint, blend, train, sample), export/jobs.py (export), tilegen/jobs.py
(generate, world, tiles, view, inspect), tilegen/evaluate.py (evaluate). They import torch,
onnxruntime and dask inside `run`: `tilegen --help` is quick and the tiling commands run without
torch. Every failure is one line on stderr (tilegen/commandline.py, tilegen/errors.py): exit code
2, or 130 for Ctrl-C, saying what was kept and how to continue.
"""

import sys
from pathlib import Path

import typer

from export.jobs import ExportJob
from tilegen import commandline as cl
from tilegen.commandline import A, O, S
from tilegen.evaluate import EvaluateJob
from tilegen.jobs import GenerateJob, InspectJob, TilesJob, ViewJob, WorldJob
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


NOT_WRITTEN = "{output} was not written; rerun the same command"


# --- synth, evaluate ----------------------------------------------------------------------------
@command(NOT_WRITTEN)
def synth(
    exemplar: cl.Exemplar = None,
    output: cl.Output = ...,
    size: O(tuple[int, int] | None, "Output height and width (default: the exemplar's).") = None,
    iters: cl.Iters = PixelJob.iters, scales: cl.Scales = PixelJob.scales,
    patch: cl.Patch = PixelJob.patch, lr: cl.PixelLr = PixelJob.lr,
    seed: cl.Seed = 0, device: cl.Device = "auto", threads: cl.Threads = None,
    periodic: O(bool, "Make the output tile seamlessly.") = True,
    snapshot_every: O(int, "Write OUTPUT.NNNN.png every N iterations (0: never).") = 0,
    bits: cl.MaterialBits = None,
    overwrite: cl.Overwrite = False, max_memory: cl.MaxMemory = None,
    maps: cl.Maps = None, normal: cl.Normal = None, normal_out: cl.NormalOut = None,
    map_weights: cl.MapWeights = None, preview_lit: cl.PreviewLit = None,
) -> None:  # fmt: skip
    """Synthesise a new image of the exemplar's texture by optimising its pixels (Alg. 1).

    A material (a folder of maps, or --map) is synthesised as one image of all its maps'
    channels and written as OUTPUT/albedo.png, OUTPUT/normal.png, ...
    """
    SynthJob(**locals()).run(typer.echo)


@command("no scores were kept; rerun the same command")
def evaluate(
    exemplar: A(Path, "The example texture, or a material's folder of maps."),
    images: A(list[Path] | None, "Images to score against it (for a material: folders of "
              "maps).") = None,
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
    EvaluateJob(**locals(), structure_scorer=_structure_scorer).run(typer.echo)


def _structure_scorer(exemplar, height: int, width: int, seed: int = 0):
    """evaluate's structure figure comes from train/ (torch), which tilegen does not import."""
    try:
        from train.structure import structure_scorer
    except ImportError:
        return "no structure figure: it needs torch and plenoptic (pip install 'tilegen[train]')"
    return structure_scorer(exemplar, height, width, seed)


# --- generate, tiles (the torch-free tiler) ---------------------------------------------------
@command("rerun the same command to finish (a .zarr store resumes where it stopped)")
def generate(
    model: A(Path | None, "A tilegen .onnx model (default: the bundled "
             "tilegen/assets/default.onnx).") = None,
    output: cl.StoreOutput = ...,
    size: O(tuple[int, int], "Output height and width in pixels.") = ...,
    seed: cl.Seed = 0,
    periodic: O(bool, "Make the output tile seamlessly (sides multiples of the model's "
                "stride).") = False,
    chunk: O(int, "Zarr chunk side (pixels).") = GenerateJob.chunk,
    shard: O(int | None, "Zarr shard side, a multiple of --chunk; one task writes one whole "
             "shard (default: 2048, smaller for small images so every core gets work).") = None,
    dtype: cl.Dtype = GenerateJob.dtype,
    codec: O(str, "zstd or blosc.") = GenerateJob.codec,
    pyramid: O(bool, "Write OME-NGFF multiscale levels (2x2 mean).") = True,
    scheduler: O(str, "threads, processes, local (a dask.distributed LocalCluster of --workers "
                 "x --threads) or the address of a running dask.distributed scheduler "
                 "(tcp://host:8786; workers must see the same file system); default: threads, "
                 "local with --workers.") = "",
    connect_timeout: O(float, "Seconds to reach a dask.distributed scheduler (its address as "
                       "--scheduler) before giving up.") = GenerateJob.connect_timeout,
    workers: cl.Workers = None, threads: cl.DaskThreads = None, device: cl.Device = "auto",
    overwrite: cl.StoreOverwrite = False,
    progress: cl.Progress = True, max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Paint a texture of any size from an .onnx model, tile by tile, into OME-Zarr (or PNG/TIFF).

    Rerunning an interrupted command finishes only the missing shards; the result has the same
    bytes as an uninterrupted run. A material model writes a .zarr store whose channels are
    labelled (albedo.r, ..., normal.x, ..., height), normals unit length; 'tilegen tiles' cuts
    it into one file per map.
    """
    GenerateJob(**locals()).run(typer.echo)


@command("rerun the same command to finish (a .zarr store resumes where it stopped)")
def world(
    layout: A(Path, "The layout: a PNG/TIFF whose colours (or palette indices, or grey values) "
              "say which model paints where, or a Zarr array (.zarr) of integer labels, read "
              "chunk by chunk, for layouts too large for memory."),
    label: O(list[str], "COLOUR=MODEL.onnx ('#3a7d2c=grass.onnx'), or VALUE=MODEL.onnx for a "
             "palette index or grey value; repeat for every label of the layout.", "--label",
             metavar="KEY=MODEL") = ...,
    output: cl.StoreOutput = ...,
    cell: O(int | None, "Output pixels per layout pixel (the size follows).") = None,
    size: O(tuple[int, int] | None, "Output height and width instead of --cell.") = None,
    blend: O(float, "Width in pixels of the transitions between labels (at most 1.25x the "
             "cell).") = WorldJob.blend,
    mix: O(str, "How models mix in a transition: auto (height for materials with a height map, "
           "else variance), variance (keeps the contrast), linear, height.") = WorldJob.mix,
    seed: cl.Seed = 0,
    periodic: O(bool, "Make the world tile seamlessly (the layout wraps; sides multiples of the "
                "models' stride).") = False,
    shard: O(int | None, "Zarr shard side, a multiple of 512 (default: as generate).") = None,
    dtype: cl.Dtype = GenerateJob.dtype,
    scheduler: O(str, "threads, processes, local or a dask.distributed address (as "
                 "generate).") = "",
    workers: cl.Workers = None, threads: cl.DaskThreads = None, device: cl.Device = "auto",
    overwrite: cl.StoreOverwrite = False,
    progress: cl.Progress = True, max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Paint a world: one model per label of a layout, with natural transitions, tile by tile.

    Boundaries follow the layout smoothly upsampled and displaced by seeded noise, so they are
    curved and irregular, never the layout's cell edges; inside a transition (--blend pixels
    wide) the models mix (--mix). Each window evaluates only the models whose labels reach it.
    Everything `generate` guarantees holds: exact tiles, --periodic, resume by rerunning; the
    store records the layout, the legend and the models with their hashes.
    """
    WorldJob(**locals()).run(typer.echo)


@command("the tiles in {output} are incomplete; rerun the same command (--overwrite for numbered)")
def tiles(
    store: A(Path, "A store written by 'tilegen generate'."),
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
    progress: cl.Progress = True, max_memory: cl.MaxMemory = None,
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
    TilesJob(**locals()).run(typer.echo)


@command("the page was not served")
def view(
    path: A(Path, "A store, an xyz/dzi folder, or a self-contained .onnx model."),
    port: O(int, "Port (0: any free port).") = ViewJob.port,
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
    ViewJob(**locals()).run(typer.echo)


# --- train, sample (the generator, Alg. 2) ----------------------------------------------------
@command("rerun the same command with --resume to continue from the last checkpoint", "train")
def train_cmd(
    exemplar: cl.Exemplar = None,
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
              "others), off, or levels such as 2,1 kept regardless", "auto") = None,
    ema: S(float, "Keep a moving average of the weights with this decay, not the last ones "
           "(0: the last ones)", 0.99) = None,
    psi_steps: S(int, "Ascent steps on the potentials psi per iteration; more keep them closer "
                 "to the generator and cost time", 15) = None,
    norm: S(str, "Normalisation of the generator's layers: ws (weight standardisation), batch "
            "(the reference's BatchNorm, folded into the convolutions at export) or none",
            "ws") = None,
    structure: S(float, "Weight of the structure statistic of each training crop in the loss: "
                 "layout the patches cannot see (try 0.005 for tiles or bricks; slower)", 0) = None,
    device: cl.Device = "auto", threads: cl.Threads = None,
    checkpoint_every: O(int, "Write OUTPUT.ckpt every N iterations and at the end (0: "
                        "never).") = TrainJob.checkpoint_every,
    resume: O(bool, "Continue the run whose checkpoint is OUTPUT.ckpt, exactly.") = False,
    preview_every: O(int, "Also write OUTPUT.preview.NNNN.png every N iterations (0: never).") = 0,
    check_modes: O(bool, "Compare inference-mode and training-mode samples at the end.",
                   "--check/--no-check") = TrainJob.check_modes,
    overwrite: cl.Overwrite = False, max_memory: cl.MaxMemory = None,
    maps: cl.Maps = None, normal: cl.Normal = None, map_weights: cl.MapWeights = None,
) -> None:  # fmt: skip
    """Learn a generator of the exemplar's texture (Alg. 2); writes OUTPUT and a preview PNG.

    A material (a folder of maps, or --map) trains one generator of all its maps; the model
    records which channels hold which map, and its preview shows the material lit.
    """
    TrainJob(**locals()).run(typer.echo)


@command(NOT_WRITTEN, "sample")
def sample_cmd(
    model: A(Path, "A trained model (.pt from 'tilegen train')."),
    output: O(Path, "Image to write (a material model: a folder, one file per map).", "-o",
              "--output"),
    size: O(tuple[int, int], "Height and width in pixels.") = SampleJob.size,
    seed: cl.Seed = 0,
    periodic: O(bool, "Tile seamlessly (period = size; a multiple of the model's stride).") = False,
    device: cl.Device = "auto", threads: cl.Threads = None,
    bits: cl.MaterialBits = None,
    overwrite: cl.Overwrite = False, max_memory: cl.MaxMemory = None,
    normal_out: cl.NormalOut = None,
    preview_lit: cl.PreviewLit = None,
) -> None:  # fmt: skip
    """Paint a texture of exactly --size pixels with a trained generator (a quick look)."""
    SampleJob(**locals()).run(typer.echo)


# --- export, inspect (the ONNX contract: export/, tilegen/inspect.py, docs/FORMAT.md) ----------
@command("{output} was not written (it is written only after its checks pass); rerun", "export")
def export_cmd(
    model: A(Path, "A trained model (.pt from 'tilegen train'), or a windowed .onnx to wrap "
             "into the --self-contained form (no torch needed)."),
    output: O(Path, "The .onnx file to write.", "-o", "--output"),
    self_contained: O(bool, "Compute the noise inside the graph: inputs seed, y0, x0, height, "
                      "width, period_y, period_x (int64 scalars); with --tile, inputs seed, y0, "
                      "x0 and a fixed tile. Default: the windowed form the tiler reads.",
                      "--self-contained") = False,
    tile: O(tuple[int, int] | None, "Fix the self-contained form's tile height and width "
            "(default: inputs).", metavar="H W") = None,
    period: O(str | None, "With --tile: make the texture periodic with period P (or PYxPX) "
              "output pixels, multiples of the model's stride.", metavar="P") = None,
    opset: O(int, "ONNX opset (18 or newer).") = ExportJob.opset,
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
    ExportJob(**locals()).run(typer.echo)


@command("nothing was written", "inspect")
def inspect_cmd(
    model: A(Path, "A tilegen .onnx file."),
    tile: O(tuple[int, int, int, int] | None, "Output tile origin and size: show the noise "
            "windows it needs [default: 0 0 1024 1024, or the self-contained tile].",
            metavar="Y X H W") = None,
    json_out: O(bool, "Print JSON only.", "--json") = False,
) -> None:  # fmt: skip
    """Show an .onnx model's metadata, parameters, cost per megapixel and noise windows.

    Needs only the onnx package (no torch, no onnxruntime).
    """
    InspectJob(**locals()).run(typer.echo)


# --- inpaint, blend (single-image optimisations on the patch-OT loss: train/inpaint.py, blend.py)
@command(NOT_WRITTEN)
def inpaint(
    image: A(Path | None, "The texture photo with a hole to fill, or a material's folder of maps "
             "(-o: a folder).", show_default=False) = None,
    output: O(Path, "Where to write the result (.png or .tif).", "-o", "--output") = ...,
    mask: O(Path | None, "Mask image of the same size (any format): white = missing.") = None,
    box: O(tuple[int, int, int, int] | None, "The hole as a rectangle instead of a mask: top, "
           "left, height, width.") = None,
    iters: cl.Iters = PixelJob.iters, scales: cl.Scales = PixelJob.scales,
    patch: cl.Patch = PixelJob.patch, lr: cl.PixelLr = PixelJob.lr,
    seed: cl.Seed = 0, device: cl.Device = "auto", threads: cl.Threads = None,
    bits: O(int | None, "8 or 16 bits per channel (default: 8 if the image is 8-bit, else "
            "16).") = None,
    overwrite: cl.Overwrite = False, max_memory: cl.MaxMemory = None,
    maps: cl.Maps = None, normal: cl.Normal = None, normal_out: cl.NormalOut = None,
    map_weights: cl.MapWeights = None, preview_lit: cl.PreviewLit = None,
) -> None:  # fmt: skip
    """Fill a hole with the texture around it; known pixels are kept exactly.

    The hole's patches follow the known part's patch distribution. Write PNG or TIFF: JPEG
    would change the known pixels.
    """
    InpaintJob(**locals()).run(typer.echo)


@command(NOT_WRITTEN)
def blend(
    exemplars: A(list[Path], "Two or more example textures: A B [C ...]."),
    output: cl.Output,
    size: O(tuple[int, int], "Output height and width."),
    weight: O(float | None, "B's share with two exemplars: 0 gives A's texture, 1 B's "
              "[0.5].") = None,
    weights: O(list[str] | None, "One weight per exemplar, as one list: --weights 1,2,1 "
               "(normalised to sum 1).") = None,
    ramp: O(str | None, "horizontal or vertical: the weight moves smoothly from A to B (to C "
            "...) across the image, left to right or top to bottom. Not tileable.") = None,
    iters: cl.Iters = PixelJob.iters, scales: cl.Scales = PixelJob.scales,
    patch: cl.Patch = PixelJob.patch, lr: cl.PixelLr = PixelJob.lr,
    seed: cl.Seed = 0, device: cl.Device = "auto", threads: cl.Threads = None,
    periodic: O(bool | None, "Make the output tile seamlessly (default: yes; no with "
                "--ramp).") = None,
    overwrite: cl.Overwrite = False, max_memory: cl.MaxMemory = None,
) -> None:  # fmt: skip
    """Paint a texture between two or more exemplars (a patch-OT barycenter)."""
    BlendJob(**locals()).run(typer.echo)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every failure is one line on stderr; exit 2 (130 for Ctrl-C)."""
    sys.exit(cl.run(app, argv))


if __name__ == "__main__":
    main()
