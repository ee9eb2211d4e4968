"""`tilegen export` as a job, kept with export/ (the library it drives): the dataclass's fields
are the command's options by name, `run(echo)` does the whole command, as train/jobs.py's and
tilegen/jobs.py's jobs do. Three ways out, each verified before anything is written:

    a windowed .onnx  -> wrapped into the self-contained form (onnx_export.wrap_verified; no torch)
    a .pt             -> the float export, checked against torch (onnx_export.export_verified)
    a .pt, --integer  -> the 8-bit integer export, checked exactly (integer.export_integer_verified)

torch, onnx and onnxruntime are imported inside `run`: importing this module costs nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tilegen import options
from tilegen.errors import UserError

Echo = Callable[[str], None]


def note(message: str) -> None:
    """Progress on stderr (stdout carries the result lines)."""
    print(message, file=sys.stderr, flush=True)


@dataclass(kw_only=True)
class ExportJob:
    model: Path  # a trained .pt, or a windowed .onnx to wrap
    output: Path
    self_contained: bool = False
    tile: tuple[int, int] | None = None  # the self-contained form's fixed tile (None: inputs)
    period: str | None = None  # --period P or PYxPX, with --tile
    opset: int = 18
    integer: bool = False
    overwrite: bool = False

    @property
    def wraps(self) -> bool:
        """The model is already an .onnx file: only the self-contained wrapping applies."""
        return self.model.suffix.lower() == ".onnx"

    def check(self) -> None:
        """The options and the rules between them, before any model is read."""
        from export.onnx_export import check_options

        options.output(self.output, self.overwrite)
        self.tile = check_options(self.self_contained, self.tile, self.period, self.opset)
        if self.wraps and self.integer:
            raise UserError(f"--integer quantises a trained model: give the .pt, not {self.model}")
        if self.wraps and not self.self_contained:
            raise UserError(
                f"{self.model} is already an .onnx file: add --self-contained to wrap it"
            )

    def run(self, echo: Echo) -> None:
        self.check()
        if self.wraps:
            return self.wrap(echo)
        from export.onnx_export import export_verified, model_info
        from train.checkpoint import load_generator

        gen, meta = load_generator(self.model, "cpu")
        info = model_info(gen, meta)
        if self.self_contained:  # the period parsed and checked now, not after the export's 20 s
            period = options.period(self.period, gen.cfg.arch)
            info = replace(info, form="self-contained", tile=self.tile, period=period)
        if self.integer:
            return self.export_integer(gen, info, echo)
        out, opset = self.output, self.opset
        note(f"exporting {self.model}: tracing it with torch, then checking onnxruntime")
        proto, report = export_verified(gen, info, out, opset=opset, overwrite=self.overwrite)
        echo(
            f"wrote {out} ({info.form}, {out.stat().st_size:,} bytes, opset {opset}, IR "
            f"{proto.ir_version}) and {out}.json; onnxruntime vs torch, max |diff| "
            f"{report.max_diff:.3g}:"
        )
        for line in report.lines():
            echo(line)

    def wrap(self, echo: Echo) -> None:
        from export.onnx_export import wrap_verified

        out, period = self.output, options.period(self.period)
        _, report = wrap_verified(self.model, out, self.tile, period, overwrite=self.overwrite)
        echo(
            f"wrote {out} (self-contained, {out.stat().st_size:,} bytes) and "
            f"{out}.json; tiles vs the tiler's, max |diff| {report.max_diff:.3g}"
        )

    def export_integer(self, gen, info, echo: Echo) -> None:
        from export.integer import export_integer_verified

        out = self.output
        _, _, deviation = export_integer_verified(
            gen, info, out, opset=self.opset, overwrite=self.overwrite, log=note
        )
        echo(
            f"wrote {out} ({info.form}, integer, {out.stat().st_size:,} bytes) and "
            f"{out}.json; onnxruntime equals the integer arithmetic on every check; the "
            f"network moved by {deviation:.2f} 8-bit levels on average from the float one"
        )
