"""The bundled default model paints the same bytes in every runtime: `tilegen generate`'s path
(onnxruntime for Python), onnxruntime-node, onnxruntime-web (wasm) in Node and the `tilegen view`
page in headless Chromium, on canvases at the origin, at negative origins and past 2^31,
periodic and not (docs/FORMAT.md section 11: the integer-exact model).

The float export this replaced differs in onnxruntime-web on these canvases (2.36 million
bytes): in 40 bytes, by up to 4 levels (measured; bench/RESULTS.md, "In the browser"), so the
test tells the two apart. Runtimes that are not installed skip with what to install
(tests/runtimes.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtimes import (
    Case,
    browser_tiles,
    differences,
    js_tiles,
    no_chromium,
    no_node,
    no_ort_web_node,
    python_tiles,
)

from tilegen.model import open_model

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "tilegen" / "assets" / "default.onnx"

CASES: list[Case] = [  # (seed, y0, x0, height, width, period)
    (3, 0, 0, 384, 512, None),
    (5, -1000, -3000, 384, 512, None),
    (2**32 - 1, 2**31 + 5, -(2**31) - 77, 384, 512, None),
    (9, -37, 2**31 - 101, 256, 384, (1024, 2048)),
    (0, 0, 0, 256, 384, (256, 384)),
]


@pytest.fixture(scope="module")
def web_model(tmp_path_factory) -> Path:
    """The bundled model in the dynamic self-contained form (wrapped without torch), as the page
    and the Node example take it."""
    from export.onnx_export import wrap_verified

    out = tmp_path_factory.mktemp("parity") / "default_web.onnx"
    wrap_verified(BUNDLED, out, None)
    return out


@pytest.fixture(scope="module")
def want() -> list[np.ndarray]:
    return python_tiles(BUNDLED, CASES)


def _assert_identical(got: list[np.ndarray], want: list[np.ndarray], runtime: str) -> None:
    rows = differences(got, want)
    differ = sum(n for n, _, _ in rows)
    assert differ == 0, f"{runtime}: {differ} bytes differ, up to {max(m for _, m, _ in rows)}"


def test_bundled_model_is_integer_exact():
    """The shipped default is the integer-exact form (what makes the bytes the same)."""
    assert open_model(BUNDLED).info.arithmetic["kind"] == "integer"


@pytest.mark.skipif(no_node() is not None, reason=str(no_node()))
def test_onnxruntime_node(web_model, want):
    got, _ = js_tiles("node", web_model, CASES)
    _assert_identical(got, want, "onnxruntime-node")


@pytest.mark.skipif(no_ort_web_node() is not None, reason=str(no_ort_web_node()))
def test_onnxruntime_web_in_node(web_model, want):
    got, _ = js_tiles("web", web_model, CASES)
    _assert_identical(got, want, "onnxruntime-web (wasm) in Node")


@pytest.mark.skipif(no_chromium() is not None, reason=str(no_chromium()))
def test_onnxruntime_web_in_chromium(browser, web_model, want):
    got = browser_tiles(browser, web_model, CASES)
    _assert_identical(got, want, "the view page (onnxruntime-web, wasm) in headless Chromium")


# A small integer model with coarse projection stages (pooled by 4, then by 2): the stages' block
# sums, rounding QuantizeLinear and transposed-convolution upsampling are the same bytes in
# onnxruntime-node and onnxruntime-web as in onnxruntime for Python.
COARSE_CASES: list[Case] = [
    (1, 0, 0, 96, 128, None),
    (4, -517, -33, 64, 96, None),
    (2**32 - 1, 2**31 + 3, -(2**31) - 21, 64, 80, None),
    (6, -40, 8, 64, 128, (32, 64)),
]


@pytest.fixture(scope="module")
def coarse_integer(tmp_path_factory) -> tuple[Path, Path]:
    """(windowed, self-contained) integer files of test_integer's small coarse-stage model."""
    from test_integer import small_model

    from export.integer import integer_graph
    from export.onnx_export import model_info, save, wrap_verified
    from train.quantize import quantize_generator

    model = small_model(8, levels=4, coarse=[2, 1])
    folder = tmp_path_factory.mktemp("parity_coarse")
    windowed, web = folder / "coarse.onnx", folder / "coarse_web.onnx"
    save(integer_graph(quantize_generator(model, fit_samples=4), model_info(model, {})), windowed)
    wrap_verified(windowed, web, None)
    return windowed, web


@pytest.mark.skipif(no_node() is not None, reason=str(no_node()))
def test_coarse_stages_onnxruntime_node(coarse_integer):
    windowed, web = coarse_integer
    got, _ = js_tiles("node", web, COARSE_CASES)
    _assert_identical(got, python_tiles(windowed, COARSE_CASES), "onnxruntime-node")


@pytest.mark.skipif(no_ort_web_node() is not None, reason=str(no_ort_web_node()))
def test_coarse_stages_onnxruntime_web_in_node(coarse_integer):
    windowed, web = coarse_integer
    got, _ = js_tiles("web", web, COARSE_CASES)
    _assert_identical(got, python_tiles(windowed, COARSE_CASES), "onnxruntime-web in Node")
