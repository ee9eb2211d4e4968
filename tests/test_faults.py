"""Attacks and faults beyond bad input: what `view` serves and to whom, damaged or contested
stores, signals, silent schedulers, lying model metadata. Cases are generated here, on the fly,
from real stores written by `generate` with the fixture model (tests/conftest.py).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from tilegen.view import ViewServer, host_allowed

# --- the view server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_store(onnx_model, tmp_path_factory) -> Path:
    from tilegen.tiler import GenerateConfig, generate

    out = tmp_path_factory.mktemp("faults") / "s.zarr"
    generate(GenerateConfig(str(onnx_model), str(out), (96, 128), seed=3, chunk=32, progress=False,
                            log=lambda m: None))  # fmt: skip
    return out


def _request(srv: ViewServer, path: str, host: str | None = "default", method: str = "GET"):
    """(status, body, headers) of one raw request, with the Host header we choose."""
    port = srv.httpd.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host == "default":
            host = f"127.0.0.1:{port}"
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def _plant_secrets(folder: Path) -> None:
    (folder / ".ssh").mkdir(exist_ok=True)
    (folder / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    (folder / "secret.txt").write_text("secret")
    (folder / "notes.png").write_bytes(b"\x89PNG not a tile of ours")
    outside = folder.parent / f"{folder.name}_outside.txt"
    outside.write_text("outside")
    (folder / "link.png").symlink_to(outside)


# Traversal and smuggling forms; each must be 404 with a body that names no local path.
TRAVERSALS = [
    "/tiles/secret.txt", "/tiles/.ssh/id_rsa", "/tiles/notes.png", "/tiles/link.png",
    "/tiles/../secret.txt", "/tiles/..%2fsecret.txt", "/tiles/%2e%2e/secret.txt",
    "/tiles/%2e%2e%2fsecret.txt", "/tiles/..%5csecret.txt", "/tiles/....//secret.txt",
    "/tiles/%252e%252e%252fsecret.txt", "/tiles//etc/passwd", "/tiles/%2fetc%2fpasswd",
    "/tiles/0/0/0.png%00.txt", "/tiles/0/0/../../../secret.txt", "/tiles/./secret.txt",
    "/static/../view.py", "/static/%2e%2e/view.py", "/vendor/osd/../../view.py",
    "/tiles/.ssh%2fid_rsa", "/tiles/~/.ssh/id_rsa", "/store/0/../../zarr.json",
    "/store/0/0_0.png/../../x", "/store/-1/0_0.png", "/store/0/0_0.PNG", "/model.onnx",
    "/tiles/" + "a" * 5000, "/tiles/" + "a/" * 3000 + "b.png", "/" + "%" * 200,
]  # fmt: skip


@pytest.mark.parametrize("kind", ["xyz", "dzi"])
def test_view_serves_only_the_pyramid(kind, small_store, tmp_path):
    from tilegen.webtiles import write_web_tiles

    folder = tmp_path / "maps"
    write_web_tiles(small_store, folder, kind, "png", 32, progress=False)
    bad = list(TRAVERSALS)
    if kind == "dzi":  # serving image.dzi serves its image_files/ tree, not the folder around it
        good = ["/tiles/image.dzi", "/tiles/image_files/7/0_0.png"]
        target = folder / "image.dzi"
        bad += ["/tiles/.tilegen-webtiles.json", "/tiles/image_files/7/0_0.png.bak"]
        (folder / "image_files" / "7" / "0_0.png.bak").write_bytes(b"a backup")
    else:
        good = ["/tiles/tilejson.json", "/tiles/2/0/0.png"]
        target = folder
        (folder / "2" / "0" / ".1.png.123.partial").write_bytes(b"half a tile")
        bad += ["/tiles/2/0/.1.png.123.partial", "/tiles/.tilegen-webtiles.json"]
    _plant_secrets(folder)
    srv = ViewServer(target, 0).start()
    try:
        for url in good:
            status, body, _ = _request(srv, url)
            assert status == 200 and body, url
        for url in bad:
            status, body, _ = _request(srv, url)
            assert status in (400, 404), (url, status)
            assert str(tmp_path).encode() not in body and b"tilegen/" not in body, url
        status, body, _ = _request(srv, "/api/info")
        assert str(tmp_path) not in body.decode()
    finally:
        srv.close()


def test_view_answers_only_loopback_host_headers(small_store):
    srv = ViewServer(small_store, 0).start()
    port = srv.httpd.server_address[1]
    try:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert _request(srv, "/api/info", host)[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}",
                     f"localhost:{port + 1}", None, "", f"127.0.0.1:{port}@evil"):  # fmt: skip
            status, body, _ = _request(srv, "/store/0/0_0.png", host)
            assert status == 403 and b"PNG" not in body, host
    finally:
        srv.close()
    assert host_allowed("LOCALHOST:80", 80) and not host_allowed("localhost:80", 81)
    opened = ViewServer(small_store, 0, host="127.0.0.1").start()
    try:  # --host: any Host header (the page is meant for the network)
        assert _request(opened, "/api/info", "texture.example.org")[0] == 200
    finally:
        opened.close()


def test_view_errors_hold_no_paths_and_unfinished_stores_are_not_cached(
    small_store, tmp_path, onnx_model
):
    from tilegen.tiler import GenerateConfig, generate

    srv = ViewServer(small_store, 0, cors="https://maps.example.org").start()
    try:
        status, body, headers = _request(srv, "/store/0/0_0.png")
        assert status == 200 and headers["Cache-Control"] == "max-age=3600"
        assert headers["Access-Control-Allow-Origin"] == "https://maps.example.org"
        assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        assert _request(srv, "/favicon.ico")[0] == 200
        # A request line far beyond http.server's limit: 414, and the request is not echoed.
        status, body, _ = _request(srv, "/tiles/" + "x" * 70000)
        assert status in (400, 414) and b"xxxx" not in body
        shard = next((small_store / "0" / "c").rglob("*/*/*"))
        saved = shard.read_bytes()
        shard.write_bytes(os.urandom(len(saved)))  # a damaged shard: 500 without a path
        import tilegen.zarr_store as zs

        zs._ARRAYS.clear()
        status, body, _ = _request(srv, "/store/0/0_0.png")
        assert status in (404, 500) and str(tmp_path.parent).encode() not in body
        shard.write_bytes(saved)
    finally:
        srv.close()
    with pytest.raises(Exception, match="--cors"):
        ViewServer(small_store, 0, cors="not an origin")
    unfinished = tmp_path / "u.zarr"
    generate(GenerateConfig(str(onnx_model), str(unfinished), (96, 128), chunk=32,
                            progress=False, log=lambda m: None))  # fmt: skip
    meta = json.loads((unfinished / "zarr.json").read_text())
    meta["attributes"]["tilegen"]["complete"] = False
    (unfinished / "zarr.json").write_text(json.dumps(meta))
    srv = ViewServer(unfinished, 0).start()
    try:
        status, _, headers = _request(srv, "/store/0/0_0.png")
        assert status == 200 and headers["Cache-Control"] == "no-store"
    finally:
        srv.close()


def test_view_host_option_warns_and_ctrl_c_says_it_stopped(small_store, tmp_path):
    code, out, err = _signalled(["view", small_store, "--port", "0", "--host", "127.0.0.1"],
                                "viewing", tmp_path, signal.SIGINT)  # fmt: skip
    assert "reachable from the network" in out
    assert code == 130 and "stopped serving" in err and err.count("\n") == 1, err


# --- signals ------------------------------------------------------------------------------------


def _default_sigint() -> None:
    """A shell starts background jobs with SIGINT ignored, and Python keeps an inherited
    'ignore': give the command the default handler a terminal's Ctrl-C meets."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signalled(args: list, ready: str, tmp_path: Path, sig: int, timeout: float = 120,
               settle: float = 0.5) -> tuple[int, str, str]:  # fmt: skip
    """Run the command in a subprocess, wait until its output shows `ready` (or the callable
    `ready` says so), send `sig`; (exit code, stdout, stderr)."""
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        cmd = [sys.executable, "-c", "import cli; cli.main()", *map(str, args)]
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, preexec_fn=_default_sigint)
        t0 = time.time()
        seen = (
            ready
            if callable(ready)
            else lambda: ready in out_path.read_text() + err_path.read_text()
        )
        while time.time() - t0 < timeout and p.poll() is None and not seen():
            time.sleep(0.2)
        time.sleep(settle)
        p.send_signal(sig)
        try:
            code = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"{args[0]} did not stop within 2 minutes of signal {sig}")
    return code, out_path.read_text(), err_path.read_text()


