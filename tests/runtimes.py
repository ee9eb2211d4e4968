"""The same tiles from every runtime a tilegen model runs in, as 8-bit bytes (H, W, C).

- `python_tiles`: the tiler's path (windowed graph in onnxruntime for Python, tilegen.noise,
  tilegen's quantisation): what `tilegen generate` writes.
- `js_tiles("node" | "web", ...)`: the self-contained (dynamic) form in onnxruntime-node, or in
  onnxruntime-web's WebAssembly backend under Node (tests/js_tiles.mjs).
- `browser_tiles`: the same form in the `tilegen view` page's worker (onnxruntime-web, wasm) in
  headless Chromium.

Each `no_*` function says why a runtime cannot be used here (None when it can): tests skip with
that reason, bench/parity.py prints it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from browser import chromium_path

from tilegen.model import open_model, quantize_planar, render_tile

ROOT = Path(__file__).resolve().parents[1]
JS_TILES = ROOT / "tests" / "js_tiles.mjs"

# (seed, y0, x0, height, width, period or None)
Case = tuple[int, int, int, int, int, tuple[int, int] | None]


def no_node() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if not (ROOT / "examples" / "node_modules" / "onnxruntime-node").is_dir():
        return "onnxruntime-node is missing: ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix examples"
    return None


def no_ort_web_node() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if not (ROOT / "tilegen" / "web" / "node_modules" / "onnxruntime-web").is_dir():
        return "onnxruntime-web is missing: npm ci --prefix tilegen/web"
    return None


def no_chromium() -> str | None:
    if chromium_path() is None:
        return (
            "Chromium is not installed (Debian: apt-get install chromium; README 'Browser tests')"
        )
    if not (ROOT / "tilegen" / "web" / "node_modules" / "onnxruntime-web").is_dir():
        return "onnxruntime-web is missing: npm ci --prefix tilegen/web"
    return None


def python_tiles(windowed: str | Path, cases: list[Case]) -> list[np.ndarray]:
    """What `tilegen generate` writes for each case: one evaluation, quantised (H, W, C)."""
    info = open_model(windowed).info
    out = []
    for seed, y0, x0, h, w, period in cases:
        img = render_tile(windowed, seed, y0, x0, h, w, period)
        out.append(quantize_planar(img, info, "uint8").transpose(1, 2, 0))
    return out


def _case_list(cases: list[Case]) -> list[list]:
    return [[str(s), str(y), str(x), h, w, *(p or (0, 0))] for s, y, x, h, w, p in cases]


def js_tiles(
    kind: str, web_model: str | Path, cases: list[Case], channels: int = 3, threads: int = 1
) -> tuple[list[np.ndarray], dict]:
    """Each case from tests/js_tiles.mjs in `kind` ("node": onnxruntime-node, "web":
    onnxruntime-web wasm in Node): (tiles (H, W, C), what the script reported)."""
    with tempfile.TemporaryDirectory() as d:
        spec, raw = Path(d) / "cases.json", Path(d) / "out.raw"
        spec.write_text(json.dumps(_case_list(cases)))
        args = ["node", JS_TILES, kind, web_model, spec, raw, "--threads", threads]
        r = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"js_tiles.mjs {kind} failed: {r.stderr.strip()}")
        data = np.frombuffer(raw.read_bytes(), np.uint8)
    out, at = [], 0
    for _, _, _, h, w, _ in cases:
        n = h * w * channels
        out.append(data[at : at + n].reshape(h, w, channels))
        at += n
    assert at == data.size, "js_tiles.mjs wrote more bytes than the cases hold"
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def browser_tiles(browser, web_model: str | Path, cases: list[Case]) -> list[np.ndarray]:
    """Each case from the `tilegen view` page's worker (onnxruntime-web, wasm) in Chromium:
    the RGB bytes of the RGBA it paints (alpha checked opaque)."""
    from tilegen.view import ViewServer

    srv = ViewServer(Path(web_model), 0).start()
    try:
        page = browser.open(srv.url, 1000, 700)
        page.evaluate("window.tilegen.ready")
        out = []
        for seed, y0, x0, h, w, period in cases:
            py, px = period or (0, 0)
            js = f"window.tilegen.tile('{seed}', '{y0}', '{x0}', {h}, {w}, {py}, {px})"
            rgba = np.frombuffer(base64.b64decode(page.evaluate(js, timeout=600)), np.uint8)
            rgba = rgba.reshape(h, w, 4)
            assert (rgba[..., 3] == 255).all()
            out.append(rgba[..., :3].copy())
        return out
    finally:
        srv.close()


def differences(got: list[np.ndarray], want: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """Per case: (bytes that differ, largest difference in levels, bytes)."""
    rows = []
    for g, w in zip(got, want):
        d = np.abs(g.astype(int) - w.astype(int))
        rows.append((int((d > 0).sum()), int(d.max()), int(d.size)))
    return rows


JS_RUN = ROOT / "tests" / "js_run.mjs"


def js_run(
    kind: str,
    model,
    feeds: dict[str, np.ndarray],
    outputs: list[str],
    threads: int = 1,
    repeat: int = 1,
) -> tuple[dict[str, np.ndarray], float]:
    """Run `model` (a path or an onnx.ModelProto) once in tests/js_run.mjs (`kind` "node":
    onnxruntime-node, "web": onnxruntime-web wasm in Node): (outputs by name, median seconds)."""
    types = {
        "float32": np.float32,
        "int32": np.int32,
        "int64": np.int64,
        "uint8": np.uint8,
        "int8": np.int8,
        "uint32": np.uint32,
        "int16": np.int16,
        "uint16": np.uint16,
    }
    with tempfile.TemporaryDirectory() as d:
        if not isinstance(model, (str, Path)):
            path = Path(d) / "model.onnx"
            path.write_bytes(model.SerializeToString())
            model = path
        spec = {"model": str(model), "inputs": {}, "outputs": {}}
        for name, a in feeds.items():
            f = Path(d) / f"in_{len(spec['inputs'])}.raw"
            a = np.ascontiguousarray(a)
            f.write_bytes(a.tobytes())
            spec["inputs"][name] = {"type": str(a.dtype), "dims": list(a.shape), "file": str(f)}
        for i, name in enumerate(outputs):
            spec["outputs"][name] = str(Path(d) / f"out_{i}.raw")
        (Path(d) / "spec.json").write_text(json.dumps(spec))
        args = [
            "node",
            JS_RUN,
            kind,
            Path(d) / "spec.json",
            "--threads",
            threads,
            "--repeat",
            repeat,
        ]
        r = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"js_run.mjs {kind} failed: {r.stderr.strip()}")
        facts = json.loads(r.stdout.strip().splitlines()[-1])
        got = {}
        for name in outputs:
            t = facts["types"][name]
            data = np.frombuffer(Path(spec["outputs"][name]).read_bytes(), types[t["type"]])
            got[name] = data.reshape(t["dims"]).copy()
    return got, facts["seconds"]
