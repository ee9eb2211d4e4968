"""The torch-free commands as jobs: each dataclass's fields are its command's options, by name
(`--connect-timeout` is `connect_timeout`); `run(echo)` does the whole command and echoes what it
prints. The command line only builds one from its options and calls `run`.

    GenerateJob  paint a model tile by tile (tilegen/tiler.py)             tilegen generate
    WorldJob     one model per label of a layout (tilegen/world.py)        tilegen world
    TilesJob     cut a store into tiles or a web-map pyramid               tilegen tiles
    ViewJob      serve a store, a tile folder or a model (tilegen/view.py)  tilegen view
    InspectJob   an .onnx model's contract and cost (tilegen/inspect.py)   tilegen inspect

The torch commands' jobs are train/jobs.py's and export/jobs.py's; `tilegen evaluate`'s is
tilegen/evaluate.py's EvaluateJob. Heavy libraries are imported inside `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tilegen import memory
from tilegen.errors import UserError
from tilegen.tiler import GenerateConfig

Echo = Callable[[str], None]


def default_model() -> Path:
    """The bundled model `generate` paints with when none is given."""
    return Path(__file__).resolve().parent / "assets" / "default.onnx"


@dataclass(kw_only=True)
class GenerateJob:
    """`tilegen generate`: the options, as GenerateConfig takes them (`config`), then the tiler."""

    model: Path | None = None  # None: the bundled default.onnx
    output: Path
    size: tuple[int, int]
    seed: int = 0
    periodic: bool = False  # period = size
    chunk: int = GenerateConfig.chunk
    shard: int | None = None
    dtype: str = GenerateConfig.dtype
    codec: str = GenerateConfig.codec
    pyramid: bool = True
    scheduler: str = ""  # "": local with --workers, else threads
    connect_timeout: float = GenerateConfig.connect_timeout
    workers: int | None = None
    threads: int | None = None
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    max_memory: float | None = None

    def model_path(self) -> Path:
        if self.model is not None:
            return self.model
        model = default_model()
        if not model.is_file():
            raise UserError(
                f"no MODEL given and the bundled default model ({model}) is not installed: "
                "pass a tilegen .onnx file"
            )
        return model

    def config(self, model: str, size: tuple[int, int], world: object = None) -> GenerateConfig:
        """The tiler's configuration: these options, for `model` at `size` (a world: its plan)."""
        return GenerateConfig(
            model=model, output=str(self.output), size=size, seed=self.seed, chunk=self.chunk,
            shard=self.shard, period=size if self.periodic else None, dtype=self.dtype,
            codec=self.codec, pyramid=self.pyramid,
            scheduler=self.scheduler or ("local" if self.workers else "threads"),
            workers=self.workers, threads=self.threads, device=self.device,
            overwrite=self.overwrite, progress=self.progress, max_memory=self.max_memory,
            connect_timeout=self.connect_timeout, world=world,
        )  # fmt: skip

    def run(self, echo: Echo) -> None:
        from tilegen.tiler import run

        echo(run(self.config(str(self.model_path()), self.size)))


@dataclass(kw_only=True)
class WorldJob(GenerateJob):
    """`tilegen world`: the layout's plan (tilegen/world.py), then generate's tiler on it."""

    layout: Path
    label: list[str]  # KEY=MODEL.onnx
    size: tuple[int, int] | None = None  # None: --cell pixels per layout pixel
    cell: int | None = None
    blend: float = 32.0
    mix: str = "auto"

    def run(self, echo: Echo) -> None:
        from tilegen.tiler import run
        from tilegen.world import plan_world

        memory.set_limit(self.max_memory)
        spec = plan_world(
            str(self.layout), self.label, self.cell, self.size, self.blend, self.mix, self.periodic
        )
        echo(run(self.config(spec.models[0], spec.size, world=spec)))


