"""Web maps for map makers: tilejson.json's tile URLs, the PMTiles archive, and the README's map
pages (Leaflet, OpenLayers, MapLibre; xyz and PMTiles) in a real headless Chromium.

Every page is cut out of README.md between its `<!-- webmap: NAME -->` marker and the end of the
html block after it, so the README and the test cannot drift. The pages are served with the
tiles of a 700x1000 store from 127.0.0.1 (with HTTP range requests, which PMTiles needs) and the
libraries from `tests/webmaps/node_modules` (`npm ci --prefix tests/webmaps`; pinned versions,
never a CDN). In an 800x600 window the Leaflet and OpenLayers pages fit the whole picture at
zoom 1 (half size) and the MapLibre pages open at its centre at zoom 2 (1:1): the screenshot must
show the store's pyramid level 1 or level 0 there, pixel for pixel. Where Chromium or the npm
folder is missing those tests skip and say what to install.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import numpy as np
import pytest
from browser import no_chromium
from helpers import ROOT, cli
from PIL import Image

from tilegen import zarr_store
from tilegen.errors import Interrupted, UserError
from tilegen.pmtiles_out import write_pmtiles
from tilegen.webtiles import write_web_tiles

NPM = ROOT / "tests" / "webmaps"
LIBRARIES = ("leaflet", "ol", "maplibre-gl", "pmtiles")
VIEWPORT = (800, 600)  # width, height: the picture fits at zoom 1 (500 x 350)
BACKGROUND = (51, 51, 51)  # the pages' #333
SCREENSHOTS = os.environ.get("TILEGEN_SCREENSHOTS")


def _no_npm() -> str | None:
    missing = [p for p in LIBRARIES if not (NPM / "node_modules" / p / "package.json").is_file()]
    if missing:
        return f"{', '.join(missing)} missing: npm ci --prefix tests/webmaps"
    return None


def level(store: Path, lv: int) -> np.ndarray:
    """(h, w, C) of the store's pyramid level lv."""
    return np.asarray(zarr_store.open_level(store, lv, "r")[:]).transpose(1, 2, 0)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def archive_tiles(path: Path) -> dict[tuple[int, int, int], bytes]:
    from pmtiles.reader import MmapSource, Reader, all_tiles

    with open(path, "rb") as f:
        return dict(all_tiles(Reader(MmapSource(f)).get_bytes))


def archive_info(path: Path) -> tuple[dict, dict]:
    from pmtiles.reader import MmapSource, Reader

    with open(path, "rb") as f:
        r = Reader(MmapSource(f))
        return r.header(), r.metadata()


def folder_tiles(out: Path, ext: str) -> dict[tuple[int, int, int], bytes]:
    return {
        tuple(int(v) for v in p.relative_to(out).with_suffix("").parts): p.read_bytes()
        for p in out.rglob(f"*.{ext}")
    }


# --- the PMTiles archive ----------------------------------------------------------------------


