"""All figures of many images against one exemplar, whose own terms are computed once: the
three of tilegen/metrics.py, the structure figure when a scorer factory is given, and for a
material every map alone plus the cross-map consistency (normals against the height map's
slopes, grey maps against each other) compared with the exemplar's own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tilegen.baselines import baseline_images
from tilegen.errors import UserError
from tilegen.metrics import PatchOTScorer, as_hwc, check_channels, color_w1, spectrum_distance

# (exemplar, height, width, seed) -> a scorer of height x width images, or a one-line note
# saying why there is none (train/structure.py's `structure_scorer`; tilegen imports no torch).
StructureFactory = Callable[[np.ndarray, int, int, int], object]


class Evaluator:
    """All figures for many images against one exemplar (the exemplar's terms are shared).

    `structure`, a StructureFactory (train.structure.structure_scorer), adds the structure
    figure: Portilla-Simoncelli statistics against real pieces of the exemplar the image's size,
    1.0 a typical real piece. Where the factory gives a note instead of a scorer (torch or
    plenoptic missing, an image too small for it), the figure is left out with that note.
    """

    def __init__(
        self,
        exemplar: np.ndarray,
        scales: int = 4,
        patch: int = 4,
        n: int = 2000,
        seeds: int = 3,
        seed: int = 0,
        structure: StructureFactory | None = None,
    ):
        self.exemplar = as_hwc(exemplar, "the exemplar")
        self.patch_ot = PatchOTScorer(self.exemplar, scales, patch, n, seeds, seed)
        self.structure, self.seed = structure, seed
        self._structure: dict[tuple[int, int], object] = {}  # one scorer per image size

    def __call__(self, image: np.ndarray, name: str = "the image") -> dict:
        image = as_hwc(image, name)
        check_channels(self.exemplar, image, name)
        out = self.patch_ot.score(image, name)
        notes = out.pop("notes")
        out["color_w1"] = color_w1(self.exemplar, image)
        out["spectrum"] = spectrum_distance(self.exemplar, image)
        if self.structure:
            scorer = self.structure_scorer(*image.shape[:2])
            if isinstance(scorer, str):
                notes.append(scorer)
            else:
                out["structure"] = scorer(image)
        out["notes"] = notes
        return out

    def structure_scorer(self, height: int, width: int) -> object:
        """The structure scorer for images of this size (cached), or a note saying why there
        is none (torch or plenoptic missing, an image too small or larger than the exemplar)."""
        key = (height, width)
        if key not in self._structure:
            self._structure[key] = self.structure(self.exemplar, height, width, self.seed)
        return self._structure[key]


class MaterialEvaluator:
    """A material's figures: every map alone (an Evaluator per map) and the cross-map
    consistency compared with the exemplar's (tilegen.material.compare_consistency)."""

    def __init__(self, exemplar: np.ndarray, layout: dict, **kw) -> None:
        from tilegen.material import consistency, spans, unstack

        self.layout, self.spans = layout, spans(layout)
        self.maps = unstack(as_hwc(exemplar, "the exemplar"), self.spans)
        self.per_map = {role: Evaluator(m, **kw) for role, m in self.maps.items()}
        self.exemplar_consistency = consistency(self.maps)

    def __call__(self, image: np.ndarray, name: str = "the image") -> dict:
        """{"maps": {role: Evaluator's figures}, "consistency": {figure: {exemplar, image,
        ratio}}}."""
        from tilegen.material import compare_consistency, consistency, unstack

        image = as_hwc(image, name)
        if image.shape[2] != self.spans[-1][2]:
            raise UserError(
                f"{name} has {image.shape[2]} channels, the material {self.spans[-1][2]} "
                f"({', '.join(r for r, _, _ in self.spans)}): compare a material with a material"
            )
        maps = unstack(image, self.spans)
        scored = {r: self.per_map[r](m, f"{name} [{r}]") for r, m in maps.items()}
        mine = consistency(maps)
        return {"maps": scored, "consistency": compare_consistency(self.exemplar_consistency, mine)}

    def baselines(self, bits: int | None = 8) -> dict[str, np.ndarray]:
        """The sigma=1 blur and x0.7-contrast copies of the stacked exemplar (each map's own)."""
        stacked = np.concatenate([self.maps[r] for r, _, _ in self.spans], axis=2)
        return baseline_images(stacked, bits)


def evaluate(
    exemplar: np.ndarray,
    image: np.ndarray,
    scales: int = 4,
    patch: int = 4,
    n: int = 2000,
    seeds: int = 3,
    seed: int = 0,
) -> dict:
    """{"debiased", "plain", "per_level", "per_level_plain", "levels", "color_w1", "spectrum",
    "notes"}: every figure of `image` against `exemplar` (docs/EVALUATE.md)."""
    return Evaluator(exemplar, scales, patch, n, seeds, seed)(image)
