"""The web side: xyz/dzi tiles, `tilegen view` (server and page), the Node example, and the page in
a real headless Chromium.

Stores are made with the real `generate` path from the fixture model (tests/conftest.py); the
page's model is the same generator wrapped into the dynamic self-contained form. Browser tests
need Debian's `chromium` and onnxruntime-web (`npm ci --prefix tilegen/web`); the Node test needs
node and onnxruntime-node (`ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix examples`). Where they
are missing those tests skip and say what to install (README, "Browser tests").
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import no_chromium
from helpers import ROOT, cli
from PIL import Image

from tilegen import zarr_store
from tilegen.errors import UserError
from tilegen.model import open_model, quantize_planar, render_tile
from tilegen.view import WEB, ViewServer, ort_web_dir
from tilegen.webtiles import write_web_tiles

SCREENSHOTS = os.environ.get("TILEGEN_SCREENSHOTS")  # keep the browser's screenshots there


def _no_ort_web() -> str | None:
    try:
        ort_web_dir()
    except UserError as e:
        return str(e)
    return None


def _no_node() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if not (ROOT / "examples" / "node_modules" / "onnxruntime-node").is_dir():
        return "onnxruntime-node is missing: ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix examples"
    return None


@pytest.fixture(scope="module")
def web_model(onnx_model, tmp_path_factory) -> Path:
    """The fixture generator in the dynamic self-contained form (wrapped without torch)."""
    from export.onnx_export import wrap_verified

    out = tmp_path_factory.mktemp("webmodel") / "fixture_web.onnx"
    wrap_verified(onnx_model, out, None)
    return out


def level(store: Path, lv: int) -> np.ndarray:
    return np.asarray(zarr_store.open_level(store, lv, "r")[:])


def read_png(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(src))


def expected_level(store: Path, lv: int) -> np.ndarray:
    """(C, h, w) of downsampling level lv: the store's, or 2x2 means below its coarsest."""
    n = int(zarr_store.read_attrs(store)["levels"])
    data = level(store, min(lv, n - 1))
    for _ in range(lv - (n - 1)):
        data = zarr_store.downsample2x(data)
    return data


# --- xyz / dzi --------------------------------------------------------------------------------


