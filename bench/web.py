"""In the browser and in Node: parity with `tilegen generate`, speed per tile, and how fast
`tilegen view` shows a store. Prints the figures of bench/RESULTS.md ("In the browser").

    python bench/web.py [--store OUT.zarr] [--model tilegen/assets/default.onnx] [--tile 512]

Needs node + onnxruntime-node (ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix examples), Chromium
and onnxruntime-web (npm ci --prefix tilegen/web); a part whose tools are missing says so.
--store: time from starting `tilegen view STORE` (a new process) to the first view fully drawn
in headless Chromium (1280x800), split into server start and page; a 32768x32768 store is made
with `tilegen generate -o world.zarr --size 32768 32768 --seed 42`.
"""

from __future__ import annotations

import argparse
import base64
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, chromium_path  # noqa: E402

from tilegen.model import open_model, quantize_planar, render_tile  # noqa: E402

ORIGINS = [
    (0, 0),
    (-37, 101),
    (-(2**31) - 5, 2**31 + 3),
    (3_000_000_000, -7),
    (2**40 + 1, -(2**33)),
]
SIZES = [(64, 64), (300, 200), (512, 512)]
SEEDS = [0, 2**32 - 1, 7]


def reference(model: str, seed, y0, x0, h, w, period=None) -> np.ndarray:
    info = open_model(model).info
    return quantize_planar(render_tile(model, seed, y0, x0, h, w, period), info, "uint8").transpose(
        1, 2, 0
    )


def node_parity(model: str, web: Path, tmp: Path) -> None:
    script = ROOT / "examples" / "plain_onnxruntime.mjs"
    if not (ROOT / "examples" / "node_modules" / "onnxruntime-node").is_dir():
        print(
            "node: onnxruntime-node missing "
            "(ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix examples)"
        )
        return
    cases = exact = 0
    for i, (y0, x0) in enumerate(ORIGINS):
        for h, w in SIZES:
            for period in (None, (1024, 2048)) if i == 1 else (None,):
                seed = SEEDS[(i + h) % len(SEEDS)]
                out = tmp / "n.raw"
                args = [
                    "node",
                    script,
                    web,
                    out,
                    "--seed",
                    seed,
                    "--origin",
                    y0,
                    x0,
                    "--size",
                    h,
                    w,
                    "--tiles",
                    1,
                    1,
                    "--raw",
                ] + (["--period", *period] if period else [])
                subprocess.run(list(map(str, args)), check=True, capture_output=True)
                got = np.frombuffer(out.read_bytes(), np.uint8).reshape(h, w, 3)
                cases += 1
                exact += np.array_equal(got, reference(model, seed, y0, x0, h, w, period))
    print(
        f"node (onnxruntime-node): {exact} of {cases} tiles byte-identical to generate's "
        f"({len(ORIGINS)} origins incl. negative and past 2^31, sizes {SIZES}, seeds {SEEDS}, "
        "one periodic origin)"
    )
    t = time.perf_counter()
    args = ["node", script, web, tmp / "n.png", "--size", 512, 512, "--tiles", 2, 2]
    subprocess.run(list(map(str, args)), check=True, capture_output=True)
    node_s = (time.perf_counter() - t) / 4
    t = time.perf_counter()
    for k in range(4):
        render_tile(model, 0, 512 * (k // 2), 512 * (k % 2), 512, 512, threads=2)
    print(
        f"512x512 tile: node {node_s:.2f} s (4 tiles incl. start-up), python onnxruntime "
        f"{(time.perf_counter() - t) / 4:.2f} s"
    )


def browser_parity(model: str, web: Path, tile: int) -> None:
    from tilegen.view import ViewServer

    srv = ViewServer(web, 0).start()
    try:
        with Browser() as b:
            page = b.open(srv.url, 1280, 800)
            t = time.perf_counter()
            page.evaluate("window.tilegen.ready")
            print(
                f"browser: model page's first view painted in {time.perf_counter() - t:.2f} s "
                f"after load ({page.evaluate('window.tilegen.state.zoom')} zoom index)"
            )
            differ = total = worst = 0
            times = []
            for (y0, x0), seed in zip(ORIGINS, SEEDS + SEEDS):
                t = time.perf_counter()
                js = f"window.tilegen.tile('{seed}', '{y0}', '{x0}', {tile}, {tile}, 0, 0)"
                rgba = np.frombuffer(base64.b64decode(page.evaluate(js)), np.uint8)
                times.append(time.perf_counter() - t)
                got = rgba.reshape(tile, tile, 4)[..., :3].astype(int)
                d = np.abs(got - reference(model, seed, y0, x0, tile, tile))
                differ, total, worst = (
                    differ + int((d > 0).sum()),
                    total + d.size,
                    max(worst, d.max()),
                )
            print(
                f"browser (onnxruntime-web wasm, worker): {differ} of {total} bytes differ from "
                f"generate's, max difference {worst}; {tile}x{tile} tile {np.median(times):.2f} s "
                "(median, incl. transfer)"
            )
    finally:
        srv.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_view(store: Path) -> None:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "view", str(store), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        while True:  # the server is up when it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        t_server = time.perf_counter() - t0
        with Browser() as b:
            page = b.open("about:blank", 1280, 800)
            page.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
            ms = page.evaluate(
                "new Promise(r => { const w = () => window.tilegen ? "
                "r(window.tilegen.ready.then(() => window.tilegen.firstViewMs)) : "
                "setTimeout(w, 10); w(); })"
            )
            info = page.evaluate("window.tilegen.info")
        print(
            f"view {store} ({info['width']}x{info['height']}, {info['kind']}): "
            f"server up in {t_server:.2f} s, first view drawn {ms / 1000:.2f} s after navigation "
            f"(1280x800): {t_server + ms / 1000:.2f} s in all"
        )
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "tilegen" / "assets" / "default.onnx"))
    ap.add_argument("--store", type=Path)
    ap.add_argument("--tile", type=int, default=512)
    args = ap.parse_args()
    from export.onnx_export import wrap_verified

    with tempfile.TemporaryDirectory() as d:
        web = Path(d) / "web.onnx"
        wrap_verified(args.model, web, None)
        node_parity(args.model, web, Path(d))
        if chromium_path() is None:
            print("browser: no chromium (apt-get install chromium)")
        else:
            browser_parity(args.model, web, args.tile)
            if args.store:
                first_view(args.store)


if __name__ == "__main__":
    main()
