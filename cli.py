"""tilegen's command line: one function per command.

Heavy libraries (torch, onnxruntime, dask) are imported inside the commands that need them, so
`tilegen --help` is instant and the tiling commands run where torch is not installed. Every
expected failure is a UserError (or a ValueError from the engine), printed as one line with exit
code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tilegen.errors import UserError

app = typer.Typer(
    help="Learn a texture from one example image with patch optimal transport, then paint "
    "seamless textures of any size.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """tilegen: patch-OT texture synthesis. Run 'tilegen COMMAND --help' for a command's options."""


# --- shared options and checks ----------------------------------------------------------------

Seed = Annotated[
    int, typer.Option(help="Random seed: the same inputs and seed give the same bytes.")
]
Device = Annotated[str, typer.Option(help="auto (GPU when there is one), cpu or cuda.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output file.")]


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
        typer.Option(help="Output height and width [default: the exemplar's size]."),
    ] = None,
    iters: Annotated[
        int, typer.Option(help="Outer iterations (psi steps + one pixel step).")
    ] = 500,
    scales: Annotated[int, typer.Option(help="Pyramid levels of the multiscale loss.")] = 4,
    patch: Annotated[int, typer.Option(help="Patch side in pixels.")] = 4,
    lr: Annotated[float, typer.Option(help="Adam step on the pixels.")] = 0.01,
    seed: Seed = 0,
    device: Device = "auto",
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
    from train.patch_ot import OTConfig
    from train.synth import SynthConfig, check_sizes, synthesize

    check_output(output, overwrite)
    if iters < 1 or scales < 1 or patch < 1 or bits not in (8, 16):
        raise UserError("--iters, --scales and --patch must be positive and --bits 8 or 16")
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


# --- entry point ------------------------------------------------------------------------------


def main() -> None:
    """Console entry point: expected failures become one line on stderr and exit code 2."""
    try:
        app()
    except (UserError, ValueError, FloatingPointError) as e:
        print(f"tilegen: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("tilegen: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
