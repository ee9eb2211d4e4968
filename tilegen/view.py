"""`tilegen view PATH`: a local web page (127.0.0.1 only) that shows what tilegen made.

    a store (OUT.zarr)         a zoomable, pannable pyramid: OpenSeadragon reads the store's own
                               pyramid levels through /store/{level}/{col}_{row}.png
    an xyz or dzi folder       the same viewer on the folder's files (tilegen tiles --format)
    a self-contained .onnx     an endless texture painted in the page by onnxruntime-web from the
    (dynamic form)             file itself, tiles computed on demand in a Web Worker

The page's own files are in tilegen/web/static; OpenSeadragon (BSD-3) is vendored in
tilegen/web/vendor; onnxruntime-web (MIT, tens of MB of WebAssembly) is installed from npm into
tilegen/web/node_modules (`npm ci --prefix tilegen/web`) and only the model view needs it.
Nothing is fetched from elsewhere. The server answers only for the page's own files and for what
the page shows: a store's tiles (through the store API), an xyz folder's {z}/{x}/{y} tiles and
tilejson.json, a DeepZoom descriptor and its NAME_files/ tiles, the model file; every other path
is 404, whatever lies in the folder. It binds 127.0.0.1 and answers only requests whose Host
header names the loopback (a web page that re-binds its own host name to 127.0.0.1 cannot read
tiles); `--host` opens it to the network, with a warning. Error bodies never hold local paths.
Responses carry COOP/COEP headers so the page is cross-origin isolated (multi-threaded wasm);
`--cors ORIGIN` lets map pages served from ORIGIN load the tiles.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from tilegen import zarr_store
from tilegen.errors import Interrupted, UserError
from tilegen.imageio import convert_bits

WEB = Path(__file__).resolve().parent / "web"
STATIC, VENDOR = WEB / "static", WEB / "vendor"
ORT_ENV = "TILEGEN_ORT_WEB"  # another folder holding onnxruntime-web's dist/ files
HOST = "127.0.0.1"
TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".dzi": "application/xml",
    ".onnx": "application/octet-stream",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
TILE_IMAGE = r"\.(png|jpg)"
XYZ_FILE = re.compile(rf"\d+/\d+/\d+{TILE_IMAGE}|tilejson\.json")


def ort_web_dir() -> Path:
    """onnxruntime-web's dist folder, or a one-line UserError saying how to install it."""
    env = os.environ.get(ORT_ENV)
    d = Path(env) if env else WEB / "node_modules" / "onnxruntime-web" / "dist"
    if not (d / "ort.wasm.min.mjs").is_file():
        raise UserError(
            f"onnxruntime-web is missing ({d}): run 'npm ci --prefix {WEB}' once (or set {ORT_ENV} "
            "to its dist folder)"
        )
    return d


@dataclass
class Target:
    """What is viewed: kind is store, xyz, dzi or model; `info` goes to the page as JSON."""

    kind: str
    path: Path
    info: dict = field(default_factory=dict)
    files: Path | None = None  # folder served under /tiles/ (xyz, dzi)
    pattern: re.Pattern | None = None  # the only names served from `files`

    def tile_file(self, rel: str) -> Path | None:
        """files/rel when rel is a name the page needs and the file lies inside `files`."""
        if self.files is None or self.pattern is None or not self.pattern.fullmatch(rel):
            return None
        return _inside(self.files, rel)


def _store_target(p: Path) -> Target:
    attrs, _ = zarr_store.open_store(p)  # metadata checked: an edited store is refused
    h, w = (int(v) for v in attrs["size"])
    levels = []
    for lv in range(int(attrs.get("levels", 1))):
        arr = zarr_store.open_level(p, lv, "r", attrs.get("uid", ""))
        levels.append([int(arr.shape[1]), int(arr.shape[2])])
    info = {
        "width": w,
        "height": h,
        "levels": levels,
        "tile": int(attrs.get("chunk", 512)),
        "complete": bool(attrs.get("complete")),
        "seed": attrs.get("seed"),
        "model": attrs.get("model"),
        "period": attrs.get("period"),
        "material": bool(attrs.get("material")),  # a material: its albedo only is shown
    }
    return Target("store", p, info)


