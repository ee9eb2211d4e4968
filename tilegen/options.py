"""The checks every command's settings share, each written once and naming the option it checks.

The jobs (train/jobs.py, tilegen/jobs.py, export/jobs.py) and the configurations (TrainConfig,
GenerateConfig, EvaluateJob, ...) call these from their `check` methods: each option kind has one
parser or check here, so a setting is validated in one place whichever way it arrives (the command
line, a resumed checkpoint, a library call). Torch-free.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from tilegen.errors import UserError

SEED_MAX = 2**32 - 1  # the noise hash is 32-bit; torch seeds take the same range


def positive(option: str, value: float | None, allow_zero: bool = False) -> None:
    """`value` > 0 (or >= 0), finite; None passes (an option left to its default)."""
    if value is None:
        return
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        need = "0 or positive" if allow_zero else "positive"
        raise UserError(f"{option} must be {need}, not {value}")


def size(hw: tuple[int, int], option: str = "--size") -> tuple[int, int]:
    """An (height, width) pair of positive integers."""
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise UserError(f"{option} {h} {w}: both sides must be positive")
    return h, w


def seed(value: int, option: str = "--seed") -> int:
    if not 0 <= value <= SEED_MAX:
        raise UserError(f"{option} {value}: use 0 .. 2**32-1")
    return value


def choice(option: str, value: object, choices: Iterable[object]) -> None:
    choices = list(choices)
    if value not in choices:
        names = ", ".join(str(c) for c in choices[:-1]) + f" or {choices[-1]}"
        raise UserError(f"{option} {value}: use {names}")


def bits(value: int | None, option: str = "--bits") -> int | None:
    """8 or 16 bits per channel; None passes (the command's own default)."""
    if value is not None:
        choice(option, value, (8, 16))
    return value


def normal(value: str | None, option: str = "--normal") -> str | None:
    """A normal map's convention, gl or dx; None passes (from the file name, or the input's)."""
    if value is not None:
        choice(option, value, ("gl", "dx"))
    return value


def learning_rate(value: float, option: str = "--lr") -> None:
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"{option} {value}: the step must be a positive number, e.g. 0.01")


def min_side(patch: int, scales: int) -> int:
    """Smallest image side whose every pyramid level still holds a patch (patch * 2^(scales-1))."""
    return patch * 2 ** (scales - 1)


def room(what: str, hw: tuple[int, int], patch: int, scales: int, fix: str) -> None:
    """'the exemplar is 20x20, too small: 4 scales of 4x4 patches need at least 32x32; ...'.

    `what` names the image ('the exemplar', '--size 16 50'); `fix` says what to change."""
    need = min_side(patch, scales)
    if min(hw) < need:
        raise UserError(
            f"{what} is {hw[0]}x{hw[1]}, too small: {scales} scales of {patch}x{patch} patches "
            f"need at least {need}x{need}; {fix}"
        )


def output(path: Path, overwrite: bool, suffixes: Iterable[str] | None = None) -> Path:
    """Refuse to clobber an existing output unless asked; check its type and that its folder can
    be written (before any work, so a read-only folder costs nothing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"-o {path}: is a folder; give a file name")
    if suffixes is not None:
        suffixes = list(suffixes)
        if path.suffix.lower() not in suffixes:
            raise UserError(f"-o {path}: write one of {', '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists: pass --overwrite or choose another -o")
    writable_folder(path.parent if str(path.parent) else Path("."), path)
    return path


def writable_folder(folder: Path, for_path: Path | None = None) -> None:
    """The nearest existing folder of `folder` is a folder we may write in."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    target = for_path or folder
    if not probe.is_dir():
        raise UserError(f"cannot write {target}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {target}: {probe} is read-only; choose another -o")


def period(text: str | None, arch: object = None) -> tuple[int, int] | None:
    """--period P or PYxPX as (py, px); with a model's `arch`, checked against its stride."""
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.lower().replace(",", "x").split("x")]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise UserError(f"--period {text}: give P or PYxPX, positive integers")
    if arch is not None:
        from tilegen.windows import check_period

        try:
            [check_period(arch, p) for p in vals]
        except ValueError as e:
            raise UserError(f"--period {text}: {e}")
    return (vals[0], vals[-1])