def test_xyz_tiles_are_the_store_pyramid(store, tmp_path):
    out = tmp_path / "xyz"
    facts = write_web_tiles(store, out, "xyz", progress=False)
    doc = json.loads((out / "tilejson.json").read_text())
    assert doc["tilejson"] == "3.0.0" and doc["tiles"] == ["{z}/{x}/{y}.png"]
    assert doc["maxzoom"] == 2 == facts["levels"] - 1  # 1000 / 256 -> zoom 2 is 1:1
    assert doc["tilegen"] == doc["tilegen"] | {"width": 1000, "height": 700, "tile_size": 256}
    for z in range(doc["maxzoom"] + 1):
        want = expected_level(store, doc["maxzoom"] - z).transpose(1, 2, 0)
        h, w = want.shape[:2]
        cols, rows = -(-w // 256), -(-h // 256)
        assert sorted(int(p.name) for p in (out / str(z)).iterdir()) == list(range(cols))
        for x in range(cols):
            assert len(list((out / str(z) / str(x)).iterdir())) == rows  # none outside the image
            for y in range(rows):
                t = read_png(out / str(z) / str(x) / f"{y}.png")
                assert t.shape[:2] == (256, 256)
                part = want[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
                ph, pw = part.shape[:2]
                assert np.array_equal(t[:ph, :pw, :3], part)
                if (ph, pw) != (256, 256):  # edge tiles: padded, transparent outside
                    assert t.shape[2] == 4 and (t[:ph, :pw, 3] == 255).all()
                    assert (t[ph:, :, 3] == 0).all() and (t[:, pw:, 3] == 0).all()


def test_dzi_tiles_are_the_store_pyramid(store, tmp_path):
    out = tmp_path / "dzi"
    write_web_tiles(store, out, "dzi", tile=200, progress=False)
    xml = (out / "image.dzi").read_text()
    assert 'TileSize="200" Overlap="0" Format="png"' in xml and 'Width="1000" Height="700"' in xml
    levels = sorted(int(p.name) for p in (out / "image_files").iterdir())
    assert levels == list(range(11))  # ceil(log2(1000)) = 10 .. 0 (1x1)
    for d in (10, 9, 6, 0):
        want = expected_level(store, 10 - d).transpose(1, 2, 0)
        h, w = want.shape[:2]
        mosaic = np.zeros_like(want)
        for p in (out / "image_files" / str(d)).iterdir():
            col, row = (int(v) for v in p.stem.split("_"))
            t = read_png(p)
            mosaic[row * 200 : row * 200 + t.shape[0], col * 200 : col * 200 + t.shape[1]] = t
        assert np.array_equal(mosaic, want), d
    assert read_png(out / "image_files" / "0" / "0_0.png").shape[:2] == (1, 1)


def test_web_tiles_resume_and_refuse(store, tmp_path, monkeypatch):
    out = tmp_path / "xyz"
    write_web_tiles(store, out, "xyz", image="jpg", progress=False)
    files = sorted(p for p in out.rglob("*.jpg"))
    before = {p: p.read_bytes() for p in files}
    # a killed run: some tiles and the descriptor missing -> the rerun writes just those
    (out / "tilejson.json").unlink()
    for p in files[::3]:
        p.unlink()
    facts = write_web_tiles(store, out, "xyz", image="jpg", progress=False)
    assert facts["written"] == len(files[::3]) and facts["kept"] == len(files) - facts["written"]
    assert {p: p.read_bytes() for p in files} == before
    # refusals, one line each, exit code 2
    for args, message in (
        ((store, "-o", out, "--format", "xyz", "--image", "jpg"), "already holds these tiles"),
        ((store, "-o", out, "--format", "dzi"), "holds other tiles"),
        ((store, "-o", ROOT / "docs", "--format", "dzi"), "never deletes it"),
        ((store, "-o", tmp_path / "n", "--format", "xyz", "--tile", "300"), "power of two"),
        ((store, "-o", tmp_path / "n", "--format", "xyz", "--level", "1"), "numbered tiles"),
        ((tmp_path, "-o", tmp_path / "n", "--format", "xyz"), "not a tilegen Zarr store"),
    ):
        code, _, err = cli("tiles", *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
    # --overwrite replaces it with another format
    code, stdout, err = cli("tiles", store, "-o", out, "--format", "dzi", "--overwrite")
    assert code == 0, err
    assert (out / "image.dzi").is_file() and not (out / "tilejson.json").exists()
    # an unfinished store is refused
    meta = json.loads((store / "zarr.json").read_text())
    half = tmp_path / "half.zarr"
    shutil.copytree(store, half)
    meta["attributes"]["tilegen"]["complete"] = False
    (half / "zarr.json").write_text(json.dumps(meta))
    code, _, err = cli("tiles", half, "-o", tmp_path / "h", "--format", "dzi")
    assert code == 2 and "not complete" in err and err.count("\n") == 1


# --- the server -------------------------------------------------------------------------------


def get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, b"", {}


def test_view_server_serves_the_store(store):
    srv = ViewServer(store, 0).start()
    try:
        assert srv.httpd.server_address[0] == "127.0.0.1" and srv.url.startswith(
            "http://127.0.0.1:"
        )
        status, body, headers = get(srv.url + "api/info")
        info = json.loads(body)
        assert status == 200 and info["kind"] == "store" and info["complete"]
        assert info["levels"] == [[700, 1000], [350, 500], [175, 250], [88, 125]]
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        status, body, _ = get(srv.url + "store/1/3_2.png")  # level 1, column 3, row 2
        assert status == 200
        assert np.array_equal(
            read_png(body), level(store, 1)[:, 256:350, 384:500].transpose(1, 2, 0)
        )
        for bad in ("store/9/0_0.png", "store/0/99_0.png", "static/../view.py", "model.onnx",
                    "vendor/ort/ort.wasm.min.mjs", "tiles/x", "nothing"):  # fmt: skip
            assert get(srv.url + bad)[0] == 404, bad
        assert get(srv.url)[0] == 200 and b"viewer.js" in get(srv.url)[1]
        assert get(srv.url + "vendor/osd/openseadragon.min.js")[0] == 200
        with pytest.raises(UserError, match="in use"):
            ViewServer(store, srv.httpd.server_address[1])
    finally:
        srv.close()


def test_view_refuses_bad_paths(store, onnx_model, tmp_path, monkeypatch):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        for args, message in (
            ((tmp_path / "nope",), "does not exist"),
            ((ROOT / "docs",), "not something tilegen view shows"),
            ((onnx_model,), "--self-contained"),  # windowed: says how to make the page's form
            ((ROOT / "README.md",), "not something tilegen view shows"),
            ((store, "--port", str(port)), "in use"),
        ):
            code, _, err = cli("view", *args, timeout=60)
            assert code == 2 and message in err and err.count("\n") == 1, err
    finally:
        busy.close()
    monkeypatch.setenv("TILEGEN_ORT_WEB", str(tmp_path))  # onnxruntime-web missing: one line
    with pytest.raises(UserError, match="npm ci --prefix") as e:
        ort_web_dir()
    assert "\n" not in str(e.value)


# --- the Node example -------------------------------------------------------------------------

NODE_CASES = [  # (seed, y0, x0), sizes, period
    ((0, 0, 0), (64, 64), None),
    ((2**32 - 1, -37, 101), (37, 53), None),
    ((5, -(2**31) - 5, 2**31 + 3), (1, 130), None),
    ((7, 2**40 + 1, -(2**33)), (64, 64), None),
    ((9, -8, 16), (37, 53), (32, 64)),
]


@pytest.mark.skipif(_no_node() is not None, reason=str(_no_node()))
def test_node_example_is_byte_exact(onnx_model, web_model, tmp_path):
    """examples/plain_onnxruntime.mjs (onnxruntime-node) writes the tiler's bytes: 5 origins x 3
    tile sizes, negative origins, origins past 2^31, seeds 0 and 2^32-1, periodic."""
    info = open_model(onnx_model).info
    script = ROOT / "examples" / "plain_onnxruntime.mjs"
    for (seed, y0, x0), _size, period in NODE_CASES:
        for h, w in ((64, 64), (37, 53), (1, 130)):
            out = tmp_path / "t.raw"
            args = ["node", script, web_model, out, "--seed", seed, "--origin", y0, x0,
                    "--size", h, w, "--tiles", 1, 2, "--raw"]  # fmt: skip
            if period:
                args += ["--period", *period]
            r = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            got = np.frombuffer(out.read_bytes(), np.uint8).reshape(h, 2 * w, 3)
            want = render_tile(onnx_model, seed, y0, x0, h, 2 * w, period)
            assert np.array_equal(got, quantize_planar(want, info, "uint8").transpose(1, 2, 0))
    # the PNG it writes by default
    args = ["node", str(script), str(web_model), str(tmp_path / "t.png"), "--seed", "3"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    want = quantize_planar(render_tile(onnx_model, 3, 0, 0, 512, 512), info, "uint8")
    assert np.array_equal(read_png(tmp_path / "t.png"), want.transpose(1, 2, 0))


def test_python_example_takes_the_dynamic_form(onnx_model, web_model, tmp_path):
    import sys

    out = tmp_path / "p.png"
    args = [sys.executable, ROOT / "examples" / "plain_onnxruntime.py", web_model, out]
    args += ["--seed", 9, "--origin", -8, 2**31 + 3, "--size", 24, 40, "--tiles", 2, 1]
    args += ["--period", 32, 64]
    r = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "periodic" in r.stdout, r.stderr
    info = open_model(onnx_model).info
    want = quantize_planar(
        render_tile(onnx_model, 9, -8, 2**31 + 3, 48, 40, (32, 64)), info, "uint8"
    )
    assert np.array_equal(read_png(out), want.transpose(1, 2, 0))


# --- in a real browser ------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(no_chromium() is not None, reason=str(no_chromium()))


def _shot(page, name: str) -> np.ndarray:
    """The screenshot of the page's stage (below the header), RGB."""
    png = page.screenshot()
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / f"{name}.png").write_bytes(png)
    top = int(page.evaluate("document.getElementById('stage').getBoundingClientRect().top")) + 1
    return read_png(png)[top:, :, :3]


def _open(browser, path) -> tuple[object, np.ndarray, dict]:
    """Open the viewer on `path`, wait for the first view, screenshot it; (page, image, info)."""
    srv = ViewServer(path, 0).start()
    try:
        page = browser.open(srv.url, 1000, 700)
        info = page.evaluate("window.tilegen.ready.then(() => window.tilegen.info)")
        return page, _shot(page, f"view_{info['kind']}"), info
    finally:
        srv.close()


def _blocks(img: np.ndarray, b: int = 16) -> np.ndarray:
    h, w = (img.shape[0] - 2) // b * b, img.shape[1] // b * b
    return img[:h, :w].reshape(h // b, b, w // b, b, 3).mean(axis=(1, 3))


@needs_chromium
def test_browser_store_view_shows_the_texture(browser, store, tmp_path):
    """Store, xyz and dzi views: not blank, the store's colours, the same picture."""
    _, img, info = _open(browser, store)
    assert info["kind"] == "store"
    stage = img[:, 100:-100].reshape(-1, 3).astype(float)
    tex = level(store, 2).reshape(3, -1).T.astype(float)
    assert stage.std(axis=0).min() > 0.5 * tex.std(axis=0).min()  # texture, not a flat fill
    assert np.abs(stage.mean(axis=0) - tex.mean(axis=0)).max() < 8  # the store's colours
    for fmt in ("xyz", "dzi"):
        out = tmp_path / fmt
        write_web_tiles(store, out, fmt, progress=False)
        _, other, info = _open(browser, out)
        assert info["kind"] == fmt
        # the same home view of the same pixels (tiles cut differently are resampled at other
        # sub-pixel offsets: compare 16x16 block means)
        assert abs(len(other) - len(img)) <= 2
        d = np.abs(_blocks(other) - _blocks(img))
        assert d.mean() < 2 and np.percentile(d, 99) < 8, (fmt, d.mean())


def _browser_tiles(browser, windowed: Path, web: Path, shot: str | None = None):
    """Every NODE_CASES tile from onnxruntime-web in the page's worker against the tiler's:
    (largest byte difference, bytes that differ, bytes)."""
    info = open_model(windowed).info
    srv = ViewServer(web, 0).start()
    try:
        page = browser.open(srv.url, 1000, 700)
        page.evaluate("window.tilegen.ready")
        worst, differ, total = 0, 0, 0
        for (seed, y0, x0), (h, w), period in NODE_CASES:
            py, px = period or (0, 0)
            js = f"window.tilegen.tile('{seed}', '{y0}', '{x0}', {h}, {w}, {py}, {px})"
            rgba = np.frombuffer(base64.b64decode(page.evaluate(js)), np.uint8).reshape(h, w, 4)
            want = quantize_planar(render_tile(windowed, seed, y0, x0, h, w, period), info,
                                   "uint8").transpose(1, 2, 0)  # fmt: skip
            d = np.abs(rgba[..., :3].astype(int) - want)
            worst, differ, total = max(worst, d.max()), differ + (d > 0).sum(), total + d.size
            assert (rgba[..., 3] == 255).all()
        print(f"browser parity ({windowed.name}): {differ} of {total} bytes differ, max {worst}")
        if shot:
            img = _shot(page, shot)
            assert img.reshape(-1, 3).std(axis=0).min() > 3  # a texture was painted
        return worst, differ, total
    finally:
        srv.close()


@needs_chromium
@pytest.mark.skipif(_no_ort_web() is not None, reason=str(_no_ort_web()))
def test_browser_paints_the_models_tiles(browser, onnx_model, web_model):
    """onnxruntime-web in the page's worker: within one 8-bit level of the tiler's tiles."""
    worst, _, _ = _browser_tiles(browser, onnx_model, web_model, "view_model")
    assert worst <= 1


@needs_chromium
@pytest.mark.skipif(_no_ort_web() is not None, reason=str(_no_ort_web()))
def test_browser_runs_a_projecting_model(browser, tmp_path):
    """The bundled model ends with a patch projection, its scores in a Loop over chunks of rows
    (export/chunked.py), in integer arithmetic (docs/FORMAT.md section 11): the browser's
    runtime paints the tiler's bytes exactly (tests/test_parity.py: whole canvases)."""
    from export.onnx_export import wrap_verified

    bundled = ROOT / "tilegen" / "assets" / "default.onnx"
    web = tmp_path / "default_web.onnx"
    wrap_verified(bundled, web, None)
    _, differ, _ = _browser_tiles(browser, bundled, web)
    assert differ == 0


def test_web_side_needs_no_torch(store, tmp_path):
    """tiles --format and view run where torch cannot be imported."""
    code = (
        "import sys; sys.modules['torch'] = None; import cli; "
        "sys.argv = ['tilegen'] + sys.argv[1:]; cli.main()"
    )
    import sys

    r = subprocess.run([sys.executable, "-c", code, "tiles", str(store), "-o", str(tmp_path / "d"),
                        "--format", "dzi", "--no-progress"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0 and (tmp_path / "d" / "image.dzi").is_file(), r.stderr
    r = subprocess.run([sys.executable, "-c", code, "view", str(tmp_path / "nope")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_web_assets_are_small_and_licensed():
    """What the repository ships for the page: small files, OpenSeadragon with its licence."""
    vendored = WEB / "vendor" / "openseadragon"
    assert (vendored / "LICENSE.txt").read_text().startswith("Copyright (C) 2009 CodePlex")
    shipped = [p for p in WEB.rglob("*") if p.is_file() and "node_modules" not in p.parts]
    assert sum(p.stat().st_size for p in shipped) < 600_000
    text = "".join(p.read_text() for p in (WEB / "static").iterdir())
    text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, nothing fetched
    assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text