@pytest.mark.parametrize("image,tile", [("png", 256), ("jpg", 512)])
def test_pmtiles_holds_the_xyz_tiles(store, tmp_path, image, tile):
    """Every xyz tile, at the same z/x/y, with the same bytes; nothing else; the tilejson facts
    in the header and metadata; tile data in tile-id order (clustered)."""
    xyz, archive = tmp_path / "xyz", tmp_path / "world.pmtiles"
    write_web_tiles(store, xyz, "xyz", image=image, tile=tile, progress=False)
    facts = write_pmtiles(store, archive, image=image, tile=tile, progress=False)
    want, got = folder_tiles(xyz, image), archive_tiles(archive)
    assert sorted(got) == sorted(want) and facts["tiles"] == len(want)
    assert all(got[k] == want[k] for k in want)
    tj = json.loads((xyz / "tilejson.json").read_text())
    header, meta = archive_info(archive)
    assert header["tile_type"].name == {"png": "PNG", "jpg": "JPEG"}[image]
    assert header["tile_compression"].name == "NONE" and header["clustered"]
    assert (header["min_zoom"], header["max_zoom"]) == (0, tj["maxzoom"])
    bounds = [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")]
    assert np.allclose(bounds, tj["bounds"], atol=1e-7)
    assert header["center_zoom"] == tj["center"][2]
    assert meta["tilegen"] == tj["tilegen"] and meta["format"] == image
    # decoded: the top zoom is the store's pixels, padded outside the image
    top = level(store, 0)
    t = decode(got[(tj["maxzoom"], 1, 1)])
    part = top[tile : 2 * tile, tile : 2 * tile]
    ph, pw = part.shape[:2]
    assert t.shape[:2] == (tile, tile)
    if image == "png":
        assert np.array_equal(t[:ph, :pw, :3], part)
    else:  # JPEG (quality 90) keeps each 8x8 block's mean on this noisy texture
        bh, bw = ph // 8 * 8, pw // 8 * 8

        def means(a):
            return a[:bh, :bw].reshape(bh // 8, 8, bw // 8, 8, 3).mean(axis=(1, 3))

        assert np.abs(means(t.astype(float)) - means(part.astype(float))).mean() < 1.5


def test_pmtiles_refusals_one_line(store, tmp_path):
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import write

    ours = tmp_path / "ours.pmtiles"
    code, out, err = cli("tiles", store, "-o", ours, "--format", "pmtiles", "--no-progress")
    assert code == 0 and "wrote 17 png tiles, 3 levels" in out, err
    foreign_text = tmp_path / "notes.pmtiles"
    foreign_text.write_text("my notes\n")
    foreign = tmp_path / "other.pmtiles"  # a real PMTiles archive, not tilegen's
    with write(foreign) as w:
        w.write_tile(zxy_to_tileid(0, 0, 0), b"\x89PNG")
        w.finalize({"tile_type": TileType.PNG, "tile_compression": Compression.NONE},
                   {"name": "someone else's"})  # fmt: skip
    (tmp_path / "dir.pmtiles").mkdir()
    (tmp_path / "link.pmtiles").symlink_to(ours)
    half = tmp_path / "half.zarr"
    shutil.copytree(store, half)
    meta = json.loads((half / "zarr.json").read_text())
    meta["attributes"]["tilegen"]["complete"] = False
    (half / "zarr.json").write_text(json.dumps(meta))
    fmt = ("--format", "pmtiles")
    for args, message in (
        ((store, "-o", ours, *fmt), "already exists: pass --overwrite"),
        ((store, "-o", foreign_text, *fmt, "--overwrite"), "not a PMTiles archive written by"),
        ((store, "-o", foreign, *fmt, "--overwrite"), "not a PMTiles archive written by"),
        ((store, "-o", tmp_path / "dir.pmtiles", *fmt), "is a folder"),
        ((store, "-o", tmp_path / "link.pmtiles", *fmt, "--overwrite"), "is a link"),
        ((store, "-o", tmp_path / "world", *fmt), "name it world.pmtiles"),
        ((store, "-o", tmp_path / "a.pmtiles"), "add --format pmtiles"),
        ((store, "-o", tmp_path / "a.pmtiles", *fmt, "--level", "1"), "numbered tiles"),
        ((store, "-o", tmp_path / "a.pmtiles", *fmt, "--url", "https://x/"), "--url is for"),
        ((store, "-o", tmp_path / "a.pmtiles", *fmt, "--tile", "300"), "power of two"),
        ((store, "-o", tmp_path / "nope" / "a.pmtiles", *fmt), "does not exist"),
        ((half, "-o", tmp_path / "a.pmtiles", *fmt), "not complete"),
    ):
        code, _, err = cli("tiles", *args, "--no-progress")
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    assert foreign_text.read_text() == "my notes\n" and not (tmp_path / "a.pmtiles").exists()
    # --overwrite replaces tilegen's own archive
    code, out, err = cli("tiles", store, "-o", ours, *fmt, "--image", "jpg", "--overwrite")
    assert code == 0, err
    assert archive_info(ours)[0]["tile_type"].name == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_pmtiles_interrupted_leaves_nothing(store, tmp_path, monkeypatch):
    """Ctrl-C halfway: no archive, no partial file, and an archive being replaced is intact."""
    import tilegen.pmtiles_out as po

    out = tmp_path / "world.pmtiles"
    write_pmtiles(store, out, progress=False)
    before = out.read_bytes()
    calls = {"n": 0}
    real = po.encode_tile

    def stop_halfway(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(po, "encode_tile", stop_halfway)
    for target, overwrite in ((tmp_path / "new.pmtiles", False), (out, True)):
        calls["n"] = 0
        with pytest.raises(Interrupted, match="was not written; rerun the same command"):
            write_pmtiles(store, target, overwrite=overwrite, threads=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world.pmtiles"]
    assert out.read_bytes() == before
    monkeypatch.setattr(po, "encode_tile", real)  # the rerun: the same bytes
    write_pmtiles(store, tmp_path / "again.pmtiles", threads=2, progress=False)
    assert (tmp_path / "again.pmtiles").read_bytes() == before


@pytest.mark.parametrize(
    "height,width,tile", [(9000, 13000, 256), (5000, 3000, 512), (300, 20000, 16)]
)
def test_pmtiles_blocks_come_in_tile_id_order(height, width, tile):
    """Big stores cut in many blocks per zoom still hand the writer every tile once, in
    increasing tile id (a clustered archive): blocks are aligned squares of 2^k tiles."""
    from pmtiles.tile import zxy_to_tileid

    from tilegen.pmtiles_out import _jobs
    from tilegen.webtiles import level_shape, levels_for

    ids = []
    for z, _, by, bx, bh, bw in _jobs(height, width, tile):
        ids += sorted(
            zxy_to_tileid(z, (bx + x) // tile, (by + y) // tile)
            for y in range(0, bh, tile)
            for x in range(0, bw, tile)
        )
    want = sum(
        -(-level_shape(height, width, lv)[0] // tile)
        * -(-level_shape(height, width, lv)[1] // tile)
        for _, lv in levels_for("xyz", height, width, tile)
    )
    assert len(ids) == want and all(a < b for a, b in zip(ids, ids[1:]))


# --- tilejson.json's tile URLs ----------------------------------------------------------------


class Site:
    """A static server on 127.0.0.1 with HTTP range requests (PMTiles reads byte ranges):
    `pages` at /NAME, FOLDER's files under /, tests/webmaps/node_modules under /node_modules/."""

    TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript",
             ".mjs": "text/javascript", ".css": "text/css", ".json": "application/json",
             ".png": "image/png", ".jpg": "image/jpeg"}  # fmt: skip

    def __init__(self, folder: Path, pages: dict[str, str] | None = None):
        site = self
        self.requests: list[tuple[str, int]] = []
        roots = {"node_modules": NPM / "node_modules"}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = unquote(urlsplit(self.path).path).lstrip("/")
                first = path.split("/", 1)[0]
                if path in (pages or {}):
                    body, kind = pages[path].encode(), Site.TYPES[".html"]
                else:
                    root = roots.get(first, folder).resolve()
                    rel = path.split("/", 1)[1] if first in roots and "/" in path else path
                    file = (root / rel).resolve()
                    if not file.is_relative_to(root) or not file.is_file():
                        return self.reply(404, b"not found", "text/plain")
                    body = file.read_bytes()
                    kind = Site.TYPES.get(file.suffix, "application/octet-stream")
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if m:
                    start = int(m[1])
                    end = min(int(m[2]) if m[2] else len(body) - 1, len(body) - 1)
                    head = {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
                    return self.reply(206, body[start : end + 1], kind, head)
                self.reply(200, body, kind)

            def reply(self, status, body, kind, headers=None):
                site.requests.append((self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Cache-Control", "no-store")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def test_tilejson_urls_resolve(store, tmp_path):
    """Default: relative to tilejson.json (resolved against the JSON's URL, they fetch the
    tiles); --url: absolute, TileJSON 3.0.0's form; bounds and center place the picture at the
    Web Mercator world's top-left corner."""
    site = Site(tmp_path)
    try:
        base = site.url + "maps/world_xyz/"
        write_web_tiles(store, tmp_path / "maps" / "world_xyz", "xyz", progress=False)
        write_web_tiles(store, tmp_path / "abs", "xyz", progress=False, url=base)
        rel = json.loads((tmp_path / "maps" / "world_xyz" / "tilejson.json").read_text())
        absolute = json.loads((tmp_path / "abs" / "tilejson.json").read_text())
        assert rel["tiles"] == ["{z}/{x}/{y}.png"]
        assert absolute["tiles"] == [base + "{z}/{x}/{y}.png"]
        assert {k: v for k, v in rel.items() if k != "tiles"} == {
            k: v for k, v in absolute.items() if k != "tiles"
        }
        tile = (tmp_path / "maps" / "world_xyz" / "2" / "3" / "1.png").read_bytes()
        for template in (urljoin(base + "tilejson.json", rel["tiles"][0]), absolute["tiles"][0]):
            url = template.format(z=2, x=3, y=1)
            assert url == base + "2/3/1.png" and fetch(url) == tile
        west, south, east, north = rel["bounds"]
        assert (west, north) == (-180, pytest.approx(85.0511287798066))
        assert east == pytest.approx(-180 + 360 * 1000 / 1024) and -90 < south < north
        assert rel["center"][:2] == [
            pytest.approx((west + east) / 2),
            pytest.approx(49.3823728, abs=1e-6),
        ]
    finally:
        site.close()
    for url in ("ftp://host/x/", "example.com/world_xyz/", "https://host/x/?v=1", "/world_xyz/"):
        with pytest.raises(UserError, match="absolute http"):
            write_web_tiles(store, tmp_path / "bad", "xyz", progress=False, url=url)
    code, _, err = cli("tiles", store, "-o", tmp_path / "d", "--format", "dzi", "--url", base)
    assert code == 2 and "--url is for --format xyz" in err and err.count("\n") == 1
    # a trailing slash is added
    write_web_tiles(store, tmp_path / "s", "xyz", progress=False, url="https://h.example/w")
    doc = json.loads((tmp_path / "s" / "tilejson.json").read_text())
    assert doc["tiles"] == ["https://h.example/w/{z}/{x}/{y}.png"]


# --- the README's pages in a real browser -----------------------------------------------------


def readme_pages() -> dict[str, str]:
    """{name: html} of every `<!-- webmap: NAME -->` block in README.md."""
    text = (ROOT / "README.md").read_text()
    return dict(re.findall(r"<!-- webmap: (\S+) -->\n```html\n(.*?)```", text, re.S))


PAGES = ["leaflet-xyz", "leaflet-pmtiles", "openlayers-xyz", "maplibre-xyz", "maplibre-pmtiles"]


def test_readme_has_the_pages():
    pages = readme_pages()
    assert sorted(pages) == sorted(PAGES)
    for html in pages.values():  # npm at build time, never a CDN at run time
        assert "http://" not in html and "https://" not in html and "node_modules/" in html


@pytest.fixture(scope="module")
def site(store, tmp_path_factory):
    """The README's pages beside world_xyz/ (cut with --url: tilejson.json's URLs absolute) and
    world.pmtiles."""
    if no_chromium() or _no_npm():
        pytest.skip(no_chromium() or _no_npm())
    folder = tmp_path_factory.mktemp("site")
    site = Site(folder, {f"{name}.html": html for name, html in readme_pages().items()})
    try:
        write_web_tiles(store, folder / "world_xyz", "xyz", progress=False,
                        url=site.url + "world_xyz/")  # fmt: skip
        write_pmtiles(store, folder / "world.pmtiles", progress=False)
        yield site
    finally:
        site.close()


def _place(shot: np.ndarray, want: np.ndarray) -> tuple[int, int]:
    """Where `want`'s top-left corner lies in `shot` (it may be off-screen): the peak of the
    phase correlation of the two grey images, zero-padded so that shifts do not wrap."""
    a, b = shot.mean(axis=2), want.mean(axis=2)
    size = (a.shape[0] + b.shape[0], a.shape[1] + b.shape[1])
    cross = np.fft.rfft2(a - a.mean(), size) * np.conj(np.fft.rfft2(b - b.mean(), size))
    peak = np.fft.irfft2(cross / (np.abs(cross) + 1e-9), size)
    dy, dx = np.unravel_index(int(peak.argmax()), peak.shape)
    return int(dy - size[0] if dy > a.shape[0] else dy), int(
        dx - size[1] if dx > a.shape[1] else dx
    )


def _controls(page, shape: tuple[int, int]) -> np.ndarray:
    """True over the map library's buttons and attribution (drawn over the map), 2 px wider."""
    js = """[...document.querySelectorAll('.leaflet-control, .ol-control, .maplibregl-ctrl')]
        .map((e) => e.getBoundingClientRect()).map((r) => [r.top, r.left, r.bottom, r.right])"""
    mask = np.zeros(shape, bool)
    for top, left, bottom, right in page.evaluate(js):
        mask[max(int(top) - 2, 0) : int(bottom) + 3, max(int(left) - 2, 0) : int(right) + 3] = True
    return mask


def _compare(shot: np.ndarray, want: np.ndarray, mask: np.ndarray) -> dict:
    """`want` placed where it best fits in `shot`: the largest |difference| over the part that
    is on screen and not under a control, the share of the screen it covers, whether it is all
    on screen, and the screen pixels just around it."""
    y, x = _place(shot, want)
    h, w = want.shape[:2]
    sh, sw = shot.shape[:2]
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, sh), min(x + w, sw)
    if y1 - y0 < 16 or x1 - x0 < 16:
        return {"at": (y, x), "worst": 255, "mean": 255.0, "cover": 0.0, "whole": False,
                "ring": np.zeros((0, 3))}  # fmt: skip
    d = np.abs(shot[y0:y1, x0:x1].astype(int) - want[y0 - y : y1 - y, x0 - x : x1 - x])
    d = d[~mask[y0:y1, x0:x1]]
    free = shot.copy()
    free[mask] = BACKGROUND
    ring = [free[r, x0:x1] for r in (y - 3, y + h + 2) if 0 <= r < sh]
    ring += [free[y0:y1, c] for c in (x - 3, x + w + 2) if 0 <= c < sw]
    return {"at": (y, x), "worst": int(d.max()), "mean": float(d.mean()),
            "cover": (y1 - y0) * (x1 - x0) / (sh * sw),
            "whole": (y0, x0, y1, x1) == (y, x, y + h, x + w),
            "ring": np.concatenate(ring) if ring else np.zeros((0, 3))}  # fmt: skip


@pytest.mark.parametrize("name", PAGES)
def test_readme_page_shows_the_store(browser, site, store, name):
    """The page, as the README has it, shows the store's pixels: Leaflet and OpenLayers fit the
    whole picture at zoom 1 (the store's level 1, 500 x 350) with the page's background around
    it (edge tiles transparent outside the image); MapLibre opens at tilejson's/the header's
    centre at zoom 2, one image pixel per screen pixel (level 0 filling the screen). Pixel for
    pixel (MapLibre draws with WebGL: allowed 1 level of 255, measured 0)."""
    levels = {lv: level(store, lv) for lv in (0, 1)}
    tol = 1 if name.startswith("maplibre") else 0  # measured: 0 for every page
    lv = 0 if name.startswith("maplibre") else 1  # the level the page opens on
    page = browser.open(site.url + f"{name}.html", *VIEWPORT)
    deadline, seen = time.monotonic() + 90, {}
    try:
        while time.monotonic() < deadline:  # until every tile is drawn
            time.sleep(0.5)
            png = page.screenshot()
            shot = decode(png)[:, :, :3]
            mask = _controls(page, shot.shape[:2])
            seen = {lv: _compare(shot, want, mask) for lv, want in levels.items()}
            if seen[lv]["worst"] <= tol:  # wait for the page's own level, not either
                break
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            (Path(SCREENSHOTS) / f"webmap_{name}.png").write_bytes(png)
    finally:
        try:
            page.send("Page.close", timeout=10)
        except Exception:
            pass
    r = seen[lv]
    facts = f"{name}: level {lv} at {r['at']}, max |diff| {r['worst']}, mean {r['mean']:.3f}"
    assert r["worst"] <= tol, f"{facts}; console: {browser.console[-5:]}"
    if lv == 1:  # the whole picture, centred, the page's background around it
        assert r["whole"] and r["at"] == ((VIEWPORT[1] - 350) // 2, (VIEWPORT[0] - 500) // 2)
    else:  # the picture's centre at the screen's centre, 1:1
        assert r["cover"] == 1.0 and r["at"] == (VIEWPORT[1] // 2 - 350, VIEWPORT[0] // 2 - 500)
    assert (np.abs(r["ring"].astype(int) - BACKGROUND) <= 1).all(), facts
    print(facts)
