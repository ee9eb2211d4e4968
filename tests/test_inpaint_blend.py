"""Inpainting and texture barycenters (train/inpaint.py, train/blend.py, `tilegen inpaint|blend`).

Small on purpose (64 px images, 3 scales, J <= 500 target patches, <= 120 iterations): these
optimisations are the slowest tests of the suite.

Scores are the debiased multiscale patch-OT distance of tilegen/evaluate.py (3 levels, 500
patches, 3 draws). The "blurred (sigma = 1) fill" an inpainting must beat is the hole's *true*
content (the test image is a crop of a whole photo) blurred with sigma = 1: it has the right
colours and layout and only lacks the finest detail, a stronger baseline than a blurred diffusion
of the border pixels, which has no texture at all.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tilegen.imageio import read_image, write_image
from train.blend import BlendConfig, blend, ramp_weights
from train.inpaint import InpaintConfig, inpaint
from train.patch_ot import OTConfig, PatchOTLoss, SemiDiscreteOT
from train.synth import SynthConfig, synthesize

DATA = Path(__file__).parent / "data"
OT = OTConfig(scales=3, n_target=500, psi_batch=1024)


def load(name: str) -> np.ndarray:
    return read_image(DATA / f"{name}_128.png")


def tilegen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True)


def distance(exemplar: np.ndarray, image: np.ndarray) -> float:
    from tilegen.evaluate import patch_ot_distance

    return patch_ot_distance(exemplar, image, scales=3, n=500, seeds=3)["debiased"]


def blurred(img: np.ndarray) -> np.ndarray:
    from tilegen.evaluate import gaussian_blur

    return gaussian_blur(img, 1.0)


# --- the engine's per-patch weights and given targets ------------------------------------------


def test_integer_weights_equal_repeated_rows():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 12, generator=g), torch.rand(40, 12, generator=g)
    w = torch.randint(1, 4, (60,), generator=g)
    weighted, repeated = SemiDiscreteOT(y), SemiDiscreteOT(y)
    for _ in range(5):
        weighted.ascend(x, steps=20, lr=0.05, batch=10**9, weights=w.float())
        repeated.ascend(x.repeat_interleave(w, 0), steps=20, lr=0.05, batch=10**9)
    torch.testing.assert_close(weighted.psi, repeated.psi, rtol=1e-4, atol=1e-6)
    # The weighted loss is the mean over the rows of w_i [c - psi] (+ a constant): its gradient
    # is row i's displacement scaled by w_i.
    xg = x.clone().requires_grad_()
    weighted.loss(xg, w.float()).backward()
    sigma, _ = weighted.assign(x)
    torch.testing.assert_close(xg.grad, 2 * w[:, None] * (x - y[sigma]) / 60)
    # Equal weights are the plain problem.
    plain, ones = SemiDiscreteOT(y), SemiDiscreteOT(y)
    plain.ascend(x, steps=10, lr=0.05, batch=10**9)
    ones.ascend(x, steps=10, lr=0.05, batch=10**9, weights=torch.full((60,), 0.5))
    torch.testing.assert_close(plain.psi, ones.psi)
    torch.testing.assert_close(plain.loss(x), ones.loss(x, torch.ones(60)))


def test_loss_from_given_targets():
    g = torch.Generator().manual_seed(0)
    cfg = OTConfig(scales=2)
    targets = [torch.rand(30, 48, generator=g), torch.rand(20, 48, generator=g)]
    loss = PatchOTLoss.from_targets(targets, cfg, periodic=True, generator=g)
    assert [s.n_target for s in loss.scales] == [30, 20]
    img = torch.rand(1, 3, 16, 16, generator=g)
    loss.fit_potentials(img)
    assert torch.isfinite(loss.loss(img))
    with pytest.raises(ValueError, match="non-empty"):
        PatchOTLoss.from_targets([targets[0], targets[0][:0]], cfg, True, g)


# --- inpainting ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirt_inpainted():
    """A 64x96 crop of dirt with a 32x32 hole on the right; the left 64x48 is the reference."""
    img = load("dirt_pebbles")[:64, :96]
    mask = np.zeros(img.shape[:2], bool)
    mask[16:48, 56:88] = True
    cfg = InpaintConfig(iters=120, seed=0, ot=OT)
    return img, mask, inpaint(img, mask, cfg)


def test_inpainting_keeps_known_pixels_exactly(dirt_inpainted):
    img, mask, out = dirt_inpainted
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.array_equal(out[~mask], img[~mask])  # bit for bit
    assert np.all((out >= 0) & (out <= 1))
    assert not np.array_equal(out[mask], img[mask])  # the hole was filled, not restored


def test_filled_hole_beats_a_blurred_fill(dirt_inpainted):
    img, mask, out = dirt_inpainted
    reference = img[:, :48]  # known and clear of the hole

    def hole(a):
        return a[16:48, 56:88]

    d_fill = distance(reference, hole(out))
    d_blur = distance(reference, hole(blurred(img)))
    assert d_fill < d_blur, (d_fill, d_blur)


def test_hole_touching_the_border():
    img = load("grass")[:48, :48]
    mask = np.zeros(img.shape[:2], bool)
    mask[:16, :20] = True  # the top-left corner
    mask[40:, 30:] = True  # and the bottom-right one
    out = inpaint(img, mask, InpaintConfig(iters=40, seed=1, ot=OT))
    assert np.array_equal(out[~mask], img[~mask])
    assert np.isfinite(out).all()
    # A texture, not one flat colour: the fill varies about as much as the known pixels do.
    assert out[mask].std(0).mean() > 0.5 * img[~mask].std(0).mean()


def test_inpaint_cli_writes_known_pixels_byte_identical(tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, load("grass")[:40, :40])
    r = tilegen("inpaint", str(src), "--box", "10", "30", "12", "10", "-o", str(out),
                "--iters", "3", "--scales", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(out))
    known = np.ones(a.shape[:2], bool)
    known[10:22, 30:40] = False
    assert a.shape == b.shape and np.array_equal(a[known], b[known])


def test_bad_masks_give_one_clear_line(tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, load("grass")[:40, :40])
    Image.new("L", (30, 40), 255).save(tmp_path / "small.png")
    r = tilegen("inpaint", str(src), "--mask", str(tmp_path / "small.png"), "-o", str(out))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    assert "40x30" in lines[0] and "the image's size" in lines[0]
    assert not out.exists()

    img = load("grass")[:40, :40]
    with pytest.raises(ValueError, match="same size"):
        inpaint(img, np.zeros((40, 30), bool), InpaintConfig(iters=1, ot=OT))
    with pytest.raises(ValueError, match="empty"):
        inpaint(img, np.zeros((40, 40), bool), InpaintConfig(iters=1, ot=OT))
    with pytest.raises(ValueError, match="whole image"):
        inpaint(img, np.ones((40, 40), bool), InpaintConfig(iters=1, ot=OT))


# --- blending -----------------------------------------------------------------------------------

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def blends():
    """Grass (A) and white tiles (B), 64x64 crops; 48x48 outputs for every weight and synth."""
    a, b = load("grass")[:64, :64], load("white_tiles")[:64, :64]
    cfg = dict(size=(48, 48), iters=80, seed=0, ot=OT)
    out = {w: blend([a, b], [1 - w, w], BlendConfig(**cfg)) for w in WEIGHTS}
    synth = {name: synthesize(ex, SynthConfig(**cfg)) for name, ex in (("A", a), ("B", b))}
    return a, b, out, synth


def test_weight_0_and_1_are_synth_of_a_and_b(blends):
    a, b, out, synth = blends
    # A weight-0 exemplar is no part of the objective, so with the same seed the barycenter at
    # an end is exactly the synthesis of the other exemplar ...
    assert np.array_equal(out[0.0], synth["A"]) and np.array_equal(out[1.0], synth["B"])
    # ... and so scores like it, well within a quarter of the blur baseline.
    for ex, w, name in ((a, 0.0, "A"), (b, 1.0, "B")):
        gap = abs(distance(ex, out[w]) - distance(ex, synth[name]))
        assert gap < 0.25 * distance(ex, blurred(ex))


def test_distance_to_a_grows_with_the_weight(blends):
    a, b, out, _ = blends
    d = [distance(a, out[w]) for w in WEIGHTS]
    assert all(x < y for x, y in zip(d, d[1:])), d


def test_ramp_goes_from_a_to_b():
    a, b = load("grass")[:64, :64], load("white_tiles")[:64, :64]
    cfg = BlendConfig(size=(32, 96), iters=40, seed=0, ot=OT)
    out = blend([a, b], None, cfg, ramp="horizontal")
    # Colour means of the left, middle and right thirds move from A's to B's.
    ma, mb = a.mean((0, 1)), b.mean((0, 1))
    share = [
        float(np.dot(out[:, i : i + 32].mean((0, 1)) - ma, mb - ma) / np.dot(mb - ma, mb - ma))
        for i in (0, 32, 64)
    ]
    assert share[0] < 0.25 < share[1] < 0.75 < share[2], share
    with pytest.raises(ValueError, match="cannot tile"):
        blend([a, b], None, BlendConfig(size=(32, 32), periodic=True, ot=OT), ramp="vertical")


def test_ramp_weights_sum_to_one_and_run_from_a_to_b():
    cfg = OTConfig(scales=2)
    wa, wb = ramp_weights((16, 40), 2, "horizontal", cfg)
    for a_l, b_l, grid in zip(wa, wb, [(13, 37), (5, 17)]):  # patch positions per level
        torch.testing.assert_close(a_l + b_l, torch.ones_like(a_l))
        b_l = b_l.view(grid)
        assert torch.all(b_l == b_l[:1])  # constant down each column
        row = b_l[0]
        assert row[0] == 0 and row[-1] == 1 and torch.all(row[1:] >= row[:-1])
    c = ramp_weights((40, 16), 3, "vertical", cfg)[2][0].view(37, 13)  # C's share, top to bottom
    assert torch.all(c == c[:, :1]) and c[0, 0] == 0 and c[-1, 0] == 1


def test_blend_cli(tmp_path):
    a, b, out = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "o.png"
    write_image(a, load("grass")[:32, :32])
    write_image(b, load("white_tiles")[:32, :32])
    r = tilegen("blend", str(a), str(b), "--weight", "0.3", "--size", "24", "40", "-o", str(out),
                "--iters", "2", "--scales", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert read_image(out).shape == (24, 40, 3)
    bad = [
        (["--weights", "1,2,3"], "3 values for 2"),
        (["--weight", "1.5"], "[0, 1]"),
        (["--weight", "0.5", "--ramp", "vertical"], "--ramp sets the weights"),
    ]
    for extra, message in bad:
        r = tilegen("blend", str(a), str(b), "--size", "24", "40", "-o", str(out), "--overwrite",
                    *extra)  # fmt: skip
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
