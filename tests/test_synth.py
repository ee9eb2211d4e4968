"""Alg. 1 end to end: quality gain, seamless tiling, reproducibility, inputs and errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tilegen.imageio import read_image, write_image
from train.patch_ot import OTConfig, SemiDiscreteOT, extract_patches, gaussian_pyramid
from train.synth import SynthConfig, synthesize, to_tensor

DATA = Path(__file__).parent / "data"
SMALL = OTConfig(scales=3, n_target=500)  # a 64x64 exemplar has few coarse patches anyway


def crop64(name: str) -> np.ndarray:
    return read_image(DATA / f"{name}_128.png")[32:96, 32:96]


def tilegen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def bark_synth() -> tuple[np.ndarray, np.ndarray]:
    """A 64x64 periodic synthesis of a 64x64 bark crop (shared by the tests below)."""
    exemplar = crop64("bark")
    cfg = SynthConfig(size=(64, 64), iters=120, seed=3, ot=SMALL)
    return exemplar, synthesize(exemplar, cfg)


def test_synth_lowers_the_patch_distance_fivefold(bark_synth):
    from tilegen.metrics import patch_ot_distance

    exemplar, result = bark_synth
    start = np.random.default_rng(3).random(exemplar.shape, dtype=np.float32)  # uniform init
    kw = dict(scales=3, n=500, seeds=2)
    d_start = patch_ot_distance(exemplar, start, **kw)["debiased"]
    d_end = patch_ot_distance(exemplar, result, **kw)["debiased"]
    assert d_end * 5 <= d_start, (d_start, d_end)


def _nn_cost(exemplar: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Squared distance of each periodic 4x4 patch of `image` to its nearest exemplar patch."""
    y = extract_patches(to_tensor(exemplar), 4, periodic=False)
    x = extract_patches(to_tensor(image), 4, periodic=True)
    _, val = SemiDiscreteOT(y).assign(x)  # psi = 0: plain nearest neighbour
    return val.reshape(image.shape[:2]).numpy()


def _wrap_ratio(exemplar: np.ndarray, image: np.ndarray) -> float:
    """Mean nearest-patch cost of patches crossing the wrap-around seam / of interior patches."""
    cost = _nn_cost(exemplar, image)
    h, w = cost.shape
    seam = np.zeros((h, w), bool)
    seam[h - 3 :, :] = True  # patches starting in the last 3 rows/cols wrap around
    seam[:, w - 3 :] = True
    return float(cost[seam].mean() / cost[~seam].mean())


def _seam_jump(image: np.ndarray) -> float:
    """Squared step across the wrap-around seam / the mean squared step between neighbours,
    the worse of the two axes: about 1 when the image continues smoothly across its border."""
    ratios = []
    for axis in (0, 1):
        steps = np.diff(image, axis=axis) ** 2
        seam = (np.take(image, [0], axis=axis) - np.take(image, [-1], axis=axis)) ** 2
        ratios.append(seam.mean() / steps.mean())
    return float(max(ratios))


def test_periodic_output_has_no_seam(bark_synth):
    exemplar, result = bark_synth
    assert _wrap_ratio(exemplar, result) < 1.25
    assert _seam_jump(result) < 1.3
    # The same check sees the seam of a non-periodic synthesis, so it can fail.
    cfg = SynthConfig(size=(64, 64), iters=120, seed=3, periodic=False, ot=SMALL)
    assert _seam_jump(synthesize(exemplar, cfg)) > 2.0


def test_same_seed_same_bytes_other_seed_other_image(tmp_path):
    ex = tmp_path / "ex.png"
    write_image(ex, crop64("grass"))
    args = ["synth", str(ex), "--iters", "5", "--scales", "2", "--size", "40", "48"]
    for name, seed in [("a", "1"), ("b", "1"), ("c", "2")]:
        r = tilegen(*args, "--seed", seed, "-o", str(tmp_path / f"{name}.png"))
        assert r.returncode == 0, r.stderr
    a, b, c = (Path(tmp_path / f"{n}.png").read_bytes() for n in "abc")
    assert a == b and a != c


@pytest.mark.parametrize(
    "mode, bits, channels",
    [("L", 8, 1), ("L", 16, 1), ("RGB", 16, 3), ("RGBA", 8, 4), ("P", 8, 3)],
)
def test_input_modes_and_odd_sizes(tmp_path, mode, bits, channels):
    rgb = crop64("white_tiles")
    src = tmp_path / "in.png"
    if bits == 16:
        img = rgb[:, :, :1] if mode == "L" else rgb
        write_image(src, img, bits=16)
    else:
        im = Image.fromarray((rgb * 255).astype(np.uint8))
        if mode == "RGBA":  # a real alpha channel, so it is kept as a fourth channel
            im.putalpha(Image.fromarray((rgb[:, :, 0] * 255).astype(np.uint8)))
        im.convert(mode).save(src)
    out = tmp_path / "out.png"
    r = tilegen(
        "synth",
        str(src),
        "-o",
        str(out),
        "--iters",
        "3",
        "--scales",
        "3",
        "--size",
        "33",
        "47",
        "--bits",
        str(bits),
    )
    assert r.returncode == 0, r.stderr
    result = read_image(out)
    assert result.shape == (33, 47, channels)


def test_snapshots_are_written(tmp_path):
    ex = tmp_path / "ex.png"
    write_image(ex, crop64("grass"))
    out = tmp_path / "out.png"
    r = tilegen(
        "synth", str(ex), "-o", str(out), "--iters", "4", "--scales", "2", "--snapshot-every", "2"
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.0002.png").is_file() and out.is_file()


@pytest.mark.parametrize(
    "make_input, extra, message",
    [
        (lambda p: p.write_bytes(b"not an image"), [], "cannot read image"),
        (lambda p: Image.new("RGB", (20, 20)).save(p), [], "at least 32x32"),
        (lambda p: Image.new("RGB", (64, 64)).save(p), ["--size", "0", "50"], "must be positive"),
        (lambda p: Image.new("RGB", (64, 64)).save(p), ["--size", "16", "50"], "too small"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, make_input, extra, message):
    src = tmp_path / "in.png"
    make_input(src)
    r = tilegen("synth", str(src), "-o", str(tmp_path / "o.png"), "--iters", "1", *extra)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_existing_output_is_not_overwritten(tmp_path):
    ex, out = tmp_path / "ex.png", tmp_path / "out.png"
    write_image(ex, crop64("grass"))
    out.write_bytes(b"precious")
    r = tilegen("synth", str(ex), "-o", str(out), "--iters", "1", "--scales", "2")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert out.read_bytes() == b"precious"


def test_pyramid_levels_of_synthesis_follow_exemplar_colours(bark_synth):
    exemplar, result = bark_synth
    coarse = gaussian_pyramid(to_tensor(result), 3, periodic=True)[-1]
    assert torch.allclose(coarse.mean((0, 2, 3)), to_tensor(exemplar).mean((0, 2, 3)), atol=0.05)