@dataclass(kw_only=True)
class TilesJob:
    """`tilegen tiles`: numbered tiles (tilegen/tiles.py), an xyz/dzi pyramid
    (tilegen/webtiles.py) or one PMTiles archive (tilegen/pmtiles_out.py)."""

    store: Path
    output: Path
    tile: int | None = None  # None: 2048; web pyramids 256
    format: str = "png"
    image: str = "png"  # a web pyramid's tiles
    bits: int | None = None  # None: the store's
    region: tuple[int, int, int, int] | None = None
    level: int = 0
    url: str | None = None
    overwrite: bool = False
    progress: bool = True
    max_memory: float | None = None

    def check(self) -> None:
        memory.set_limit(self.max_memory)
        if self.url is not None and self.format != "xyz":
            raise UserError(
                f"--url is for --format xyz (the tile URLs in tilejson.json), not {self.format}"
            )

    def run(self, echo: Echo) -> None:
        from tilegen.webtiles import WEB_FORMATS

        self.check()
        if self.format == "pmtiles" or self.output.suffix.lower() == ".pmtiles":
            return self.pmtiles(echo)
        if self.format in WEB_FORMATS:
            return self.web(echo)
        from tilegen.tiles import cut_tiles

        tile, fmt = self.tile or 2048, self.format
        index = cut_tiles(self.store, self.output, tile, fmt, self.bits, self.region, self.level,
                          self.overwrite, progress=self.progress)  # fmt: skip
        echo(
            f"wrote {index['rows'] * index['cols']} tiles ({index['rows']} rows x {index['cols']} "
            f"columns, {index['bits']}-bit {self.format}) to {self.output}"
        )

    def numbered_only(self, what: str) -> None:
        if self.region or self.level or self.bits:
            raise UserError(f"--region, --level and --bits are for numbered tiles, not {what}")

    def web(self, echo: Echo) -> None:
        from tilegen.webtiles import write_web_tiles

        self.numbered_only(self.format)
        f = write_web_tiles(self.store, self.output, self.format, self.image, self.tile or 256,
                            self.overwrite, progress=self.progress, url=self.url)  # fmt: skip
        echo(
            f"wrote {f['written']} {self.format} tiles ({f['kept']} kept from an earlier run), "
            f"{f['levels']} levels of {f['tile']}-pixel {self.image} tiles, to {self.output}"
        )

    def pmtiles(self, echo: Echo) -> None:
        from tilegen.pmtiles_out import write_pmtiles

        if self.format != "pmtiles":
            raise UserError(f"-o {self.output}: add --format pmtiles for a PMTiles archive")
        self.numbered_only("pmtiles")
        f = write_pmtiles(self.store, self.output, self.image, self.tile or 256, self.overwrite,
                          progress=self.progress)  # fmt: skip
        echo(
            f"wrote {f['tiles']} {self.image} tiles, {f['levels']} levels of {f['tile']} pixels, "
            f"to {self.output} ({f['bytes'] / 1e6:.1f} MB)"
        )


@dataclass(kw_only=True)
class ViewJob:
    """`tilegen view`: serve the page until Ctrl-C (tilegen/view.py)."""

    path: Path
    port: int = 8765
    open_browser: bool = False
    host: str | None = None  # None: 127.0.0.1
    cors: str | None = None

    def run(self, echo: Echo) -> None:
        from tilegen.view import view

        view(self.path, self.port, self.open_browser, log=echo, host=self.host, cors=self.cors)


@dataclass(kw_only=True)
class InspectJob:
    """`tilegen inspect`: an .onnx model described (tilegen/inspect.py), as text or JSON."""

    model: Path
    tile: tuple[int, int, int, int] | None = None
    json_out: bool = False

    def run(self, echo: Echo) -> None:
        import json

        from tilegen.inspect import describe, format_text, load

        d = describe(load(self.model), self.tile)
        echo(json.dumps(d, indent=2) if self.json_out else format_text(d))
