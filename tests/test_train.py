"""Training the generator (Alg. 2), its checkpoints, `tilegen train` and `tilegen sample`.

A tiny configuration (3 levels, width 8, 32-px crops, 2 scales) trains in a few CPU seconds; one
module-scoped run serves the tests that need a trained model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import cli  # noqa: E402

from tilegen.errors import UserError  # noqa: E402
from tilegen.imageio import read_image, write_image  # noqa: E402
from tilegen.metrics import patch_ot_distance  # noqa: E402
from tilegen.noise import noise_window  # noqa: E402
from train.checkpoint import (  # noqa: E402
    load_checkpoint,
    load_generator,
    save_generator,
)
from train.generator import (  # noqa: E402
    NORMS,
    GeneratorConfig,
    fold,
    is_folded,
    sample_tile,
    training_noise,
)
from train.patch_ot import OTConfig  # noqa: E402
from train.train_generator import (  # noqa: E402
    CoarseStages,
    TrainConfig,
    check_modes,
    default_schedule,
    learning_rate,
    new_generator,
    sample,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXEMPLAR = DATA / "bark_128.png"

TINY = TrainConfig(
    iters=60,
    size=32,
    lr=0.02,
    seed=0,
    device="cpu",
    bn_samples=16,
    projection_targets=0,  # tests/test_projection.py covers it
    gen=GeneratorConfig(levels=3, width=8),
    ot=OTConfig(scales=2, n_target=256, psi_steps=5, psi_batch=512),
)
TINY_CLI = [
    "--size", "32", "--levels", "3", "--width", "8", "--scales", "2", "--lr", "0.02",
    "--device", "cpu", "--no-check", "--projection", "0",
]  # fmt: skip


def one_line_error(rc: int, err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("tilegen: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def exemplar() -> np.ndarray:
    return read_image(EXEMPLAR)


@pytest.fixture(scope="module")
def trained(exemplar):
    return train(exemplar, TINY)  # a few CPU seconds


# --- the noise field's reference values -------------------------------------------------------

# (seed, level, channel, y, x, h >> 8): the spec "tilegen-hash32" v1 (tilegen/noise.py),
# value = (h >> 8) * 2**-24. Computed once from the written specification; never regenerate
# these from the code: a change here means every trained model's textures change.
NOISE_REFERENCE = [
    (0, 0, 0, 0, 0, 0),
    (0, 0, 0, 0, 1, 6850960),
    (0, 0, 0, 1, 0, 5829961),
    (0, 1, 0, 0, 0, 5089560),
    (0, 0, 1, 0, 0, 2359452),
    (1, 0, 0, 0, 0, 6697106),
    (42, 3, 2, -5, 7, 13982367),
    (42, 5, 1, 1000, -1000, 12272817),
    (4294967295, 2, 0, 123456, -654321, 11017499),
    (7, 0, 2, -2147483648, 2147483647, 7634836),
]


def _spec_value(seed: int, level: int, channel: int, y: int, x: int) -> int:
    """The specification in plain Python integers (independent of the numpy code)."""
    m = 0xFFFFFFFF

    def mix(h: int) -> int:
        h &= m
        h ^= h >> 16
        h = (h * 0x7FEB352D) & m
        h ^= h >> 15
        h = (h * 0x846CA68B) & m
        return h ^ (h >> 16)

    return mix(mix(mix(mix(mix(seed) ^ level) ^ channel) ^ (y & m)) ^ (x & m)) >> 8


@pytest.mark.parametrize("seed,level,channel,y,x,expected", NOISE_REFERENCE)
def test_noise_reference_values(seed, level, channel, y, x, expected):
    assert _spec_value(seed, level, channel, y, x) == expected
    got = noise_window(seed, level, channel + 1, y, x, 1, 1)[channel, 0, 0]
    assert got.dtype == np.float32 and got == np.float32(expected * 2.0**-24)


def test_noise_window_is_a_crop_of_a_larger_window():
    big = noise_window(9, 2, 3, -7, 5, 20, 30)
    assert np.array_equal(noise_window(9, 2, 3, -3, 12, 6, 8), big[:, 4:10, 7:15])
    vals = np.array([[_spec_value(9, 2, 1, -7 + i, 5 + j) for j in range(30)] for i in range(4)])
    assert np.array_equal(big[1, :4], (vals * 2.0**-24).astype(np.float32))


# --- training ---------------------------------------------------------------------------------


def test_tiny_training_lowers_the_distance(exemplar, trained):
    result = trained
    assert len(result.history) == TINY.iters
    assert np.mean(result.history[-10:]) < 0.5 * np.mean(result.history[:10])

    untrained = fold(new_generator(result.model.cfg, TINY.seed, torch.device("cpu")))
    kw = {"scales": 2, "n": 300, "seeds": 2}
    before = patch_ot_distance(exemplar, sample(untrained, 64, 64, 5), **kw)["debiased"]
    after = patch_ot_distance(exemplar, sample(result.model, 64, 64, 5), **kw)["debiased"]
    assert after < 0.5 * before, (before, after)


def test_inference_mode_computes_the_training_function(exemplar, trained):
    """The default BatchNorm ends training with frozen statistics: the folded model gives the
    trained model's pixels for the same noise, so both score the same."""
    c = check_modes(exemplar, trained)
    assert c["max_difference"] < 1e-5, c
    assert abs(c["eval_mode"] - c["train_mode"]) <= 0.02 * c["train_mode"], c


