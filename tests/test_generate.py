"""`tilegen generate` / `tilegen tiles`: exact tiling, schedulers, resume, OME-Zarr, errors.

The reference for every store is ONE graph evaluation of the whole image
(`tilegen.model.render_tile`), quantised with the same rule: tiled output must equal it byte for
byte whatever the chunk/shard sizes, scheduler or worker count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, cli_inproc

from tilegen import zarr_store
from tilegen.errors import UserError
from tilegen.model import open_model, quantize_planar, render_tile
from tilegen.tiler import GenerateConfig, generate

ROOT = Path(__file__).resolve().parents[1]


def reference(model, seed, h, w, dtype="uint8", period=None, y0=0, x0=0):
    info = open_model(model).info
    return quantize_planar(render_tile(model, seed, y0, x0, h, w, period), info, dtype)


def level(store, lvl=0):
    arr = zarr_store.open_level(store, lvl, "r")
    return np.asarray(arr[:])


def run(model, out, size, **kw):
    """generate (stores) or generate_image (.png/.tif) through the library API."""
    from tilegen.single_image import generate_image

    kw.setdefault("progress", False)
    kw.setdefault("log", lambda msg: None)
    cfg = GenerateConfig(model=str(model), output=str(out), size=size, **kw)
    return generate_image(cfg) if Path(out).suffix in (".png", ".tif") else generate(cfg)


# --- exact tiling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,chunk,shard,scheduler",
    [
        ((200, 296), 32, 64, "threads"),  # sides not multiples of the shard or the stride
        ((200, 296), 16, 48, "sync"),  # shard not a power of two, not aligned to the stride
        ((257, 130), 64, 128, "threads"),
        ((200, 296), 32, 96, "processes"),
    ],
)
def test_tiled_equals_one_evaluation(onnx_model, tmp_path, size, chunk, shard, scheduler):
    out = tmp_path / "t.zarr"
    s = run(onnx_model, out, size, seed=11, chunk=chunk, shard=shard, scheduler=scheduler)
    assert s.shards_written == s.shards_total
    ref = reference(onnx_model, 11, *size)
    got = level(out)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    assert np.array_equal(got, ref)
    assert got.std() > 10  # the fixture model's output is not flat


def test_self_contained_model_gives_the_same_bytes(onnx_model, self_contained_model, tmp_path):
    run(onnx_model, tmp_path / "w.zarr", (100, 90), seed=6, chunk=32, shard=64)
    run(self_contained_model, tmp_path / "s.zarr", (100, 90), seed=6, chunk=32, shard=64)
    assert np.array_equal(level(tmp_path / "s.zarr"), level(tmp_path / "w.zarr"))
    with pytest.raises(UserError, match="self-contained"):
        run(self_contained_model, tmp_path / "p.zarr", (64, 64), period=(64, 64))


def test_uint16_and_threads_per_task(onnx_model, tmp_path):
    out = tmp_path / "t16.zarr"
    run(onnx_model, out, (120, 136), seed=2, dtype="uint16", chunk=32, shard=64, threads=1)
    assert np.array_equal(level(out), reference(onnx_model, 2, 120, 136, "uint16"))


def test_distributed_local_cluster(onnx_model, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "d.zarr"
    s = run(onnx_model, out, (192, 160), seed=4, chunk=32, shard=64, scheduler="local", workers=2)
    assert "distributed" in s.scheduler and s.providers == {"CPUExecutionProvider"}
    assert np.array_equal(level(out), reference(onnx_model, 4, 192, 160))
    # and the pyramid, written by the cluster too, is the 2x2 mean of the level above
    assert np.array_equal(level(out, 1), zarr_store.downsample2x(level(out, 0)))


def test_existing_cluster_by_address(onnx_model, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        out = tmp_path / "a.zarr"
        s = run(
            onnx_model,
            out,
            (96, 128),
            seed=4,
            chunk=32,
            shard=32,
            scheduler=cluster.scheduler_address,
        )
        assert f"cluster {cluster.scheduler_address}" in s.scheduler and dict(s.ort_threads)
    assert np.array_equal(level(out), reference(onnx_model, 4, 96, 128))


def test_same_seed_same_bytes_any_layout(onnx_model, tmp_path):
    a = tmp_path / "a.zarr"
    b = tmp_path / "b.zarr"
    c = tmp_path / "c.zarr"
    run(onnx_model, a, (144, 176), seed=9, chunk=16, shard=32, threads=2)
    run(onnx_model, b, (144, 176), seed=9, chunk=64, shard=128, threads=1, pyramid=False)
    run(onnx_model, c, (144, 176), seed=10, chunk=64, shard=128)
    assert np.array_equal(level(a), level(b))
    assert not np.array_equal(level(a), level(c))
    assert not (b / "1").exists()


def test_periodic(onnx_model, tmp_path):
    p = 64  # a multiple of the fixture's stride (8)
    out = tmp_path / "p.zarr"
    run(onnx_model, out, (2 * p, 2 * p), seed=3, period=(p, p), chunk=32, shard=32)
    img = level(out)
    assert np.array_equal(img[:, :p], img[:, p:])
    assert np.array_equal(img[:, :, :p], img[:, :, p:])
    assert not np.array_equal(img[:, :32], img[:, 32:64])  # periodic, not constant


def test_periodic_cli_wraps(onnx_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pc.zarr"
    code, _, err = cli_inproc(
        monkeypatch, capsys, "generate", onnx_model, "-o", out, "--size", 96, 80,
        "--seed", 1, "--periodic", "--chunk", 32, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    img = level(out)
    # the region just past the bottom-right corner, rendered alone, is the image again
    shifted = reference(onnx_model, 1, 96, 80, period=(96, 80), y0=96, x0=80)
    assert np.array_equal(img, shifted)
    code, _, err = cli_inproc(
        monkeypatch, capsys, "generate", onnx_model, "-o", tmp_path / "bad.zarr",
        "--size", 90, 80, "--periodic", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "multiple of 8" in err


# --- the store: OME-Zarr, pyramid, attributes ------------------------------------------------


def test_ome_zarr_reader_and_scales(onnx_model, tmp_path):
    ome_zarr = pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = tmp_path / "o.zarr"
    run(onnx_model, out, (300, 200), seed=1, chunk=32, shard=64)
    loc = parse_url(str(out))
    assert loc is not None and loc.version == "0.5", ome_zarr.__version__
    node = list(Reader(loc)())[0]
    shapes = [tuple(d.shape) for d in node.data]
    assert shapes == [(3, 300, 200), (3, 150, 100), (3, 75, 50), (3, 38, 25), (3, 19, 13)]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[1.0, 2.0**k, 2.0**k] for k in range(5)]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
    assert node.metadata["channel_names"] == ["R", "G", "B"]
    assert np.array_equal(np.asarray(node.data[0]), reference(onnx_model, 1, 300, 200))
    for k in range(1, 5):
        assert np.array_equal(np.asarray(node.data[k]), zarr_store.downsample2x(level(out, k - 1)))
    attrs = zarr_store.read_attrs(out)
    assert attrs["seed"] == 1 and attrs["size"] == [300, 200] and attrs["complete"] is True
    assert attrs["model_sha256"] == __import__("tilegen.model").model.file_sha256(onnx_model)
    assert attrs["chunk"] == 32 and attrs["shard"] == 64 and attrs["dtype"] == "uint8"
    meta = json.loads((out / "0" / "zarr.json").read_text())
    assert meta["codecs"][0]["name"] == "sharding_indexed"


def test_downsample2x_rounds_and_handles_odd_edges():
    src = np.array([[[0, 1, 255], [2, 3, 255], [10, 11, 7]]], dtype=np.uint8)
    out = zarr_store.downsample2x(src)
    # (0+1+2+3+2)//4 = 2; right column (255,255) -> 255; bottom row (10,11) -> 11; corner 7
    assert out.tolist() == [[[2, 255], [11, 7]]]


# --- resume and safety -----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_then_rerun_gives_the_same_bytes(onnx_model, tmp_path, sig):
    out = tmp_path / "k.zarr"
    args = [
        "generate", onnx_model, "-o", out, "--size", 768, 768, "--seed", 7, "--chunk", 32,
        "--shard", 64, "--threads", 1, "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A background job's children inherit an ignored SIGINT, and Python then never raises
        # KeyboardInterrupt: give the child the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    shard_dir = out / "0" / "c" / "0"
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and proc.poll() is None:
        n = sum(len(files) for _, _, files in os.walk(shard_dir)) if shard_dir.exists() else 0
        if n >= 12:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: make it bigger"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    # Finished shards; a shard killed mid-write leaves only a .partial temp file.
    written = sum(not f.endswith(".partial") for _, _, fs in os.walk(shard_dir) for f in fs)
    if sig == signal.SIGINT:  # Ctrl-C: one line that says what is kept and what to do
        assert proc.returncode == 130 and "Traceback" not in err
        assert err.strip().splitlines()[-1] == (  # 144 shards at level 0, 51 in the pyramid
            f"tilegen: interrupted: {written} of 195 shards of {out} are written; rerun the "
            "same command to finish (the result is the same)"
        )
    assert 12 <= written < 144
    # A shard counts as written once the ledger records it: a kill between a shard's rename and
    # its record leaves one file more than records, and that shard is rendered again.
    recorded = sum(len(fs) for _, _, fs in os.walk(out / ".tilegen" / "shards"))
    assert written - 1 <= recorded <= written if sig == signal.SIGKILL else recorded == written
    row = next(d for d in shard_dir.iterdir() if d.is_dir())
    (row / f"0.{'ab' * 16}.partial").write_bytes(b"half a shard")  # zarr's stray temp file
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    assert "resuming" in stderr and f"{recorded} of" in stderr
    assert not list(out.rglob("*.partial"))
    assert np.array_equal(level(out), reference(onnx_model, 7, 768, 768))
    assert zarr_store.read_attrs(out)["complete"] is True


def test_write_failure_stops_with_one_line_and_resumes(onnx_model, tmp_path, monkeypatch):
    out = tmp_path / "w.zarr"
    real = zarr_store.write_region
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        real(*args)

    monkeypatch.setattr(zarr_store, "write_region", flaky)
    with pytest.raises(UserError) as e:
        run(onnx_model, out, (256, 256), seed=5, chunk=32, shard=64, threads=1)
    msg = str(e.value)
    assert "No space left on device" in msg and "rerun" in msg and "\n" not in msg
    monkeypatch.setattr(zarr_store, "write_region", real)
    s = run(onnx_model, out, (256, 256), seed=5, chunk=32, shard=64, threads=1)
    assert s.state == "resume" and s.shards_done_before >= 4
    assert np.array_equal(level(out), reference(onnx_model, 5, 256, 256))


def test_rerun_rules(onnx_model, tmp_path):
    out = tmp_path / "r.zarr"
    run(onnx_model, out, (64, 64), seed=1, chunk=32, shard=32)
    s = run(onnx_model, out, (64, 64), seed=1, chunk=32, shard=32)
    assert s.state == "complete" and s.shards_written == 0
    with pytest.raises(UserError, match="seed 1, this run 2"):
        run(onnx_model, out, (64, 64), seed=2, chunk=32, shard=32)
    run(onnx_model, out, (64, 64), seed=2, chunk=32, shard=32, overwrite=True)
    assert np.array_equal(level(out), reference(onnx_model, 2, 64, 64))
    # replaced by a store of another shape in the same process: no stale cached arrays
    run(onnx_model, out, (96, 80), seed=2, chunk=32, shard=32, overwrite=True)
    assert np.array_equal(level(out), reference(onnx_model, 2, 96, 80))


def test_never_deletes_a_foreign_path(onnx_model, tmp_path):
    folder = tmp_path / "precious.zarr"
    folder.mkdir()
    (folder / "thesis.txt").write_text("do not delete")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="not a tilegen store"):
            run(onnx_model, folder, (64, 64), overwrite=overwrite)
    assert (folder / "thesis.txt").read_text() == "do not delete"
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    run(onnx_model, empty, (64, 64), chunk=32)  # an empty folder is fine
    assert zarr_store.is_tilegen_store(empty)


# --- command line: errors are one line, exit 2 -----------------------------------------------


def _foreign_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _newer_onnx(src: Path, path: Path) -> Path:
    import onnx

    model = onnx.load(str(src))
    for p in model.metadata_props:
        if p.key == "tilegen.format_version":
            p.value = "99"
    onnx.save(model, str(path))
    return path


def test_bad_arguments_one_line_exit_2(onnx_model, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_model.read_bytes()[: onnx_model.stat().st_size // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file at all")
    foreign = _foreign_onnx(tmp_path / "foreign.onnx")
    newer = _newer_onnx(onnx_model, tmp_path / "newer.onnx")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    o = tmp_path / "o.zarr"
    cases = [
        (["--size", 0, 64, "-o", o], "positive"),
        (["--size", 64, 64, "-o", blocker / "x.zarr"], "cannot write"),
        (["--size", 64, 64, "-o", o, "--chunk", 48, "--shard", 100], "multiple of the chunk"),
        (["--size", 64, 64, "-o", tmp_path / "x.bmp"], "use a .zarr"),
        (["--size", 64, 64, "-o", other], "not a tilegen store"),
        (["--size", 64, 64, "-o", other, "--overwrite"], "never deletes"),
        (["--size", 64, 64, "-o", o, "--dtype", "float32"], "uint8 or uint16"),
        (["--size", 64, 64, "-o", o, "--scheduler", "bogus"], "--scheduler"),
        (["--size", 64, 64, "-o", o, "--device", "tpu"], "--device"),
        (["--size", 64, 64, "-o", o, "--seed", 2**32], "--seed"),
    ]
    for extra, needle in cases:
        code, _, err = cli_inproc(monkeypatch, capsys, "generate", onnx_model, *extra)
        assert code == 2, (extra, err)
        assert err.startswith("tilegen: error:") and err.count("\n") == 1, err
        assert needle in err, (needle, err)
    for model, needle in [
        (foreign, "not a tilegen model"),
        (newer, "newer"),
        (truncated, "not a readable ONNX model"),
        (garbage, "not a readable ONNX model"),
        (tmp_path / "missing.onnx", "not found"),
    ]:
        code, _, err = cli_inproc(monkeypatch, capsys, "generate", model, "-o", o, "--size", 64, 64)
        assert code == 2 and err.count("\n") == 1 and needle in err, (model, err)
    assert (other / "keep.txt").exists()


def test_missing_default_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import tilegen.jobs

    missing = tmp_path / "assets" / "default.onnx"
    monkeypatch.setattr(tilegen.jobs, "default_model", lambda: missing)
    code, _, err = cli_inproc(
        monkeypatch, capsys, "generate", "-o", tmp_path / "o.zarr", "--size", 64, 64
    )
    assert code == 2 and "default model" in err and err.count("\n") == 1


def test_cuda_request_without_cuda(onnx_model):
    from tilegen.model import CUDA, available_providers

    if CUDA in available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(UserError, match="CUDA"):
        open_model(onnx_model, 1, "cuda")
    assert open_model(onnx_model, 1, "auto").providers[0] == "CPUExecutionProvider"


# --- single-file outputs and tiles ------------------------------------------------------------


def test_png_and_tiff_outputs(onnx_model, tmp_path, monkeypatch, capsys):
    import tifffile

    from tilegen import single_image
    from tilegen.imageio import read_image

    png = tmp_path / "t.png"
    code, out, err = cli_inproc(
        monkeypatch, capsys, "generate", onnx_model, "-o", png, "--size", 90, 70, "--seed", 3,
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "CPUExecutionProvider" in out
    ref = reference(onnx_model, 3, 90, 70)
    got = np.rint(read_image(png) * 255).astype(np.uint8).transpose(2, 0, 1)
    assert np.array_equal(got, ref)
    # a large TIFF is written tiled (BigTIFF) from an iterator of tiles
    monkeypatch.setattr(single_image, "TIFF_STRIPE_MP", 0)
    monkeypatch.setattr(single_image, "TIFF_TILE", 64)
    tif = tmp_path / "t.tif"
    run(onnx_model, tif, (150, 200), seed=3, dtype="uint16")
    with tifffile.TiffFile(tif) as f:
        assert f.is_bigtiff and f.pages[0].is_tiled
        data = f.asarray()
    assert np.array_equal(data.transpose(2, 0, 1), reference(onnx_model, 3, 150, 200, "uint16"))


def test_tiles_equal_the_store(onnx_model, tmp_path, monkeypatch, capsys):
    from tilegen.imageio import read_image

    store = tmp_path / "s.zarr"
    run(onnx_model, store, (130, 170), seed=8, chunk=32, shard=64)
    img = level(store)
    tiles_dir = tmp_path / "tiles"
    code, out, err = cli_inproc(
        monkeypatch, capsys, "tiles", store, "-o", tiles_dir, "--tile", 64, "--no-progress"
    )
    assert code == 0, err
    index = json.loads((tiles_dir / "tiles.json").read_text())
    assert (index["rows"], index["cols"]) == (3, 3)
    names = sorted(p.name for p in tiles_dir.glob("tile_*.png"))
    assert names[0] == "tile_r0_c0.png" and names[-1] == "tile_r2_c2.png" and len(names) == 9
    canvas = np.zeros_like(img)
    for e in index["files"]:
        t = np.rint(read_image(tiles_dir / e["file"]) * 255).astype(np.uint8).transpose(2, 0, 1)
        assert t.shape == (3, e["h"], e["w"])
        canvas[:, e["y"] : e["y"] + e["h"], e["x"] : e["x"] + e["w"]] = t
    assert np.array_equal(canvas, img)
    # refuses to mix with existing tiles; 16-bit region tiles are exact (v * 257)
    code, _, err = cli_inproc(monkeypatch, capsys, "tiles", store, "-o", tiles_dir)
    assert code == 2 and "--overwrite" in err
    r16 = tmp_path / "r16"
    code, _, err = cli_inproc(
        monkeypatch, capsys, "tiles", store, "-o", r16, "--tile", 40, "--bits", 16,
        "--region", 10, 20, 50, 60, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    t = read_image(r16 / "tile_r0_c0.png")
    assert np.array_equal(
        np.rint(t * 65535).astype(np.uint16).transpose(2, 0, 1),
        img[:, 10:50, 20:60].astype(np.uint16) * 257,
    )
    code, _, err = cli_inproc(
        monkeypatch, capsys, "tiles", store, "-o", tmp_path / "x", "--region", 100, 0, 64, 64
    )
    assert code == 2 and "not inside" in err
    code, _, err = cli_inproc(monkeypatch, capsys, "tiles", tmp_path, "-o", tmp_path / "y")
    assert code == 2 and "not a tilegen" in err


# --- torch-free -------------------------------------------------------------------------------


def test_tilegen_runs_without_torch(onnx_model, tmp_path):
    script = f"""
import sys, pkgutil, importlib
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import tilegen
mods = [m.name for m in pkgutil.iter_modules(tilegen.__path__, 'tilegen.')]
for m in mods:
    importlib.import_module(m)
# tilegen/ imports none of the user's other folders (docs/DESIGN.md 1).
assert not [k for k in sys.modules if k.split('.')[0] in ('train', 'export', 'cli')]
from tilegen.model import render_tile
from tilegen.tiler import GenerateConfig, generate
img = render_tile({str(onnx_model)!r}, 1, 0, 0, 40, 48)
assert img.shape == (3, 40, 48), img.shape
out = {str(tmp_path / "nt.zarr")!r}
s = generate(GenerateConfig(model={str(onnx_model)!r}, output=out, size=(64, 64), chunk=32,
                            progress=False))
assert s.shards_written == s.shards_total
print('ok', len(mods))
"""
    p = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok")
