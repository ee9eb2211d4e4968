"""Shared fixtures: small tilegen .onnx models made from random-init generators.

`fixture_models(folder, levels, width)` builds a TextureGenerator, runs a few train-mode forwards
(so BatchNorm has population statistics), folds BatchNorm (eval mode) and rescales the last 1x1
conv so that the output spans [0, 1] (a random net's output would clip to one flat colour), then
exports it with the project's exporter (export/onnx_export.py) in both forms: windowed (what the
tiler reads by default) and self-contained (noise inside the graph, fixed tile). The
session-scoped fixtures write the files once per test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def fixture_generator(levels: int = 4, width: int = 8, seed: int = 0):
    """A random-init, BN-folded generator whose outputs span [0, 1] (torch needed)."""
    import torch

    from train.generator import GeneratorConfig, TextureGenerator, fold, training_noise

    torch.manual_seed(seed)
    cfg = GeneratorConfig(levels=levels, width=width)
    model = TextureGenerator(cfg)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(*training_noise(cfg, 2, 64, gen))
    fold(model)  # also .eval()
    with torch.no_grad():
        out = model(*training_noise(cfg, 2, 128, gen))
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp_min(1e-6)
        scale = 0.22 / std
        conv = model.to_image
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias.copy_((conv.bias - mean) * scale + 0.5)
    return model


def fixture_models(
    folder: Path,
    levels: int = 4,
    width: int = 8,
    seed: int = 0,
    tile: tuple[int, int] | None = None,
    period: tuple[int, int] | None = None,
) -> tuple[Path, Path | None]:
    """Write `fixture_l{levels}w{width}.onnx` (windowed) and, when `tile` is given, the
    self-contained form `..._sc.onnx` of the same generator. Returns their paths."""
    from export.onnx_export import export_protos, save
    from tilegen.contract import ModelInfo

    model = fixture_generator(levels, width, seed)
    cfg = model.cfg
    info = ModelInfo(
        arch=cfg.arch,
        noise_channels=cfg.noise_channels,
        out_channels=cfg.out_channels,
        training={"fixture": "random-init", "levels": levels, "width": width, "seed": seed},
        form="self-contained" if tile else "windowed",
        tile=tile,
        period=period,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proto, windowed = export_protos(model, info)
    path = folder / f"fixture_l{levels}w{width}.onnx"
    save(windowed, path)
    sc = None
    if tile:
        sc = folder / f"fixture_l{levels}w{width}_sc.onnx"
        save(proto, sc)
    return path, sc


@pytest.fixture(scope="session")
def fixture_model_files(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("torch")
    return fixture_models(tmp_path_factory.mktemp("models"), 4, 8, tile=(48, 40))


@pytest.fixture(scope="session")
def onnx_model(fixture_model_files) -> Path:
    """A windowed levels=4, width=8 model (stride 8): small and fast, for every tiler test."""
    return fixture_model_files[0]


@pytest.fixture(scope="session")
def self_contained_model(fixture_model_files) -> Path:
    """The same generator in the self-contained form (48 x 40 tiles, not periodic)."""
    return fixture_model_files[1]


WEB_SIZE = (700, 1000)  # with 128-pixel chunks: store levels 700x1000 .. 88x125; xyz zooms 0 .. 2
WEB_SEED = 11


@pytest.fixture(scope="module")
def store(onnx_model, tmp_path_factory) -> Path:
    """A 700x1000 store of the fixture model with a 4-level pyramid, for the web-facing tests."""
    from tilegen.tiler import GenerateConfig, generate

    out = tmp_path_factory.mktemp("web") / "world.zarr"
    generate(GenerateConfig(model=str(onnx_model), output=str(out), size=WEB_SIZE, seed=WEB_SEED,
                            chunk=128, shard=256, progress=False, log=lambda m: None))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the page tests; they skip, saying why, where it is absent."""
    from browser import Browser, no_chromium

    if no_chromium():
        pytest.skip(no_chromium())
    with Browser() as b:
        yield b