def test_batchnorm_variant_still_trains_and_folds(exemplar):
    """norm=batch with no frozen phase (the reference's BatchNorm, population statistics
    re-estimated after the loop, then folded): its inference function is not the trained one."""
    cfg = replace(TINY, iters=10, freeze=0.0, gen=replace(TINY.gen, norm="batch"))
    result = train(exemplar, cfg)
    c = check_modes(exemplar, result)
    assert is_folded(result.model)
    assert c["max_difference"] > 1e-3, c  # batch-1 statistics are not the population's


def test_frozen_batchnorm_trains_the_inference_function(tmp_path, exemplar):
    """With a frozen last phase the weights were trained with the statistics folded in, and a run
    killed before the freeze and resumed after it ends bit-identical."""
    cfg = replace(TINY, iters=12, freeze=0.5, gen=replace(TINY.gen, norm="batch"))
    full = train(exemplar, cfg, checkpoint=tmp_path / "a.ckpt", checkpoint_every=4)
    c = check_modes(exemplar, full)
    assert c["max_difference"] < 1e-5, c
    killed = train(exemplar, cfg, checkpoint=tmp_path / "b.ckpt", checkpoint_every=4, stop_after=5)
    assert killed is None and load_checkpoint(tmp_path / "b.ckpt")["iteration"] == 4
    resumed = train(
        exemplar, cfg, checkpoint=tmp_path / "b.ckpt", checkpoint_every=4,
        resume=load_checkpoint(tmp_path / "b.ckpt"),
    )  # fmt: skip
    assert resumed.history == full.history
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_fold_keeps_the_function_for_every_norm():
    gen = torch.Generator().manual_seed(3)
    for norm in NORMS:
        cfg = GeneratorConfig(levels=3, width=8, norm=norm)
        model = new_generator(cfg, 1, torch.device("cpu"))
        with torch.no_grad():
            model.train()(*training_noise(cfg, 2, 32, gen))  # BatchNorm: non-trivial statistics
            model.eval()
            z = training_noise(cfg, 1, 40, gen)
            before = model(*z)
            after = fold(model)(*z)
        assert is_folded(model)
        assert torch.allclose(before, after, atol=1e-5), norm


def test_folded_model_is_window_independent(trained):
    model = trained.model
    big = sample_tile(model, 3, -10, -6, 70, 90)
    for y0, x0, h, w in [(0, 0, 16, 16), (-10, -6, 5, 7), (13, 29, 31, 17), (3, 1, 57, 83)]:
        tile = sample_tile(model, 3, y0, x0, h, w)
        ref = big[:, :, y0 + 10 : y0 + 10 + h, x0 + 6 : x0 + 6 + w]
        assert tile.shape == ref.shape == (1, 3, h, w)
        assert float((tile - ref).abs().max()) <= 1e-5


