"""`tilegen evaluate`: its settings (EvaluateJob), the rows it scores (images, baselines, the
median of real pieces), and the table or JSON it prints (docs/EVALUATE.md).

The figures are tilegen/metrics.py's, computed for many images by tilegen/evaluator.py. The
structure figure needs torch, which tilegen never imports: the command line passes a scorer
factory in (`EvaluateJob.structure_scorer`, train/structure.py's `structure_scorer`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tilegen import memory, metrics, options
from tilegen.baselines import baseline_images, real_pieces
from tilegen.errors import Interrupted, UserError
from tilegen.evaluator import Evaluator, MaterialEvaluator, StructureFactory

# --- the CLI's table ----------------------------------------------------------------------------

COLUMNS = ("patch-OT debiased", "plain W2^2", "colour W1", "spectrum", "structure")


_WIDTHS = tuple(max(len(c), 9) for c in COLUMNS)


def table_header(name_width: int, structure: bool = False) -> str:
    cols = COLUMNS if structure else COLUMNS[:-1]
    return f"{'image':<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, _WIDTHS))


def table_row(name: str, result: dict, name_width: int, structure: bool = False) -> str:
    cells = [
        f"{result['debiased']:.3e}",
        f"{result['plain']:.3e}",
        f"{result['color_w1']:.4f}",
        f"{result['spectrum']:.3f}",
    ]
    if structure:
        cells.append(f"{result['structure']:.2f}" if "structure" in result else "-")
    return f"{name:<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, _WIDTHS))


# --- the command ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class EvaluateJob:
    """`tilegen evaluate`: its defaults, its checks (naming the option) and the run."""

    exemplar: Path
    images: list[Path] = field(default_factory=list)
    json_out: bool = False
    baselines: bool = False
    pieces: int = 0  # real pieces of the exemplar, the first image's size (their median)
    seeds: int = 3
    patches: int = 2000
    scales: int = 4
    seed: int = 0
    max_memory: float | None = None
    normal: str | None = None  # a material's normal convention (default: from file names, gl)
    # With --pieces, the structure figure's scorers (None: no structure figure).
    structure_scorer: StructureFactory | None = None

    def __post_init__(self) -> None:
        self.images = self.images or []  # the command passes None when no IMAGE is given

    def check(self) -> None:
        options.normal(self.normal)
        if not self.images and not self.baselines:
            raise UserError("give at least one IMAGE to score, or --baselines")
        options.positive("--pieces", self.pieces, allow_zero=True)
        if self.pieces and not self.images:
            raise UserError("--pieces cuts pieces the size of the first IMAGE: give one")
        for option in ("seeds", "patches", "scales"):
            options.positive(f"--{option}", getattr(self, option))
        options.seed(self.seed)
        memory.set_limit(self.max_memory)
        per_job = memory.evaluate_bytes(self.patches, 1)
        memory.require(per_job, f"exact OT on --patches {self.patches}", "use fewer --patches")
        metrics.PARALLEL["max"] = max(1, min(8, (memory.available() - memory.BASE) // per_job))

    def settings(self) -> dict:
        """The scoring settings, as the JSON output records them."""
        return {"scales": self.scales, "patch": 4, "patches": self.patches,
                "seeds": self.seeds, "seed": self.seed}  # fmt: skip

    def run(self, echo: Callable[[str], None]) -> None:
        """Score every image (all read before the work), echoing the table row by row."""
        from tilegen.imageio import read_image
        from tilegen.material import read_exemplar

        self.check()
        ex, layout = read_exemplar(self.exemplar, None, self.normal)
        if layout is not None:
            return _material_run(self, ex, layout, echo)
        rows = [(str(p), "image", read_image(p)) for p in self.images]
        if self.baselines:
            rows += baseline_rows(ex, baseline_images(ex))
        rows += piece_rows(ex, rows, self.pieces, self.seed)
        # Beside the pieces: both read against real pieces.
        structure = bool(self.pieces) and self.structure_scorer is not None
        score = Evaluator(
            ex, self.scales, 4, self.patches, self.seeds, self.seed,
            structure=self.structure_scorer if structure else None,
        )  # fmt: skip
        width = max(len("image"), *(len(r[0]) for r in rows))
        table = not self.json_out
        if table:
            h, w, c = ex.shape
            n = self.scales
            echo(f"exemplar {self.exemplar} ({h}x{w}, {c} channels); {n} scales of 4x4 patches,")
            echo(f"{self.patches} patches x {self.seeds} draws, seed {self.seed}")
            if structure:
                echo(STRUCTURE_LINE)
            echo(table_header(width, structure))
        results, notes = [], []
        for i, (name, kind, _), r in median_of_pieces(scored_rows(rows, score)):
            notes += r["notes"]
            results.append({"name": name, "kind": kind, **r})
            if table:
                if kind != "image" and i > 0 and rows[i - 1][1] == "image":
                    echo("-" * len(table_header(width, structure)))
                echo(table_row(name, r, width, structure))
        if table:
            for note in dict.fromkeys(notes):
                echo(f"note: {note}")
            return
        doc = {"exemplar": str(self.exemplar), "settings": self.settings(), "results": results}
        echo(json.dumps(doc, indent=2))


STRUCTURE_LINE = (
    "structure: Portilla-Simoncelli statistics (luminance, up to 5 scales, 4 orientations), "
    "z-scored against 24 real pieces the image's size; 1.0 = a typical real piece"
)

_BASELINE_NAMES = {"blur_sigma1": "blur sigma=1", "contrast_0.7": "contrast x0.7"}


def baseline_rows(exemplar: np.ndarray, baselines: dict[str, np.ndarray]) -> list[tuple]:
    """The --baselines rows: the exemplar itself, then each degraded copy."""
    rows = [("exemplar (self)", "self", exemplar)]
    return rows + [(_BASELINE_NAMES[k], "baseline", v) for k, v in baselines.items()]


def piece_rows(exemplar: np.ndarray, rows: list[tuple], count: int, seed: int) -> list[tuple]:
    """The --pieces rows: `count` real pieces of the exemplar the size of the first image
    (`real_pieces`), each named after the one row they become (median_of_pieces)."""
    if not count:
        return []
    h, w = rows[0][2].shape[:2]
    name = f"real pieces {h}x{w} (median of {count})"
    return [(name, "piece", p) for p in real_pieces(exemplar, h, w, count, seed)]


def _median(results: list):
    """The element-wise median of equally shaped results (dicts of figures, lists per level);
    what is not a number (notes, level counts) is the first result's."""
    first = results[0]
    if isinstance(first, dict):
        return {k: _median([r[k] for r in results]) for k in first}
    if isinstance(first, list) and first and isinstance(first[0], float):
        return [float(np.median(v)) for v in zip(*results)]
    if isinstance(first, float):
        return float(np.median(results))
    return first


