"""The structure figure (train.structure): Portilla-Simoncelli statistics z-scored
against real pieces of the exemplar, 1.0 = a typical real piece. On the real 128^2 test
textures, 64^2 images (3 pyramid scales)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("plenoptic")

from tilegen.baselines import gaussian_blur, real_pieces  # noqa: E402
from tilegen.errors import UserError  # noqa: E402
from tilegen.evaluator import Evaluator  # noqa: E402
from tilegen.imageio import read_image  # noqa: E402
from train.structure import (  # noqa: E402
    StructureScorer,
    luminance,
    scales_for,
    shuffle_blocks,
    structure_scorer,
)

DATA = Path(__file__).parent / "data"
BAR = 2.0  # the yardstick's structure bar


def texture(name: str) -> np.ndarray:
    return read_image(DATA / f"{name}_128.png")


@pytest.fixture(scope="module")
def scorers() -> dict:
    return {n: StructureScorer(texture(n), 64, 64, seed=0) for n in ("bark", "white_tiles")}


def others(name: str, count: int = 4) -> list[np.ndarray]:
    """Real pieces from a stream the scorer's reference pieces do not use."""
    return real_pieces(texture(name), 64, 64, count, [0, 2])


@pytest.mark.parametrize("name", ["bark", "white_tiles"])
def test_real_pieces_pass_and_blurred_ones_fail(scorers, name):
    sc = scorers[name]
    assert np.median(sc.pieces) == pytest.approx(1.0)  # the unit, leave-one-out
    real = sc.many(others(name))
    assert max(real) < 1.5
    blurred = sc.many([gaussian_blur(p, 2.0) for p in others(name)])
    assert min(blurred) > BAR
    assert min(blurred) > 2 * max(real)


def test_a_shuffled_layout_fails_where_the_patches_are_right(scorers):
    # The grout lines of white tiles cut into 16-px blocks and shuffled: every 16x16 patch is
    # real, the long lines are broken.
    rng = np.random.default_rng(0)
    sc = scorers["white_tiles"]
    shuffled = sc.many([shuffle_blocks(p, 16, rng) for p in others("white_tiles")])
    assert min(shuffled) > BAR


def test_smaller_blocks_score_worse():
    ex = texture("onyx_marble")
    sc = StructureScorer(ex, 64, 64, seed=0)
    rng = np.random.default_rng(1)
    pieces = others("onyx_marble", 6)
    real = np.median(sc.many(pieces))
    s16 = np.median(sc.many([shuffle_blocks(p, 16, rng) for p in pieces]))
    s8 = np.median(sc.many([shuffle_blocks(p, 8, rng) for p in pieces]))
    assert real < s16 < s8


def test_deterministic_from_the_seed():
    ex = texture("bark")
    img = others("bark", 1)[0]
    a, b = StructureScorer(ex, 64, 64, seed=3), StructureScorer(ex, 64, 64, seed=3)
    assert a(img) == b(img)
    assert a.pieces == b.pieces
    assert StructureScorer(ex, 64, 64, seed=4)(img) != a(img)


def test_luminance_of_stacked_maps_is_the_albedos():
    # A material's maps stacked as channels (albedo first, then e.g. height and roughness):
    # the structure is read from the albedo, not from the first channel alone.
    rgb = texture("bark")
    grey = rgb[:, :, :1]
    stacked = np.concatenate([rgb, grey, grey], axis=2)
    assert np.array_equal(luminance(stacked), luminance(rgb))
    assert not np.array_equal(luminance(stacked), rgb[:, :, 0].astype(np.float64))
    assert np.array_equal(luminance(grey), grey[:, :, 0].astype(np.float64))


def test_sizes_it_refuses():
    assert scales_for(256, 256) == 5 and scales_for(64, 64) == 3 and scales_for(48, 64) == 2
    with pytest.raises(UserError, match="too small to cut distinct"):
        StructureScorer(texture("bark"), 100, 100)
    with pytest.raises(UserError, match="too small for the structure statistic"):
        StructureScorer(texture("bark"), 24, 24)
    sc = StructureScorer(texture("bark"), 64, 64)
    with pytest.raises(UserError, match="set up for 64x64"):
        sc(np.zeros((32, 32, 3), np.float32))


def test_evaluator_adds_it_or_says_why_not(monkeypatch):
    ex = texture("bark")
    ev = Evaluator(ex, n=200, seeds=1, scales=2, structure=structure_scorer)
    r = ev(others("bark", 1)[0])
    assert r["structure"] < 1.5
    whole = ev(ex)  # the exemplar's own size: no distinct pieces to compare with
    assert "structure" not in whole and "too small to cut distinct" in whole["notes"][0]
    from cli import _structure_scorer  # the factory `tilegen evaluate` passes

    monkeypatch.setitem(sys.modules, "train.structure", None)  # as without torch
    r = Evaluator(ex, n=200, seeds=1, scales=2, structure=_structure_scorer)(others("bark", 1)[0])
    assert "structure" not in r
    assert r["notes"] == [
        "no structure figure: it needs torch and plenoptic (pip install 'tilegen[train]')"
    ]