def test_periodic_sample_is_exactly_periodic(trained):
    model = trained.model
    p = 3 * model.arch.stride
    two = sample_tile(model, 11, 0, 0, 2 * p, 2 * p, period=(p, p))
    assert torch.equal(two[:, :, :p], two[:, :, p:])
    assert torch.equal(two[:, :, :, :p], two[:, :, :, p:])
    img = sample(model, p, 2 * p, 11, periodic=True)  # period = size
    # Other windows of the same periodic texture: equal up to float rounding (convolutions of
    # other sizes sum in another order); inside one evaluation the period is exact (above).
    assert np.allclose(img, sample(model, p, 2 * p, 11, periodic=True, tile=8), atol=1e-5)
    big = sample_tile(model, 11, -p, 0, 3 * p, 4 * p, period=(p, 2 * p))
    big = big[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.allclose(np.tile(img, (3, 2, 1)), big, atol=1e-5)
    with pytest.raises(UserError, match="multiples of"):
        sample(model, p + 1, p, 0, periodic=True)


def test_sample_exact_size_and_tiled_equals_whole(trained):
    model = trained.model
    whole = sample(model, 37, 53, 2)
    assert whole.shape == (37, 53, 3)
    assert np.allclose(whole, sample(model, 37, 53, 2, tile=16), atol=1e-5)


def test_model_file_roundtrip(tmp_path, trained):
    result = trained
    path = tmp_path / "m.pt"
    save_generator(path, result.model, result.meta)
    model, meta = load_generator(path)
    assert not model.training and meta["exemplar_sha256"] == result.meta["exemplar_sha256"]
    assert meta["training"]["gen"]["levels"] == 3 and "version" in meta
    a, b = sample(result.model, 24, 24, 1), sample(model, 24, 24, 1)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="folded"):
        save_generator(tmp_path / "x.pt", new_generator(model.cfg, 0, "cpu"), {})