def median_of_pieces(scored: Iterator[tuple[int, tuple, dict]]) -> Iterator[tuple]:
    """scored_rows with the "piece" rows replaced by one row of their median figures, which
    keeps every piece's debiased figure ("pieces": numbers, or {map: number} for materials)."""
    pieces, at = [], 0
    for i, row, r in scored:
        if row[1] != "piece":
            yield i, row, r
            continue
        at = at or i
        pieces.append((row, r))
    if pieces:
        results = [r for _, r in pieces]
        every = [
            {k: m["debiased"] for k, m in r["maps"].items()} if "maps" in r else r["debiased"]
            for r in results
        ]
        yield at, (pieces[0][0][0], "pieces", None), {**_median(results), "pieces": every}


def scored_rows(rows: list[tuple], score: Callable) -> Iterator[tuple[int, tuple, dict]]:
    """(i, row, score(row's image)) for each (name, kind, image) row; Ctrl-C says how far it
    got (nothing is saved, so the fix is to rerun)."""
    for i, row in enumerate(rows):
        try:
            result = score(row[2], row[0])
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted while scoring {row[0]}: {i} of {len(rows)} rows were scored "
                "(nothing is saved); rerun the same command"
            )
        yield i, row, result


def read_material_image(path: Path, layout: dict, normal: str | None) -> np.ndarray:
    """An image to score against a material: a folder of the same maps (tilegen's -o DIR),
    stacked; its normals in `normal`, else as its file name says, else the exemplar's."""
    from tilegen.material import layout_of, read_material

    if not Path(path).is_dir():
        raise UserError(
            f"{path}: the exemplar is a material, so give folders of its maps (as synth -o DIR "
            "writes them), not an image"
        )
    m = read_material(path, normal, default=layout.get("normal", "gl"))
    want, got = [x["role"] for x in layout["maps"]], [x["role"] for x in layout_of(m)["maps"]]
    if want != got:
        raise UserError(f"{path} holds the maps {got}, the exemplar {want}: give the same maps")
    return m.stack()


def _material_run(job: EvaluateJob, ex: np.ndarray, layout: dict, echo) -> None:
    """`tilegen evaluate` on a material: a row per map of every image (each map scored alone
    against the exemplar's), then the consistency figures beside the exemplar's own."""
    rows = [(str(p), "image", read_material_image(p, layout, job.normal)) for p in job.images]
    structure = bool(job.pieces) and job.structure_scorer is not None
    score = MaterialEvaluator(
        ex, layout, scales=job.scales, n=job.patches, seeds=job.seeds, seed=job.seed,
        structure=job.structure_scorer if structure else None,
    )  # fmt: skip
    if job.baselines:
        rows += baseline_rows(ex, score.baselines())
    rows += piece_rows(ex, rows, job.pieces, job.seed)
    roles = [m["role"] for m in layout["maps"]]
    width = max(len("image"), *(len(f"{r[0]} [{role}]") for r in rows for role in roles))
    table = not job.json_out
    if table:
        h, w, _ = ex.shape
        echo(f"exemplar {job.exemplar} ({h}x{w}, material: {', '.join(roles)}); every map scored")
        echo(f"alone, {job.scales} scales of 4x4 patches, {job.patches} patches x {job.seeds} "
             f"draws, seed {job.seed}")  # fmt: skip
        if structure:
            echo(STRUCTURE_LINE)
        echo(table_header(width, structure))
    results, lines = [], []
    for _, (name, kind, _), r in median_of_pieces(scored_rows(rows, score)):
        results.append({"name": name, "kind": kind, **r})
        if table:
            for role, m in r["maps"].items():
                echo(table_row(f"{name} [{role}]", m, width, structure))
            if r["consistency"]:
                lines.append(f"{name}: " + consistency_text(r["consistency"]))
    if table:
        notes = [n for r in results for m in r["maps"].values() for n in m.get("notes", [])]
        for note in dict.fromkeys(notes):
            echo(f"note: {note}")
        echo("consistency (this image / the exemplar's own; ratio 1 = as consistent):")
        for line in lines:
            echo("  " + line)
        return
    doc = {"exemplar": str(job.exemplar), "material": layout, "settings": job.settings(),
           "results": results}  # fmt: skip
    echo(json.dumps(doc, indent=2))


def consistency_text(figures: dict[str, dict]) -> str:
    """'normal~height 0.61 / 0.74 (x0.82); roughness~height -0.40 / -0.52 (x0.77)'."""
    return "; ".join(
        f"{k} {v['image']:.2f} / {v['exemplar']:.2f} (x{v['ratio']:.2f})"
        for k, v in figures.items()
    )