def _dzi_target(p: Path) -> Target:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as e:
        raise UserError(f"{p} is not a readable DeepZoom descriptor ({e})")
    size = root.find("{*}Size")
    if size is None:
        raise UserError(f"{p} is not a DeepZoom descriptor (no Size)")
    try:
        info = {
            "descriptor": p.name,
            "width": int(size.get("Width")),
            "height": int(size.get("Height")),
            "tile": int(root.get("TileSize")),
            "format": root.get("Format"),
        }
    except (TypeError, ValueError) as e:
        raise UserError(f"{p} is not a readable DeepZoom descriptor ({e})")
    # DeepZoom's layout: NAME.dzi beside NAME_files/{level}/{col}_{row}.{format}.
    files = re.escape(p.stem + "_files") + rf"/\d+/\d+_\d+{TILE_IMAGE}"
    pattern = re.compile(f"{re.escape(p.name)}|{files}")
    return Target("dzi", p.parent, info, p.parent, pattern)


def _xyz_target(p: Path) -> Target:
    try:
        doc = json.loads((p / "tilejson.json").read_text())
        tg = doc["tilegen"]
        info = {
            "width": int(tg["width"]),
            "height": int(tg["height"]),
            "tile": int(tg["tile_size"]),
            "maxzoom": int(doc["maxzoom"]),
            "template": doc["tiles"][0],
        }
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise UserError(f"{p}/tilejson.json is not a tilegen xyz descriptor ({e})")
    return Target("xyz", p, info, p, XYZ_FILE)


def _model_target(p: Path) -> Target:
    from tilegen.contract import runtime_contract
    from tilegen.inspect import load

    info = load(p).info  # one-line errors for foreign, truncated or newer files
    if not info.dynamic:
        what = "windowed" if info.form == "windowed" else "fixed-tile self-contained"
        raise UserError(
            f"{p} is a {what} model; the page needs the dynamic self-contained form: "
            f"tilegen export {p} -o {p.stem}_web.onnx --self-contained"
        )
    ort_web_dir()
    return Target(
        "model", p, {"contract": runtime_contract(info), "name": p.name, "bytes": p.stat().st_size}
    )


def resolve(path: str | os.PathLike) -> Target:
    """What PATH is, or a one-line UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist: give a store, an xyz/dzi folder or an .onnx model")
    if p.is_dir() and zarr_store.is_tilegen_store(p):
        return _store_target(p)
    if p.is_file() and p.suffix.lower() == ".dzi":
        return _dzi_target(p)
    if p.is_dir() and (p / "image.dzi").is_file():
        return _dzi_target(p / "image.dzi")
    if p.is_dir() and (p / "tilejson.json").is_file():
        return _xyz_target(p)
    if p.is_file() and p.suffix.lower() == ".onnx":
        return _model_target(p)
    raise UserError(
        f"{p} is not something tilegen view shows: give a store (tilegen generate), an xyz/dzi "
        "folder (tilegen tiles --format xyz|dzi) or a self-contained .onnx model"
    )


def store_tile(target: Target, level: int, col: int, row: int) -> bytes:
    """PNG bytes of one tile (the store's chunk size) of a pyramid level."""
    from PIL import Image

    info = target.info
    if not 0 <= level < len(info["levels"]):
        raise KeyError(level)
    h, w = info["levels"][level]
    t = info["tile"]
    y, x = row * t, col * t
    if not (0 <= y < h and 0 <= x < w):
        raise KeyError((col, row))
    data = zarr_store.read_region(str(target.path), level, y, x, min(t, h - y), min(t, w - x))
    data = data[zarr_store.shown(info)]
    data = convert_bits(data, 8)
    px = data.transpose(1, 2, 0)
    img = Image.fromarray(px[:, :, 0] if px.shape[2] == 1 else np.ascontiguousarray(px))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel if it stays inside root (links resolved) and is a file; None for anything else,
    names the file system refuses (too long, NUL bytes) included."""
    try:
        p = (root / rel).resolve()
        p.relative_to(root.resolve())
        return p if p.is_file() else None
    except (OSError, ValueError):
        return None


def host_allowed(header: str | None, port: int) -> bool:
    """Whether a Host header names this loopback server (127.0.0.1, localhost or [::1], with our
    port or none): a DNS-rebinding page sends its own host name and is refused."""
    m = re.fullmatch(r"(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?", (header or "").strip().lower())
    return m is not None and m[1] in LOOPBACK and (m[2] is None or int(m[2]) == port)


class Handler(BaseHTTPRequestHandler):
    target: Target
    ort_dir: Path | None
    any_host = False  # --host: the page is meant to be reached from the network
    cors: str | None = None  # --cors ORIGIN
    quiet = True

    def log_message(self, fmt, *args):  # the terminal is for the one line that says where
        if not self.quiet:
            super().log_message(fmt, *args)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a bad request line, a URL too long) without its HTML page,
        which echoes the request back."""
        self._send(HTTPStatus(code).phrase.encode(), "text/plain", code, cache=False)

    def _send(self, body: bytes, ctype: str, status: int = 200, cache: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", self.cors)
            self.send_header("Vary", "Origin")
        corp = "cross-origin" if self.cors else "same-origin"
        self.send_header("Cross-Origin-Resource-Policy", corp)
        self.send_header("Cache-Control", "max-age=3600" if cache and status == 200 else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, path: Path | None, cache: bool = True) -> None:
        if path is None:
            return self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)
        ctype = TYPES.get(path.suffix.lower(), "application/octet-stream")
        self._send(path.read_bytes(), ctype, cache=cache)

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self):  # noqa: N802
        if not self.any_host and not host_allowed(self.headers.get("Host"), self.server.port):
            return self._send(b"forbidden host", "text/plain", HTTPStatus.FORBIDDEN, cache=False)
        try:
            self._route(unquote(urlparse(self.path).path))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception:  # e.g. a damaged shard: the page shows a missing tile; no local path
            self._send(b"this tile cannot be read", "text/plain", 500, cache=False)

    def _route(self, url: str) -> None:
        t = self.target
        if url in ("/", "/index.html"):
            return self._file(STATIC / "index.html")
        if url in ("/favicon.ico", "/favicon.svg"):
            return self._file(STATIC / "favicon.svg")
        if url == "/api/info":
            doc = {"kind": t.kind, "name": t.path.name, **t.info}
            return self._send(json.dumps(doc).encode(), "application/json", cache=False)
        for prefix, root in (("/static/", STATIC), ("/vendor/osd/", VENDOR / "openseadragon")):
            if url.startswith(prefix):
                return self._file(_inside(root, url[len(prefix) :]))
        if url.startswith("/vendor/ort/") and self.ort_dir is not None:
            return self._file(_inside(self.ort_dir, url[len("/vendor/ort/") :]))
        if url.startswith("/tiles/"):
            return self._file(t.tile_file(url[len("/tiles/") :]))
        if url == "/model.onnx" and t.kind == "model":
            return self._file(t.path)
        m = re.fullmatch(r"/store/(\d{1,3})/(\d{1,9})_(\d{1,9})\.png", url)
        if m and t.kind == "store":
            try:
                body = store_tile(t, *(int(v) for v in m.groups()))
            except KeyError:
                return self._file(None)
            # An unfinished store's missing shards read as black: never let a browser keep them.
            return self._send(body, "image/png", cache=bool(t.info.get("complete")))
        self._file(None)