def test_resume_reproduces_the_uninterrupted_run(tmp_path, exemplar):
    cfg = replace(TINY, iters=12)
    full = train(exemplar, cfg, checkpoint=tmp_path / "a.ckpt", checkpoint_every=6)
    killed = train(exemplar, cfg, checkpoint=tmp_path / "b.ckpt", checkpoint_every=6, stop_after=8)
    assert killed is None
    ckpt = load_checkpoint(tmp_path / "b.ckpt")
    assert ckpt["iteration"] == 6  # iterations 7-8 were lost with the "killed" process
    resumed = train(exemplar, cfg, checkpoint=tmp_path / "b.ckpt", checkpoint_every=6, resume=ckpt)
    assert resumed.history == full.history
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    a, b = load_checkpoint(tmp_path / "a.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    assert a["iteration"] == b["iteration"] == 12
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert torch.equal(a["rng_state"], b["rng_state"])
    with pytest.raises(UserError, match="other settings"):
        train(exemplar, replace(cfg, seed=1), resume=load_checkpoint(tmp_path / "a.ckpt"))
    with pytest.raises(UserError, match="another exemplar"):
        train(exemplar[::-1].copy(), cfg, resume=load_checkpoint(tmp_path / "a.ckpt"))


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_kept_model_is_the_weight_average_or_the_last_iterate(tmp_path, exemplar, ema):
    cfg = replace(TINY, iters=10, ema=ema)
    result = train(exemplar, cfg, checkpoint=tmp_path / "c.ckpt", checkpoint_every=10)
    ckpt = load_checkpoint(tmp_path / "c.ckpt")
    model = new_generator(replace(cfg.gen, out_channels=3), 0, torch.device("cpu"))
    model.load_state_dict(ckpt["model"])
    if ema:
        assert not torch.equal(ckpt["ema"]["to_image.weight"], ckpt["model"]["to_image.weight"])
        model.load_state_dict(ckpt["ema"], strict=False)  # the weights; BN statistics stay
    fold(model)  # the statistics frozen in the run's last phase (checkpointed with the model)
    for (k, a), b in zip(result.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_settings_roundtrip_and_older_ones_keep_their_psi_schedule():
    assert TrainConfig.from_dict(TINY.to_dict()) == TINY
    older = TINY.to_dict()
    # recorded under the names every model has been written with, --coarse as its text
    assert (older["projection"], older["coarse"]) == (0, "auto")
    assert "projection_targets" not in older and "coarse_stages" not in older
    del older["ot"]["loss_psi_step"]  # written before the loss's argmin doubled as a psi step
    del older["ema"]  # and before the weights were averaged
    del older["gen"]["residual"]  # and before the joins were residual
    del older["coarse"]  # and before the coarse stages
    off = replace(
        TINY,
        ema=0.0,
        coarse_stages=CoarseStages(()),
        ot=replace(TINY.ot, loss_psi_step=False),
        gen=replace(TINY.gen, residual=0.0),
    )
    assert TrainConfig.from_dict(older) == off


def test_model_saved_before_residual_joins_loads_as_the_plain_network(tmp_path, trained):
    import json

    plain = fold(new_generator(replace(trained.model.cfg, residual=0.0), 1, torch.device("cpu")))
    path = tmp_path / "old.pt"
    save_generator(path, plain, {"exemplar_sha256": "x", "training": {}})
    obj = torch.load(path, weights_only=False)
    cfg = json.loads(obj["generator"])
    del cfg["residual"]  # what files written before it existed hold
    obj["generator"] = json.dumps(cfg)
    torch.save(obj, path)
    loaded, _ = load_generator(path)
    assert loaded.cfg.residual == 0.0
    assert torch.equal(sample_tile(loaded, 5, 0, 0, 24, 24), sample_tile(plain, 5, 0, 0, 24, 24))


def test_residual_joins_let_every_noise_level_move_the_output():
    # At 0.5 each level's noise moves a freshly initialised output by a similar amount; the
    # trained plain networks had let all but the finest fall to ~0 (docs/history/models.md).
    model = new_generator(GeneratorConfig(levels=4, width=8), 0, torch.device("cpu")).eval()
    gen = torch.Generator().manual_seed(1)
    noise = training_noise(model.cfg, 2, 64, gen)
    with torch.no_grad():
        base = model(*noise)
        moves = []
        for k in range(len(noise)):
            redrawn = list(noise)
            redrawn[k] = torch.rand(noise[k].shape, generator=gen)
            moves.append(float((model(*redrawn) - base).pow(2).mean().sqrt()))
        ramp = model.residual_term(torch.arange(16.0).expand(1, 1, 6, 16), 1.0)
        h = torch.rand(1, 3, 9, 11, generator=gen)
        up = h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        v = up[:, :, :-2] + 2 * up[:, :, 1:-1] + up[:, :, 2:]
        filtered = (v[..., :-2] + 2 * v[..., 1:-1] + v[..., 2:])[:, :, 1:-1, 1:-1] / 16
        residual = model.residual_term(h, 0.5)
    assert min(moves) > 0.5 * max(moves), moves
    # The residual's upsampling is bilinear: a ramp stays a ramp (no nearest-neighbour steps),
    # and it is nearest x2 then [1 2 1]/4: local, so every cropped pixel is one a tile computes.
    assert torch.allclose(ramp[0, 0, 0].diff(), torch.full((27,), 0.5))
    assert residual.shape == (1, 3, 14, 18)
    assert torch.allclose(residual, 0.5 * filtered, atol=1e-6)


def test_default_schedule_follows_the_device():
    # The reference's 256^2 x 5000 on a GPU; on the CPU a schedule that ends in minutes.
    assert default_schedule("cpu") == (128, 1500) == (TrainConfig().size, TrainConfig().iters)
    gpu = torch.cuda.is_available()
    assert default_schedule("auto") == ((256, 5000) if gpu else (128, 1500))
    if not gpu:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            default_schedule("cuda")


def test_divergence_is_reported_and_keeps_the_last_checkpoint(tmp_path, exemplar):
    def poison(it, loss, image):
        if it == 5:
            model_params[0].data.fill_(float("nan"))

    model_params = []
    import train.train_generator as tg

    original = tg.new_generator

    def spy(*a, **kw):
        m = original(*a, **kw)
        model_params.extend(m.parameters())
        return m

    tg.new_generator = spy
    try:
        with pytest.raises(FloatingPointError, match=r"iteration 6.*lower --lr.*iteration 4"):
            train(
                exemplar,
                replace(TINY, iters=10),
                checkpoint=tmp_path / "c.ckpt",
                checkpoint_every=2,
                on_step=poison,
            )
    finally:
        tg.new_generator = original
    ckpt = load_checkpoint(tmp_path / "c.ckpt")
    assert ckpt["iteration"] == 4
    assert all(
        bool(torch.isfinite(v).all()) for v in ckpt["model"].values() if v.is_floating_point()
    )


# --- files that must be refused ---------------------------------------------------------------


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    for name, payload in [
        ("evil_model.pt", {"format": "tilegen", "kind": "model", "x": _Evil(marker)}),
        ("evil_ckpt.pt", {"format": "tilegen", "kind": "checkpoint", "x": _Evil(marker)}),
    ]:
        torch.save(payload, tmp_path / name)
    with pytest.raises(UserError, match="refusing"):
        load_generator(tmp_path / "evil_model.pt")
    with pytest.raises(UserError, match="refusing"):
        load_checkpoint(tmp_path / "evil_ckpt.pt")
    rc, _, err = cli("sample", tmp_path / "evil_model.pt", "-o", tmp_path / "x.png")
    assert "refusing" in one_line_error(rc, err)
    assert not marker.exists()


def test_damaged_files_are_one_line_errors(tmp_path, trained):
    good = tmp_path / "good.pt"
    save_generator(good, trained.model, trained.meta)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    torch.save({"some": torch.zeros(3)}, tmp_path / "foreign.pt")
    for name in ("trunc.pt", "junk.pt", "foreign.pt", "missing.pt"):
        with pytest.raises(UserError):
            load_generator(tmp_path / name)
        with pytest.raises(UserError):
            load_checkpoint(tmp_path / name)
    rc, _, err = cli("sample", tmp_path / "trunc.pt", "-o", tmp_path / "x.png")
    one_line_error(rc, err)


# --- the command line -------------------------------------------------------------------------


def test_cli_train_and_sample(tmp_path):
    out = tmp_path / "m.pt"
    rc, stdout, err = cli(
        "train", EXEMPLAR, "-o", out, "--iters", "6", "--checkpoint-every", "3",
        "--preview-every", "3", "--targets", "300", *TINY_CLI,
    )  # fmt: skip
    assert rc == 0, err
    assert out.is_file() and (tmp_path / "m.pt.ckpt").is_file()
    assert (tmp_path / "m.preview.png").is_file() and (tmp_path / "m.preview.0003.png").is_file()
    assert "it/s" in err or "s/it" in err  # the progress bar
    model, meta = load_generator(out)
    assert meta["training"]["iters"] == 6 and meta["channels"] == "RGB"
    assert meta["training"]["ot"]["n_target"] == 300

    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--iters", "6", *TINY_CLI)
    assert "exists" in one_line_error(rc, err)

    png = tmp_path / "s.png"
    rc, _, err = cli("sample", out, "-o", png, "--size", "40", "28", "--seed", "4")
    assert rc == 0, err
    img = read_image(png)
    assert img.shape == (40, 28, 3)
    assert np.abs(img - sample(model, 40, 28, 4)).max() <= 0.5 / 255 + 1e-6
    rc, _, err = cli("sample", out, "-o", tmp_path / "p.png", "--size", "16", "24", "--periodic")
    assert rc == 0, err
    rc, _, err = cli("sample", out, "-o", tmp_path / "q.png", "--size", "10", "24", "--periodic")
    assert "multiples of 4" in one_line_error(rc, err)
    out.unlink()  # the checkpoint stays: a resume must keep the number of targets
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--resume", "--targets", "200", *TINY_CLI)
    assert "other settings (ot)" in one_line_error(rc, err)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_cli_resume_after_kill_or_ctrl_c(tmp_path, sig):
    """Stop a real run right after its first checkpoint, resume it, compare with a clean run."""
    args = ["--iters", "24", "--checkpoint-every", "4", *TINY_CLI]
    rc, _, err = cli("train", EXEMPLAR, "-o", tmp_path / "full.pt", *args)
    assert rc == 0, err

    killed = tmp_path / "killed.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "train", str(EXEMPLAR), "-o",
         str(killed), *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    ckpt = tmp_path / "killed.pt.ckpt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    at = load_checkpoint(ckpt)["iteration"]
    if at >= 24:
        pytest.skip("the run finished before it could be killed")
    assert not killed.exists()
    if sig == signal.SIGINT:  # one line: where it stopped, what is kept, how to continue
        assert proc.returncode == 130 and "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("tilegen: interrupted at iteration ")
        assert last.endswith(f"{ckpt} holds iteration {at}: rerun the same command with --resume "
                             "to continue exactly")  # fmt: skip

    rc, _, err = cli("train", EXEMPLAR, "-o", killed, "--resume", *args)
    assert rc == 0, err
    a, meta_a = load_generator(tmp_path / "full.pt")
    b, meta_b = load_generator(killed)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert meta_a["final_loss"] == meta_b["final_loss"]


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    out = tmp_path / "m.pt"
    rc, _, err = cli("train", tmp_path / "nope.png", "-o", out, *TINY_CLI)
    assert "no such file" in one_line_error(rc, err)
    (tmp_path / "text.png").write_text("hello")
    rc, _, err = cli("train", tmp_path / "text.png", "-o", out, *TINY_CLI)
    one_line_error(rc, err)
    write_image(tmp_path / "tiny.png", np.full((6, 6, 3), 0.5, np.float32))
    rc, _, err = cli("train", tmp_path / "tiny.png", "-o", out, *TINY_CLI)
    assert "at least" in one_line_error(rc, err)
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--targets", "0", *TINY_CLI)
    assert "--targets" in one_line_error(rc, err)
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--psi-steps", "0", *TINY_CLI)
    assert "--psi-steps" in one_line_error(rc, err)
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--resume", *TINY_CLI)
    assert "no checkpoint" in one_line_error(rc, err)
    if not torch.cuda.is_available():
        rc, _, err = cli("train", EXEMPLAR, "-o", out, *TINY_CLI, "--device", "cuda")
        assert "no CUDA GPU" in one_line_error(rc, err)
    (tmp_path / "m.pt.ckpt").write_bytes(b"\x00" * 100)
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--resume", *TINY_CLI)
    assert "damaged" in one_line_error(rc, err)


def test_learning_rate_is_constant_then_decays():
    cfg = replace(TrainConfig(), iters=1500, lr=0.01)
    lrs = [learning_rate(cfg, it) for it in range(1, 1501)]
    assert lrs[:750] == [0.01] * 750  # constant until decay_start
    assert all(a >= b for a, b in zip(lrs[750:], lrs[751:]))  # then falling
    assert lrs[-1] == pytest.approx(0.001)  # lr_final


def test_cli_psi_steps_reach_the_training_and_the_saved_settings(tmp_path):
    """--psi-steps sets the potentials' ascent steps (the default 15), and the model says so."""
    from train.checkpoint import load_generator

    assert TrainConfig().ot.psi_steps == 15
    out = tmp_path / "m.pt"
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--iters", "2", "--psi-steps", "3", *TINY_CLI)
    assert rc == 0, err
    _, meta = load_generator(out, "cpu")
    assert meta["training"]["ot"]["psi_steps"] == 3


def test_cli_norm_reaches_the_generator_config(tmp_path):
    """--norm batch trains the reference's BatchNorm generator (folded when saved), as the bundled
    grass.pt was, and its model card's command says so; a bad value is one line, exit 2."""
    from typer.testing import CliRunner

    import cli as cli_mod

    out = tmp_path / "m.pt"
    rc, _, err = cli("train", EXEMPLAR, "-o", out, "--iters", "2", "--norm", "batch", *TINY_CLI)
    assert rc == 0, err
    model, meta = load_generator(out, "cpu")
    assert model.cfg.norm == "batch" and meta["training"]["gen"]["norm"] == "batch"
    assert is_folded(model)
    rc, _, err = cli("train", EXEMPLAR, "-o", tmp_path / "n.pt", "--norm", "group", *TINY_CLI)
    assert "--norm group: use ws, none or batch" in one_line_error(rc, err)
    assert not (tmp_path / "n.pt").exists()
    trained = TrainConfig.from_dict(meta["training"])  # --resume: the checkpoint's, unless given
    assert trained.merged({"--norm": None}).gen.norm == "batch"
    assert trained.merged({"--norm": "ws"}).gen.norm == "ws"
    help_text = CliRunner().invoke(cli_mod.app, ["train", "--help"]).output
    assert all(f"{norm} (" in " ".join(help_text.split()) for norm in NORMS if norm != "none")

    grass, _ = load_generator(ROOT / "tilegen" / "assets" / "grass.pt", "cpu")
    card = (ROOT / "tilegen" / "assets" / "grass.md").read_text()
    assert f"--norm {grass.cfg.norm}" in card


def test_coarse_option_names_levels_and_refuses_others(tmp_path):
    """--coarse: auto tries levels 2,1 (those the model's stride allows; a material's too),
    off, or levels kept whatever they measure; they reach the model and its settings."""
    from train.checkpoint import load_generator
    from train.train_generator import parse_coarse

    cfg = TrainConfig()
    auto = cfg.coarse_stages
    assert auto == CoarseStages((), auto=True) and auto.text == "auto"
    assert auto.for_model(5) == ([2, 1], True)
    assert auto.for_model(3) == ([1], True) and auto.for_model(2) == ([], False)
    for text, stages, levels in [
        ("off", CoarseStages(()), []),
        ("3,1", CoarseStages((3, 1)), [3, 1]),
        ("auto:2", CoarseStages((2,), auto=True), [2]),
        (" Auto ", auto, [2, 1]),
    ]:
        assert parse_coarse(text, 5) == stages and stages.for_model(5)[0] == levels
        assert parse_coarse(stages.text, 5) == stages  # recorded as its text
    for bad in ("x", "2,,1", "", "auto:"):  # not levels at all
        with pytest.raises(UserError, match="--coarse"):
            parse_coarse(bad, 5)
    for bad in ("5", "0", "auto:9"):  # levels this model cannot have
        with pytest.raises(UserError, match=f"--coarse {bad}: use auto, off, or levels between"):
            parse_coarse(bad, 5).for_model(5)
    merged = cfg.merged({"--coarse": "2,1", "--levels": 3})
    assert merged.coarse_stages == CoarseStages((2, 1)) and merged.to_dict()["coarse"] == "2,1"
    with pytest.raises(UserError, match="--coarse 2,1: .* between 1 and 1 "):
        merged.check((256, 256))

    out = tmp_path / "m.pt"
    plain = TINY_CLI[:-2]  # without --projection 0
    rc, stdout, err = cli(
        "train", EXEMPLAR, "-o", out, "--iters", "2", *plain, "--projection", "64", "--coarse", "1"
    )
    assert rc == 0, err
    assert "fit projection" in err  # the fit's own progress bar
    model, meta = load_generator(out)
    assert model.cfg.coarse == [1] and meta["training"]["coarse"] == "1" and model.arch.tr == 10
    rc, _, err = cli("train", EXEMPLAR, "-o", tmp_path / "n.pt", *plain, "--coarse", "2")
    assert "--coarse 2" in one_line_error(rc, err)


def test_structure_term_is_added_to_the_loss(exemplar, trained, tmp_path):
    """--structure W adds W x the crop's structure statistic (z-scored against real crop-sized
    pieces) to every iteration's loss: at iteration 1, where the patch loss is the same (same
    weights, noise and random stream), the loss grows by exactly the term."""
    pytest.importorskip("plenoptic")
    from train.structure import StructureLoss

    first = {}
    cfg = replace(TINY, iters=3, structure=0.05)
    result = train(exemplar, cfg, on_step=lambda it, loss, image: first.setdefault(it, image))
    term = float(StructureLoss(exemplar, cfg.size, cfg.structure)(first[1]))
    assert term > 0
    assert result.history[0] == pytest.approx(trained.history[0] + term, rel=1e-5)
    assert result.meta["training"]["structure"] == 0.05

    rc, _, err = cli("train", EXEMPLAR, "-o", tmp_path / "a.pt", "--structure", "-1", *TINY_CLI)
    assert "--structure -1.0: use 0 (off) or a positive weight" in one_line_error(rc, err)
    rc, _, err = cli("train", EXEMPLAR, "-o", tmp_path / "b.pt", "--structure", "0.01",
                     *TINY_CLI[2:], "--size", "96")  # fmt: skip
    assert "--structure: the exemplar (128x128) is too small" in one_line_error(rc, err)
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()
