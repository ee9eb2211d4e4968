"""`tilegen evaluate`: the debiased patch-OT distance, colour W1, spectrum, baselines and CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tilegen.baselines import baseline_images, real_pieces
from tilegen.errors import UserError
from tilegen.evaluator import Evaluator
from tilegen.imageio import read_image, write_image
from tilegen.metrics import (
    color_w1,
    gaussian_pyramid_np,
    patch_ot_distance,
    random_patches,
    spectrum_distance,
    w2_squared,
)

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
FAST = dict(n=500, seeds=2, scales=4)  # small and quick, still far from the noise floor


def texture(name: str) -> np.ndarray:
    return read_image(DATA / f"{name}_128.png")


def tilegen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=ROOT
    )


# --- pyramid and patches ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(37, 50, 3), (64, 64, 1), (33, 20, 4)])
def test_pyramid_matches_the_training_pyramid(shape):
    torch = pytest.importorskip("torch")
    from train.patch_ot import gaussian_pyramid

    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    ours = gaussian_pyramid_np(img, 3)
    theirs = gaussian_pyramid(torch.from_numpy(img).permute(2, 0, 1)[None], 3, periodic=False)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        b = b[0].permute(1, 2, 0).numpy()
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_random_patches_are_stride1_patches_without_wrapping():
    img = np.random.default_rng(1).random((9, 7, 2), dtype=np.float32)
    rows = random_patches(img, 4, 300, np.random.default_rng(2))
    assert rows.shape == (300, 2 * 16)
    # every row is one of the (9-3)*(7-3) in-image patches, channel-major (C, p, p)
    all_patches = {
        img[y : y + 4, x : x + 4].transpose(2, 0, 1).tobytes() for y in range(6) for x in range(4)
    }
    assert all(r.tobytes() in all_patches for r in rows)
    assert len({r.tobytes() for r in rows}) == 24  # 300 draws hit every position


def test_w2_squared_is_per_dimension_and_exact():
    rng = np.random.default_rng(3)
    a = rng.random((50, 8))
    assert w2_squared(a, a) == pytest.approx(0.0, abs=1e-12)
    # a shift by t in every coordinate: W2^2 = D t^2, per dimension t^2
    assert w2_squared(a, a + 0.1) == pytest.approx(0.01, rel=1e-9)


def test_missing_pot_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)  # import ot -> ImportError
    with pytest.raises(UserError, match="POT is not installed: pip install pot"):
        w2_squared(np.zeros((3, 2)), np.ones((3, 2)))


# --- the debiased patch distance against its baselines ------------------------------------------


@pytest.fixture(scope="module", params=["bark", "white_tiles"])
def scores(request) -> dict[str, dict]:
    ex = texture(request.param)
    noise = np.random.default_rng(0).random(ex.shape, dtype=np.float32)
    score = Evaluator(ex, **FAST)
    rows = {"self": ex, **baseline_images(ex), "noise": noise}
    return {k: score(v, k) for k, v in rows.items()}


def test_exemplar_against_itself_scores_about_zero(scores):
    blur = scores["blur_sigma1"]["debiased"]
    assert abs(scores["self"]["debiased"]) < 0.2 * blur, scores["self"]["per_level"]
    # ... while the plain W2^2 of the same comparison is mostly sampling bias (the reason for
    # debiasing: on some textures it rates a blurred copy better than the exemplar itself)
    assert scores["self"]["plain"] > 10 * abs(scores["self"]["debiased"])


def test_degraded_copies_score_clearly_above_zero(scores):
    s = abs(scores["self"]["debiased"])
    for k in ("blur_sigma1", "contrast_0.7"):
        assert scores[k]["debiased"] > 3 * s, (k, scores[k]["debiased"], s)


def test_noise_scores_far_worse_than_both_baselines(scores):
    worst = max(scores["blur_sigma1"]["debiased"], scores["contrast_0.7"]["debiased"])
    assert scores["noise"]["debiased"] > 10 * worst
    assert scores["noise"]["color_w1"] > 3 * scores["contrast_0.7"]["color_w1"]


def test_colour_w1_sees_lost_contrast(scores):
    assert scores["self"]["color_w1"] < 1e-12
    assert scores["contrast_0.7"]["color_w1"] > 1e-3


def test_results_are_reproducible_and_seeded():
    ex = texture("grass")[:64, :64]
    im = texture("grass")[64:, 64:]
    kw = dict(n=200, seeds=1, scales=3)
    a = patch_ot_distance(ex, im, seed=5, **kw)
    assert a == patch_ot_distance(ex, im, seed=5, **kw)
    assert a["debiased"] != patch_ot_distance(ex, im, seed=6, **kw)["debiased"]
    assert a["levels"] == 3 and len(a["per_level"]) == 3 and a["notes"] == []


def test_small_images_use_fewer_levels_or_fail_clearly():
    ex = texture("grass")
    r = patch_ot_distance(ex, ex[:20, :20], n=100, seeds=1, scales=4)
    assert r["levels"] == 3 and "3 of 4" in r["notes"][0]  # 20 -> 10 -> 5 -> 2 (< 4)
    with pytest.raises(UserError, match="smaller than the 4x4 patch"):
        patch_ot_distance(ex, ex[:3, :10], n=100, seeds=1)


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_any_channel_count(channels):
    rng = np.random.default_rng(channels)
    ex = rng.random((32, 32, channels), dtype=np.float32)
    r = Evaluator(ex, n=100, seeds=1, scales=2)(ex * 0.5)
    assert r["debiased"] > 0 and r["color_w1"] > 0 and np.isfinite(r["spectrum"])


def test_channel_mismatch_is_a_user_error():
    ex = texture("grass")
    with pytest.raises(UserError, match="3 channels but"):
        Evaluator(ex, n=50, seeds=1)(ex[:, :, :1])
    with pytest.raises(UserError):
        color_w1(ex, ex[:, :, :1])


# --- colour and spectrum ------------------------------------------------------------------------


def test_colour_w1_is_exact_for_different_sizes():
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = texture("bark")[:50, :70], texture("grass")[:33, :41]
    want = np.mean(
        [scipy_stats.wasserstein_distance(a[..., k].ravel(), b[..., k].ravel()) for k in range(3)]
    )
    assert color_w1(a, b) == pytest.approx(want, rel=1e-9)


def test_spectrum_sees_blur_more_than_another_crop():
    img = texture("bark")
    a, other = img[:64, :64], img[64:, 64:]
    blurred = baseline_images(a)["blur_sigma1"]
    assert spectrum_distance(a, a) == 0.0
    assert spectrum_distance(a, blurred) > 2 * spectrum_distance(a, other)


def test_spectrum_is_size_independent_and_reads_contrast_in_decades():
    img = texture("fabric_blue")
    # another crop, of another size: same texture, near-equal spectra
    assert spectrum_distance(img[:64, :64], img[40:, 30:]) < 0.2
    # x0.7 contrast scales the power by 0.49 at every frequency: |log10 0.49| = 0.310 decades
    flat = baseline_images(img, bits=None)["contrast_0.7"]
    assert spectrum_distance(img, flat) == pytest.approx(-np.log10(0.49), abs=1e-6)


def test_baselines_are_the_documented_copies():
    ex = texture("grass")
    b = baseline_images(ex, bits=None)
    assert set(b) == {"blur_sigma1", "contrast_0.7"}
    mean = ex.mean(axis=(0, 1))
    np.testing.assert_allclose(b["contrast_0.7"], mean + 0.7 * (ex - mean), atol=1e-5)
    np.testing.assert_allclose(b["blur_sigma1"].mean(axis=(0, 1)), mean, atol=2e-3)
    assert b["blur_sigma1"].std() < ex.std()
    q = baseline_images(ex)["blur_sigma1"]  # rounded to 8 bits by default
    np.testing.assert_array_equal(q, np.rint(q * 255) / 255)


def test_real_pieces_are_crops_of_the_exemplar():
    ex = texture("bark")
    pieces = real_pieces(ex, 40, 56, count=5, seed=3)
    assert len(pieces) == 5 and all(p.shape == (40, 56, 3) for p in pieces)
    windows = np.lib.stride_tricks.sliding_window_view(ex, (40, 56, 3))[:, :, 0]
    for p in pieces:  # each is the exemplar's window at some place, and they differ
        assert (windows == p).all(axis=(2, 3, 4)).any()
    assert len({p.tobytes() for p in pieces}) == 5
    again = real_pieces(ex, 40, 56, count=5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(pieces, again))
    with pytest.raises(UserError, match="does not fit"):
        real_pieces(ex, 129, 64)


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_json(tmp_path):
    ex = DATA / "grass_128.png"
    other = tmp_path / "other.png"
    write_image(other, texture("grass")[::-1])  # a flipped copy: same texture
    out = tilegen(
        "evaluate", str(ex), str(other), "--json", "--baselines",
        "--patches", "200", "--seeds", "1", "--scales", "3",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["settings"] == {"scales": 3, "patch": 4, "patches": 200, "seeds": 1, "seed": 0}
    names = [r["name"] for r in doc["results"]]
    assert names == [str(other), "exemplar (self)", "blur sigma=1", "contrast x0.7"]
    for r in doc["results"]:
        assert {"debiased", "plain", "per_level", "color_w1", "spectrum", "levels"} <= set(r)
        assert len(r["per_level"]) == r["levels"] == 3


def test_cli_pieces_row_is_the_median_of_real_pieces(tmp_path):
    ex = DATA / "grass_128.png"
    image = tmp_path / "small.png"
    write_image(image, texture("dirt_pebbles")[:64, :64])  # another texture, 64x64
    out = tilegen("evaluate", str(ex), str(image), "--pieces", "3", "--json",
                  "--patches", "150", "--seeds", "1", "--scales", "3")  # fmt: skip
    assert out.returncode == 0, out.stderr
    image_row, pieces = json.loads(out.stdout)["results"]
    assert pieces["name"] == "real pieces 64x64 (median of 3)" and pieces["kind"] == "pieces"
    assert len(pieces["pieces"]) == 3
    assert pieces["debiased"] == pytest.approx(float(np.median(pieces["pieces"])))
    assert len(pieces["per_level"]) == 3
    # real grass scores far closer to grass than a piece of another texture does
    assert max(pieces["pieces"]) < image_row["debiased"] / 2
    if "structure" in image_row:  # beside it, the structure figure (torch and plenoptic there)
        assert pieces["structure"] < 1.5 < 3 < image_row["structure"]


def test_cli_pieces_table_has_the_structure_column(tmp_path):
    pytest.importorskip("plenoptic")
    image = tmp_path / "small.png"
    write_image(image, texture("bark")[32:96, 32:96])
    out = tilegen("evaluate", str(DATA / "bark_128.png"), str(image), "--pieces", "2",
                  "--patches", "100", "--seeds", "1", "--scales", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2].startswith("structure: Portilla-Simoncelli statistics")
    assert lines[3].split()[-1] == "structure"
    assert float(lines[4].split()[-1]) < 1.5  # a real piece of bark


def test_cli_table():
    out = tilegen("evaluate", str(DATA / "grass_128.png"), "--baselines",
                  "--patches", "100", "--seeds", "1", "--scales", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "patch-OT debiased" in out.stdout and "contrast x0.7" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope.png"], "nope.png"),  # a missing image
        ([], "at least one IMAGE"),  # nothing to score
        (["--baselines", "--seeds", "0"], "must be positive"),
        (["--baselines", "--pieces", "2"], "the size of the first IMAGE"),
        ([str(DATA / "bark_128.png"), "--pieces", "-1"], "--pieces"),
    ],
)
def test_cli_errors_are_one_line(args, message):
    out = tilegen("evaluate", str(DATA / "grass_128.png"), *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