# --- stores: damage, edits and two writers -----------------------------------------------------


def _gen(model, out, seed=3, size=(96, 128), **kw):
    from tilegen.tiler import GenerateConfig, generate

    return generate(GenerateConfig(str(model), str(out), size, seed=seed, chunk=32, shard=32,
                                   progress=False, log=lambda m: None, **kw))  # fmt: skip


def _levels(store: Path) -> list:
    import numpy as np

    from tilegen import zarr_store

    attrs = zarr_store.read_attrs(store)
    zarr_store._ARRAYS.clear()
    return [np.asarray(zarr_store.open_level(store, lv, "r")[:]) for lv in range(attrs["levels"])]


DAMAGE = {
    "zero bytes": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "random": lambda b: os.urandom(len(b)),
    "one byte flipped": lambda b: b[:-9] + bytes([b[-9] ^ 1]) + b[-8:],
}


def test_every_damaged_shard_is_rendered_again(onnx_model, tmp_path):
    """A rerun finds a missing, zero-byte, truncated, random or subtly changed shard at any
    position of any level, says so, and writes it again: the same bytes as a clean run."""
    import numpy as np

    store = tmp_path / "d.zarr"
    _gen(onnx_model, store)
    clean = _levels(store)
    shards = sorted(p for p in store.rglob("*") if p.is_file() and p.parent.parent.name.isdigit()
                    and ".tilegen" not in p.parts)  # fmt: skip
    assert len(shards) == 12 + 4 + 1  # 3x4 shards at level 0, then 2x2 and 1
    kinds = [*DAMAGE, "missing"]
    for i, shard in enumerate(shards):
        kind = kinds[i % len(kinds)]
        if kind == "missing":
            shard.unlink()
        else:
            shard.write_bytes(DAMAGE[kind](shard.read_bytes()))
        lines = []
        from tilegen.tiler import GenerateConfig, generate

        s = generate(GenerateConfig(str(onnx_model), str(store), (96, 128), seed=3, chunk=32,
                                    shard=32, progress=False, log=lines.append))  # fmt: skip
        assert s.state == "resume" and s.shards_written >= 1, (shard, kind)
        assert any("render again" in ln for ln in lines) or kind == "missing", lines
        for a, b in zip(_levels(store), clean):
            assert np.array_equal(a, b), (shard, kind)
    assert _gen(onnx_model, store).state == "complete"