class ViewServer:
    """The page's HTTP server (127.0.0.1 unless `host`); `start()` serves from a thread,
    `serve_forever()` blocks until Ctrl-C or SIGTERM, `close()` stops it."""

    def __init__(
        self,
        path: str | os.PathLike,
        port: int = 8765,
        host: str | None = None,
        cors: str | None = None,
    ):
        self.target = resolve(path)
        ort_dir = ort_web_dir() if self.target.kind == "model" else None
        if cors is not None and not re.fullmatch(r"https?://[^/\s]+|\*", cors):
            raise UserError(f"--cors {cors}: give an origin such as https://maps.example.org")
        handler = type(
            "TilegenHandler",
            (Handler,),
            {"target": self.target, "ort_dir": ort_dir, "any_host": host is not None,
             "cors": cors},
        )  # fmt: skip
        self.host = host or HOST
        try:
            self.httpd = ThreadingHTTPServer((self.host, int(port)), handler)
        except OverflowError:
            raise UserError(f"--port {port}: use 0 .. 65535 (0: any free port)")
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {self.host} is in use: pass --port N (0: any free port)"
                )
            raise UserError(f"cannot serve on {self.host}:{port}: {e.strerror or e}")
        self.httpd.daemon_threads = True
        self.httpd.port = self.httpd.server_address[1]
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = HOST if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.httpd.server_address[1]}/"

    def start(self) -> ViewServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(timeout=10)
            self.thread = None
        self.httpd.server_close()


def view(
    path: str | os.PathLike,
    port: int = 8765,
    open_browser: bool = False,
    log=print,
    host: str | None = None,
    cors: str | None = None,
) -> None:
    """Serve the viewer for `path` until Ctrl-C (or SIGTERM, SIGHUP)."""
    server = ViewServer(path, port, host, cors)
    if host is not None:
        log(
            f"warning: serving on {host}: the page and what it shows are reachable from the network"
        )
    log(f"viewing {server.target.kind} {server.target.path} at {server.url} (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: stopped serving {server.target.path}; nothing was written")
