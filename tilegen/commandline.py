"""What every command of the command line shares: the common options, the Ctrl-C wrapper and
the entry point that turns any failure into one line (tilegen/errors.py's `describe`).

Torch-free; cli.py defines the commands with these pieces (each command: its options, then one
job built from them and run, as cli.py's docstring shows).
"""

import functools
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from tilegen import memory
from tilegen.errors import Interrupted, describe, one_line, remember_ctrl_c


def command_decorator(app: typer.Typer):
    """`command(kept, name=None)` for `app`: registers a command whose Ctrl-C (when its library
    call did not say more) becomes one line, 'interrupted: ' + `kept` formatted with the
    command's arguments."""

    def command(kept: str, name: str | None = None):
        def wrap(fn):
            @functools.wraps(fn)
            def run(**kwargs):
                try:
                    return fn(**kwargs)
                except KeyboardInterrupt:
                    raise Interrupted("interrupted: " + kept.format(**kwargs))

            return app.command(name)(run)

        return wrap

    return command


def O(tp: object, help: str, *names: str, **kw) -> object:  # noqa: E743, N802
    """`Annotated[tp, typer.Option(*names, help=help, **kw)]`: an option in one line."""
    return Annotated[tp, typer.Option(*names, help=help, **kw)]


def A(tp: object, help: str, **kw) -> object:  # noqa: N802
    """`Annotated[tp, typer.Argument(help=help, **kw)]`: an argument in one line."""
    return Annotated[tp, typer.Argument(help=help, **kw)]


def S(tp: type, what: str, default: object) -> object:  # noqa: N802
    """A training setting: None means the default, or with --resume the checkpoint's."""
    return O(tp | None, f"{what} (default {default}; with --resume: the checkpoint's).",
             show_default=False)  # fmt: skip


# --- shared options ---------------------------------------------------------------------------

Exemplar = Annotated[
    Path | None,
    typer.Argument(
        help="Example texture (PNG, JPEG or TIFF; 8/16-bit), or a folder of a material's maps "
        "(albedo, normal, roughness, height, ao, metallic: ambientCG, 3dtextures or plain names; "
        "-o is then a folder, one file per map).",
        show_default=False,
    ),
]

Output = O(Path, "Where to write the result.", "-o", "--output")
Seed = O(int, "Random seed: the same inputs and seed give the same bytes.")
Device = O(str, "auto (GPU when there is one), cpu or cuda.")
Threads = O(int | None, "CPU threads for torch (default: the cores no other program is busy on).",
            show_default=False)  # fmt: skip
MaxMemory = O(float | None, "Memory in GB this command may use (default: what is free now); "
              "a job estimated to need more is refused before it starts.",
              show_default=False)  # fmt: skip
Overwrite = O(bool, "Replace an existing output file.")
Iters = O(int, "Outer iterations (psi steps + one pixel step).")
Scales = O(int, "Pyramid levels of the multiscale loss.")
Patch = O(int, "Patch side in pixels.")
PixelLr = O(float, "Adam step on the pixels (in [0, 1]).")
Bits = O(int, "8 or 16 bits per channel (16 needs .png/.tif).")
Progress = O(bool, "Show a progress bar.")

# The tiler's (generate, world).
StoreOutput = O(Path, "OUT.zarr (OME-Zarr, any size), or OUT.png / OUT.tif.", "-o", "--output")
StoreOverwrite = O(bool, "Replace an existing output (never a path that is not tilegen's).")
Dtype = O(str, "uint8 or uint16.")
Workers = O(int | None, "Worker processes (processes, local).")
DaskThreads = O(int | None, "Dask threads (threads) or threads per worker (local).")

# Materials (tilegen/material.py): aligned maps of one surface, learned as one exemplar.
Maps = O(list[str] | None, "A material map as ROLE=PATH (repeat; roles albedo, normal, "
         "roughness, height, ao, metallic), instead of a folder of maps.", "--map",
         metavar="ROLE=PATH", show_default=False)  # fmt: skip
Normal = O(str | None, "A material's normal map convention: gl (OpenGL, green up) or dx "
           "(DirectX, green down) [default: from the file name (NormalGL/NormalDX), else gl].",
           show_default=False)  # fmt: skip
NormalOut = O(str | None, "Write a material's normals as gl or dx [default: as the input's].",
              show_default=False)  # fmt: skip
MapWeights = O(list[str] | None, "A map's weight in the patch cost as ROLE=W (repeat), e.g. "
               "normal=2 [default: measured, tilegen/material.py DEFAULT_WEIGHTS].",
               "--map-weight", metavar="ROLE=W", show_default=False)  # fmt: skip
PreviewLit = O(Path | None, "Also write the material lit from the upper left (a flat plane "
               "shaded from albedo, normal, roughness and ao) to this PNG.",
               show_default=False)  # fmt: skip
MaterialBits = O(int | None, "8 or 16 bits per channel (16 needs .png/.tif) [default: 8; a "
                 "material's maps: the depth of each source map].", show_default=False)  # fmt: skip


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts) of click and of the copy of click typer may carry."""
    from click.exceptions import Abort, ClickException

    usage, abort = [ClickException], [Abort]
    try:
        from typer import _click  # typer >= 0.2x vendors click

        usage.append(_click.exceptions.ClickException)
        abort.append(_click.exceptions.Abort)
    except (ImportError, AttributeError):
        pass
    return tuple(usage), tuple(abort)


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run the app; every failure is one line on stderr. The exit code: 0, 2 (bad input or
    environment), 130 (Ctrl-C; 143 SIGTERM, 129 SIGHUP), 1 (a bug: TILEGEN_DEBUG=1 shows its
    traceback)."""
    usage, abort = _click_exceptions()
    remember_ctrl_c()
    try:
        code = app(args=argv, standalone_mode=False)
        if code == 130:  # typer turned a Ctrl-C outside a command body into Exit(130)
            raise Interrupted("interrupted before the command started: nothing was written")
        memory.set_limit(None)  # --max-memory holds for one command (tests run many in a process)
        return code or 0
    except usage as e:  # a usage error: one line too, pointing at the command's help
        if type(e).__name__ == "NoArgsIsHelpError" or not hasattr(e, "format_message"):
            e.show()  # `tilegen` alone: the help is the answer
            return e.exit_code
        ctx = getattr(e, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"tilegen: error: {one_line(e.format_message())}{where}", file=sys.stderr)
        return e.exit_code
    except abort:
        print("tilegen: aborted", file=sys.stderr)
        return 1
    except BaseException as e:
        if isinstance(e, SystemExit) or os.environ.get("TILEGEN_DEBUG"):
            raise
        code, line = describe(e)
        print(f"tilegen: {line}", file=sys.stderr)
        memory.set_limit(None)
        if code > 128 and threading.active_count() > 1:
            sys.stdout.flush()  # worker threads still in a C call (exact OT) must not hold
            sys.stderr.flush()  # the exit: the message is out, what was kept is on disk
            os._exit(code)
        return code
