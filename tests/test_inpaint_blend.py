"""Inpainting and texture barycenters (train/inpaint.py, train/blend.py, `tilegen inpaint|blend`).

Small on purpose (images of 32 to 96 px, 3 scales, J <= 400 target patches, <= 100 iterations,
the CLI run in-process but once): these optimisations are the slowest tests of the suite.

Scores are the debiased multiscale patch-OT distance of tilegen/metrics.py (3 levels, 500
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

from tilegen.errors import UserError
from tilegen.imageio import read_image, write_image
from train.blend import BlendConfig, blend, ramp_weights
from train.inpaint import InpaintConfig, inpaint
from train.patch_ot import OTConfig, PatchOTLoss, SemiDiscreteOT
from train.synth import SynthConfig, synthesize

DATA = Path(__file__).parent / "data"
OT = OTConfig(scales=3, n_target=400, psi_batch=512)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread for this module, restored after. These are many small matmuls: on a
    shared 2-core machine two OpenMP threads measured 10 to 30 times slower than one (they spin
    waiting for each other), on an idle one at most about 2 times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load(name: str) -> np.ndarray:
    return read_image(DATA / f"{name}_128.png")


def tilegen(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def tilegen_in_process(*args: str):
    """The CLI without a new interpreter (no torch import to pay for); errors are raised."""
    from typer.testing import CliRunner

    from cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=True)


def distance(exemplar: np.ndarray, image: np.ndarray) -> float:
    from tilegen.metrics import patch_ot_distance

    return patch_ot_distance(exemplar, image, scales=3, n=500, seeds=3)["debiased"]


def blurred(img: np.ndarray) -> np.ndarray:
    from tilegen.baselines import gaussian_blur

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
    cfg = InpaintConfig(iters=100, seed=0, ot=OT)
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
    img = load("grass")[:40, :40]
    mask = np.zeros(img.shape[:2], bool)
    mask[:12, :16] = True  # the top-left corner
    mask[34:, 26:] = True  # and the bottom-right one
    out = inpaint(img, mask, InpaintConfig(iters=30, seed=1, ot=OT))
    assert np.array_equal(out[~mask], img[~mask])
    assert np.isfinite(out).all()
    # A texture, not one flat colour: the fill varies about as much as the known pixels do.
    assert out[mask].std(0).mean() > 0.5 * img[~mask].std(0).mean()


def test_inpaint_cli_writes_known_pixels_byte_identical(tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, load("grass")[:40, :40])
    r = tilegen_in_process("inpaint", str(src), "--box", "10", "30", "12", "10", "-o", str(out),
                           "--iters", "3", "--scales", "2", "--patch", "3",
                           "--lr", "0.02")  # fmt: skip
    assert r.exit_code == 0, r.output
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
    """Grass (A) and white tiles (B), 64x64 crops: 32x32 barycenters for every weight and
    plain syntheses of A and B with the same settings, and the distances the tests read."""
    a, b = load("grass")[:64, :64], load("white_tiles")[:64, :64]
    ot = OTConfig(scales=3, n_target=300, psi_batch=512, psi_steps=5)
    cfg = dict(size=(32, 32), iters=40, seed=0, ot=ot)
    out = {w: blend([a, b], [1 - w, w], BlendConfig(**cfg)) for w in WEIGHTS}
    synth = {"A": synthesize(a, SynthConfig(**cfg)), "B": synthesize(b, SynthConfig(**cfg))}
    d = {
        "to_a": [distance(a, out[w]) for w in WEIGHTS],
        "b_end": distance(b, out[1.0]),
        "synth_a": distance(a, synth["A"]),
        "synth_b": distance(b, synth["B"]),
        "blur_a": distance(a, blurred(a)),
        "blur_b": distance(b, blurred(b)),
    }
    return out, synth, d


def test_weight_0_and_1_are_synth_of_a_and_b(blends):
    out, synth, d = blends
    # A weight-0 exemplar is no part of the objective, so with the same seed the barycenter at
    # an end is exactly the synthesis of the other exemplar ...
    assert np.array_equal(out[0.0], synth["A"]) and np.array_equal(out[1.0], synth["B"])
    # ... and so scores like it, well within a quarter of the blur baseline.
    assert abs(d["to_a"][0] - d["synth_a"]) < 0.25 * d["blur_a"]
    assert abs(d["b_end"] - d["synth_b"]) < 0.25 * d["blur_b"]


def test_distance_to_a_grows_with_the_weight(blends):
    d = blends[2]["to_a"]
    assert all(x < y for x, y in zip(d, d[1:])), d


def test_ramp_goes_from_a_to_b():
    a, b = load("grass")[:64, :64], load("white_tiles")[:64, :64]
    cfg = BlendConfig(size=(24, 72), iters=30, seed=0, ot=OTConfig(scales=2, n_target=300))
    out = blend([a, b], None, cfg, ramp="horizontal")
    # Colour means of the left, middle and right thirds move from A's to B's.
    ma, mb = a.mean((0, 1)), b.mean((0, 1))
    share = [
        float(np.dot(out[:, i : i + 24].mean((0, 1)) - ma, mb - ma) / np.dot(mb - ma, mb - ma))
        for i in (0, 24, 48)
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
    r = tilegen_in_process("blend", str(a), str(b), "--weight", "0.3", "--size", "24", "40",
                           "-o", str(out), "--iters", "2", "--scales", "2", "--patch", "3",
                           "--lr", "0.02")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_image(out).shape == (24, 40, 3)
    bad = [
        (["--weights", "1,2,3"], "3 values for 2"),
        (["--weight", "1.5"], "[0, 1]"),
        (["--weight", "0.5", "--ramp", "vertical"], "--ramp sets the weights"),
        (["--weights", "0.5", "0.5"], "give the weights as one list"),  # 0.5 read as an image
        (["--lr", "0"], "--lr 0.0: the step must be a positive number"),
        (["--patch", "0"], "--patch must be positive"),
    ]
    for extra, message in bad:
        r = tilegen_in_process("blend", str(a), str(b), "--size", "24", "40", "-o", str(out),
                               "--overwrite", *extra)  # fmt: skip
        assert isinstance(r.exception, UserError) and message in str(r.exception), r.output