def test_tiles_names_a_damaged_shard(onnx_model, tmp_path, monkeypatch, capsys):
    from helpers import cli_inproc

    store = tmp_path / "t.zarr"
    _gen(onnx_model, store)
    bad = store / "0" / "c" / "0" / "1" / "2"
    bad.write_bytes(bad.read_bytes()[:100])
    for fmt in ("png", "xyz"):
        code, _, err = cli_inproc(monkeypatch, capsys, "tiles", store, "-o", tmp_path / fmt,
                                  "--format", fmt, "--no-progress")  # fmt: skip
        assert code == 2 and err.count("\n") == 1, err
        assert "shard 0/c/0/1/2" in err and "rerun the generate command" in err, err
        assert not (tmp_path / fmt / "tiles.json").exists()


def test_one_writer_at_a_time(onnx_model, tmp_path):
    from tilegen import ledger
    from tilegen.errors import UserError

    store = tmp_path / "w.zarr"
    store.mkdir()
    with ledger.StoreLock(store):  # another run holds the store
        with pytest.raises(UserError, match="being written by another tilegen run"):
            _gen(onnx_model, store)
    lock = store / ".tilegen" / "lock"
    lock.write_text(json.dumps({"pid": 2**22 + 7, "host": os.uname().nodename, "started": 1.0}))
    _gen(onnx_model, store)  # a stale lock (its process is gone) is taken over
    assert not lock.exists()
    # Two runs with different seeds started together into one new store: never both succeed.
    both = tmp_path / "both.zarr"
    args = ["generate", onnx_model, "-o", both, "--size", 1024, 1024, "--chunk", 64, "--shard",
            128, "--no-progress", "--threads", 1]  # fmt: skip
    cmd = [sys.executable, "-c", "import cli; cli.main()"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": ROOT}
    procs = [subprocess.Popen([*cmd, *map(str, args), "--seed", str(s)], **pipes) for s in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    ok = [code == 0 for code, _ in results]
    assert ok.count(True) == 1, results
    loser = results[ok.index(False)]
    assert loser[0] == 2 and ("being written by another" in loser[1]
                              or "holds another texture" in loser[1]), loser  # fmt: skip


def _edit(store: Path, key: str, value) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["tilegen"][key] = value
    (store / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "key, value",
    [
        ("size", [96, 256]),
        ("levels", 9),
        ("seed", 4),
        ("chunk", "32"),
        ("size", [0, -1]),
        ("period", [1e9]),
    ],
)
def test_edited_metadata_is_refused(key, value, onnx_model, tmp_path, monkeypatch, capsys):
    from helpers import cli_inproc

    store = tmp_path / "e.zarr"
    _gen(onnx_model, store)
    _edit(store, key, value)
    (store / "3").mkdir()  # a user's folder that an edited "levels" must not get deleted
    (store / "3" / "mine.txt").write_text("mine")
    for args in (["tiles", store, "-o", tmp_path / "t"], ["view", store, "--port", "0"],
                 ["generate", onnx_model, "-o", store, "--size", 96, 128, "--seed", 3,
                  "--chunk", 32, "--shard", 32]):  # fmt: skip
        code, _, err = cli_inproc(monkeypatch, capsys, *args)
        assert code == 2 and err.count("\n") == 1 and ("edited" in err or "metadata" in err), (
            args[0], err)  # fmt: skip
    again = ["generate", onnx_model, "-o", store, "--size", 64, 64, "--chunk", 32, "--overwrite"]
    code, _, err = cli_inproc(monkeypatch, capsys, *again, "--no-progress")
    assert code == 0, err
    assert (store / "3" / "mine.txt").read_text() == "mine"


def test_overwrite_deletes_only_what_tilegen_recorded(onnx_model, tmp_path, monkeypatch, capsys):
    from helpers import cli_inproc

    store = tmp_path / "o.zarr"
    _gen(onnx_model, store)
    mine = [store / "0" / "c" / "mine.txt", store / "0" / "c" / "0" / "0" / "notes",
            store / "1" / "readme.md"]  # fmt: skip
    for f in mine:
        f.write_text("mine")
    _gen(onnx_model, store, seed=4, size=(64, 64), overwrite=True)
    assert all(f.read_text() == "mine" for f in mine)
    # Numbered tiles: --overwrite deletes tiles tilegen names, not what a tiles.json lists.
    out = tmp_path / "tiles"
    out.mkdir()
    (out / "thesis.txt").write_text("mine")
    (out / "tiles.json").write_text(json.dumps({"files": [{"file": "thesis.txt"}]}))
    code, _, err = cli_inproc(monkeypatch, capsys, "tiles", store, "-o", out, "--tile", 32,
                              "--overwrite", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert (out / "thesis.txt").read_text() == "mine"
    # Web tiles: a user's file among the tiles stays through --overwrite.
    web = tmp_path / "web"
    cut = ["tiles", store, "-o", web, "--format", "xyz", "--tile", 16, "--no-progress"]
    assert cli_inproc(monkeypatch, capsys, *cut)[0] == 0
    (web / "0" / "0" / "keep.txt").write_text("mine")
    assert cli_inproc(monkeypatch, capsys, *cut, "--overwrite")[0] == 0
    assert (web / "0" / "0" / "keep.txt").read_text() == "mine"


# --- SIGTERM and SIGHUP stop every command as Ctrl-C does ----------------------------------------

DATA = Path(__file__).parent / "data"
LONG = ["--iters", "100000", "--scales", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def big_store(onnx_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("big") / "b.zarr"
    _gen(onnx_model, out, size=(2048, 2048))
    return out


@pytest.mark.parametrize(
    "name, sig, args, ready, kept",
    [
        ("synth", signal.SIGTERM, ["synth", DATA / "grass_128.png", *LONG, "--size", 64, 64],
         "synth", "was not written"),
        ("train", signal.SIGTERM, ["train", DATA / "grass_128.png", "--iters", 100000, "--size",
                                   32, "--levels", 3, "--width", 8, "--scales", 2, "--device",
                                   "cpu"], "train", "--resume"),
        ("generate", signal.SIGTERM, ["generate", "{onnx}", "--size", 8192, 8192, "--chunk", 64,
                                      "--shard", 128], "render", "rerun the same command"),
        ("generate", signal.SIGHUP, ["generate", "{onnx}", "--size", 8192, 8192, "--chunk", 64,
                                     "--shard", 128, "--scheduler", "processes", "--workers", 2],
         "render", "rerun the same command"),
        ("tif", signal.SIGTERM, ["generate", "{onnx}", "--size", 9000, 9000], "render",
         "was not written"),
        ("tiles", signal.SIGTERM, ["tiles", "{store}", "--tile", 16], "tiles", "--overwrite"),
        ("xyz", signal.SIGTERM, ["tiles", "{store}", "--format", "xyz", "--tile", 16], "tiles",
         "rerun"),
        ("evaluate", signal.SIGTERM, ["evaluate", DATA / "grass_128.png", "--baselines",
                                      "--patches", 3000, "--seeds", 20], "\x00", "rerun"),
        ("view", signal.SIGTERM, ["view", "{store}", "--port", 0], "viewing", "stopped serving"),
    ],
)  # fmt: skip
def test_stop_signals_end_in_one_line(
    name, sig, args, ready, kept, onnx_model, big_store, tmp_path
):
    out = tmp_path / {"train": "o.pt", "tif": "o.tif", "generate": "o.zarr", "synth": "o.png",
                      "tiles": "t", "xyz": "x"}.get(name, "")  # fmt: skip
    args = [str(a).format(onnx=onnx_model, store=big_store) for a in args]
    if name not in ("evaluate", "view"):
        args += ["-o", str(out)]
    if name == "train":  # once its first checkpoint is on disk, however slow the machine
        ready = Path(f"{out}.ckpt").is_file
    code, _, err = _signalled(args, ready, tmp_path, sig, timeout=8 if ready == "\x00" else 120)
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("tilegen:")]
    assert code == 128 + sig and len(lines) == 1, (code, err)
    assert kept in lines[0] and "Traceback" not in err, err
    assert f"by {signal.Signals(sig).name}" in lines[0] or name == "view", lines[0]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]
    assert not leftovers, leftovers
    if name == "tif":
        assert not out.exists()
    if name == "generate":  # the writer's lock went with it: a rerun can finish the store
        assert not (out / ".tilegen" / "lock").exists()


# --- schedulers that do not answer ---------------------------------------------------------------


@pytest.fixture
def silent_peer():
    """A port that accepts connections and never says a word."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for c in held:
        c.close()


def test_schedulers_that_do_not_answer_fail_in_one_line(onnx_model, silent_peer, tmp_path):
    import socket

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    refused = free.getsockname()[1]
    free.close()
    cases = [
        (f"tcp://127.0.0.1:{silent_peer}", "did not complete the handshake", 12),
        (f"tcp://127.0.0.1:{refused}", "cannot reach the Dask scheduler", 3),
        ("tcp://no-such-host.invalid:8786", "cannot resolve", 3),
    ]
    for address, message, limit in cases:
        t0 = time.time()
        code, _, err = _run("generate", onnx_model, "-o", tmp_path / "s.zarr", "--size", 64, 64,
                            "--scheduler", address, "--connect-timeout", 2)  # fmt: skip
        took = time.time() - t0
        assert code == 2 and message in err and err.count("\n") == 1, (address, err)
        assert took < limit + 8, (address, took)  # interpreter start-up included
        assert not (tmp_path / "s.zarr").exists()  # nothing written


def _run(*args, timeout: float = 120) -> tuple[int, str, str]:
    from helpers import cli

    return cli(*args, timeout=timeout)


# --- model metadata that lies, files that are not models ---------------------------------------


def _with_metadata(src: Path, dst: Path, **changes) -> Path:
    """A copy of a model with tilegen.KEY metadata replaced (a value None deletes the key)."""
    import onnx

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        key = "tilegen." + key
        if value is None:
            props.pop(key, None)
        elif key == "tilegen.arch" and isinstance(value, dict):
            props[key] = json.dumps({**json.loads(props[key]), **value})
        else:
            props[key] = value if isinstance(value, str) else json.dumps(value)
    version = props.pop("tilegen.format_version")
    del model.metadata_props[:]
    for k, v in [*props.items(), ("tilegen.format_version", version)]:
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))
    return dst


LIES = [
    {"arch": {"levels": 40}}, {"arch": {"levels": 0}}, {"arch": {"levels": "4"}},
    {"arch": {"levels": 4.5}}, {"arch": {"levels": True}}, {"arch": {"t0": -3}},
    {"arch": {"tj": 1000}}, {"arch": {"tj": 4}}, {"arch": {"levels": 5}},
    {"arch": {"noise_channels": 0}}, {"arch": {"out_channels": -2}},
    {"arch": {"out_channels": 5}}, {"arch": {"out_channels": 100000}},
    {"value_range": "[0, NaN]"}, {"value_range": [1, 1]}, {"value_range": ["a", 1]},
    {"value_range": [0]}, {"value_range": "[0, Infinity]"}, {"training": "[]"},
    {"material": "5"}, {"form": "strange"}, {"arch": "[1, 2]"}, {"noise": "{}"},
    {"noise": {"spec": "tilegen-hash32", "version": "x"}}, {"channels": "R" * 10000},
    {"arch": None}, {"value_range": "not json"},
]  # fmt: skip


@pytest.mark.parametrize("i", range(len(LIES)), ids=[str(x)[:40] for x in LIES])
def test_lying_metadata_is_one_line(i, onnx_model, tmp_path, monkeypatch, capfd):
    from helpers import cli_inproc

    def cli(*args):  # in this process; capfd also sees what onnxruntime writes to stderr
        return cli_inproc(monkeypatch, capfd, *args)

    lie = _with_metadata(onnx_model, tmp_path / "lie.onnx", **LIES[i])
    code, _, err = cli("generate", lie, "-o", tmp_path / "o.zarr", "--size", 64, 64,
                       "--no-progress")  # fmt: skip
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Warning" not in err, (LIES[i], err)
    assert "metadata" in err or "re-export" in err or "upgrade" in err, err
    code, _, err = cli("inspect", lie)  # it reads metadata, runs nothing: may describe the lie
    assert (code, err) == (0, "") or (code == 2 and err.count("\n") == 1), (LIES[i], err)


def test_files_are_checked_before_they_are_read(tmp_path):
    from helpers import cli

    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as f:  # 4 GiB, sparse: reading it would take seconds and the memory
        f.write(b"\x08")
        f.truncate(4 << 30)
    photo = tmp_path / "photo.onnx"
    photo.write_bytes((DATA / "grass_128.png").read_bytes())
    for path, message in ((huge, "GiB"), (photo, "not a readable ONNX model")):
        for args in (["inspect", path], ["view", path, "--port", 0],
                     ["generate", path, "-o", tmp_path / "o.png", "--size", 8, 8]):  # fmt: skip
            t0 = time.time()
            code, _, err = cli(*args, timeout=60)
            assert code == 2 and message in err and err.count("\n") == 1, (args, err)
            assert time.time() - t0 < 30


# --- memory estimated before it is allocated ------------------------------------------------------


def test_tiles_and_worker_processes_are_estimated(onnx_model, big_store, tmp_path, monkeypatch,
                                                  capsys):  # fmt: skip
    from helpers import cli_inproc

    from tilegen import memory

    code, _, err = cli_inproc(monkeypatch, capsys, "tiles", big_store, "-o", tmp_path / "t",
                              "--tile", 2048, "--max-memory", 0.31)  # fmt: skip
    assert code == 2 and "of memory" in err and "--tile" in err, err
    assert not (tmp_path / "t").exists()
    # Eight dask.distributed workers cost their processes, not only their tasks.
    args = ["generate", onnx_model, "-o", tmp_path / "s.zarr", "--size", 4096, 4096,
            "--workers", 8]  # fmt: skip
    tasks_only = memory.BASE + 8 * 100e6  # about what the tasks alone would need
    code, _, err = cli_inproc(monkeypatch, capsys, *args, "--max-memory", tasks_only / 1e9)
    assert code == 2 and "of memory" in err and "--workers" in err, err
    assert not (tmp_path / "s.zarr").exists()
