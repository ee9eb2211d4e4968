"""The bad-input corpus: what a new user gets wrong, and the faults a machine throws, for every
command. Each case must end in exactly one line on stderr ("tilegen: error: ..."), exit code 2,
no traceback and no partial output; Ctrl-C in every long command must end in one line saying
what was kept (exit 130). The inputs are generated here, on the fly.

Most cases run the console entry point in this process (fast); the warnings, Ctrl-C and
file-system cases run it in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, cli
from PIL import Image

DATA = Path(__file__).parent / "data"


# --- inputs -----------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny file whose PNG header declares width x height RGB pixels (a decompression bomb's
    shape: a few bytes on disk, gigabytes decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))
    return path


def make_inputs(d: Path) -> dict[str, Path]:
    """Every kind of input the corpus uses, written into folder d."""
    import tifffile

    grass = np.asarray(Image.open(DATA / "grass_128.png").convert("RGB"))
    f = {}
    f["good"] = d / "good.png"
    Image.fromarray(grass[:64, :64]).save(f["good"])
    f["good2"] = d / "good2.png"
    Image.fromarray(np.asarray(Image.open(DATA / "bark_128.png").convert("RGB"))[:64, :64]).save(
        f["good2"]
    )
    f["gray"] = d / "gray.png"
    Image.fromarray(grass[:64, :64, 0]).save(f["gray"])
    f["text"] = d / "text.png"
    f["text"].write_text("this is not an image")
    f["empty"] = d / "empty.png"
    f["empty"].write_bytes(b"")
    f["truncated"] = d / "truncated.png"
    f["truncated"].write_bytes((DATA / "grass_128.png").read_bytes()[:300])
    f["tiny"] = d / "tiny.png"
    Image.new("RGB", (6, 6), (90, 120, 40)).save(f["tiny"])
    f["bomb"] = png_header_only(d / "bomb.png", 40000, 40000)
    f["big"] = png_header_only(d / "big.png", 20000, 20000)
    nan = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    nan[5, 5, 1] = np.nan
    f["nan"] = d / "nan.tif"
    tifffile.imwrite(f["nan"], nan, photometric="rgb")
    inf = nan.copy()
    inf[5, 5, 1] = np.inf
    f["inf"] = d / "inf.tif"
    tifffile.imwrite(f["inf"], inf, photometric="rgb")
    f["five"] = d / "five.tif"
    tifffile.imwrite(f["five"], np.zeros((64, 64, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")  # fmt: skip
    f["stack"] = d / "stack.tif"
    tifffile.imwrite(f["stack"], np.zeros((3, 4, 64, 64), np.uint8), photometric="minisblack")
    f["gif"] = d / "anim.gif"
    frames = [Image.new("RGB", (64, 64), (40 * i, 90, 30)) for i in range(3)]
    frames[0].save(f["gif"], save_all=True, append_images=frames[1:])
    f["mask_small"] = d / "mask_small.png"
    Image.new("L", (30, 64), 255).save(f["mask_small"])
    f["mask_empty"] = d / "mask_empty.png"
    Image.new("L", (64, 64), 0).save(f["mask_empty"])
    f["folder"] = d / "a_folder"
    f["folder"].mkdir()
    f["exists"] = d / "exists.png"
    f["exists"].write_bytes(b"precious")
    f["pickle"] = d / "evil.pt"
    f["pickle"].write_bytes(
        b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94"
        b"\x8c\x04true\x94\x85\x94R\x94."
    )
    return f


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory) -> Path:
    """A small trained-format model (a folded random generator; training is not the point)."""
    from conftest import fixture_generator

    from train.checkpoint import save_generator

    path = tmp_path_factory.mktemp("pt") / "small.pt"
    save_generator(path, fixture_generator(4, 8), {"exemplar_sha256": "", "training": {}})
    return path


def run_inproc(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    import cli

    code = 0
    try:
        cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


run_sub = cli  # the real console entry point in a subprocess


def assert_one_line(code: int, err: str, needle: str, exit_code: int = 2) -> str:
    """Exit code as expected, one 'tilegen:' line, last, containing `needle`; no traceback."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("tilegen:")]
    assert code == exit_code, (code, err)
    assert "Traceback" not in err and "Warning" not in err, err
    assert len(ours) == 1 and lines[-1] == ours[0], err
    assert needle.lower() in ours[0].lower(), (needle, ours[0])
    return ours[0]


# --- the corpus: (command line with {placeholders}, what the one line must say) ----------------

# Placeholders: {name} is an input of make_inputs, {out} a fresh output path, {pt} a model file,
# {onnx} a windowed .onnx model.
TINY = ["--iters", "1", "--scales", "2"]
CASES = [
    # synth: unreadable, tiny, huge-declared, NaN, wrong mode, bad options, bad outputs
    (["synth", "{text}", "-o", "{out}.png", *TINY], "cannot read image"),
    (["synth", "{empty}", "-o", "{out}.png", *TINY], "cannot read image"),
    (["synth", "{truncated}", "-o", "{out}.png", *TINY], "cannot read image"),
    (["synth", "{missing}", "-o", "{out}.png", *TINY], "no such file"),
    (["synth", "{tiny}", "-o", "{out}.png", *TINY], "too small"),
    (["synth", "{bomb}", "-o", "{out}.png", *TINY], "more than tilegen reads"),
    (["synth", "{big}", "-o", "{out}.png", "--max-memory", "2", *TINY], "of memory"),
    (["synth", "{five}", "-o", "{out}.png", *TINY], "5 channels"),
    (["synth", "{stack}", "-o", "{out}.png", *TINY], "not a stack"),
    (["synth", "{gif}", "-o", "{out}.png", *TINY], "animated"),
    (["synth", "{good}", "-o", "{out}.png", "--size", "0", "50", *TINY], "must be positive"),
    (["synth", "{good}", "-o", "{out}.png", "--size", "1000000000", "1000000000", *TINY],
     "of memory"),
    (["synth", "{good}", "-o", "{out}.png", "--bits", "12", *TINY], "--bits 12"),
    (["synth", "{good}", "-o", "{out}.png", "--lr", "nan", *TINY], "--lr nan"),
    (["synth", "{good}", "-o", "{out}.png", "--seed", "-1", *TINY], "--seed -1"),
    (["synth", "{good}", "-o", "{out}.png", "--iters", "0"], "--iters must be positive"),
    (["synth", "{good}", "-o", "{out}.png", "--threads", "0", *TINY], "--threads"),
    (["synth", "{good}", "-o", "{out}.bmp", *TINY], "write one of"),
    (["synth", "{good}", "-o", "{folder}", *TINY], "is a folder"),
    (["synth", "{good}", "-o", "{exists}", *TINY], "already exists"),
    (["synth", "{good}", "-o", "{exists}/x.png", *TINY], "not a folder"),
    (["synth", "{good}", "-o", "{out}.png", "--device", "tpu", *TINY], "--device"),
    # inpaint
    (["inpaint", "{good}", "--box", "8", "8", "8", "8", "-o", "{out}.jpg", *TINY],
     "write one of .png"),
    (["inpaint", "{good}", "-o", "{out}.png", *TINY], "exactly one of --mask"),
    (["inpaint", "{good}", "--mask", "{mask_small}", "-o", "{out}.png", *TINY], "image's size"),
    (["inpaint", "{good}", "--mask", "{mask_empty}", "-o", "{out}.png", *TINY], "empty"),
    (["inpaint", "{good}", "--box", "60", "60", "10", "10", "-o", "{out}.png", *TINY], "--box"),
    (["inpaint", "{nan}", "--box", "8", "8", "8", "8", "-o", "{out}.png", *TINY], "NaN"),
    (["inpaint", "{bomb}", "--box", "8", "8", "8", "8", "-o", "{out}.png", *TINY],
     "more than tilegen reads"),
    # blend
    (["blend", "{good}", "-o", "{out}.png", "--size", "32", "32", *TINY], "at least two"),
    (["blend", "{good}", "{good2}", "-o", "{out}.png", "--size", "32", "32", "--weight", "2",
      *TINY], "[0, 1]"),
    (["blend", "{good}", "{gray}", "-o", "{out}.png", "--size", "32", "32", *TINY], "channels"),
    (["blend", "{good}", "{good2}", "-o", "{out}.png", "--size", "32", "32", "--ramp", "diagonal",
      *TINY], "--ramp diagonal"),
    (["blend", "{good}", "{good2}", "-o", "{out}.png", "--size", "1000000000", "1000000000",
      *TINY], "of memory"),
    (["blend", "{good}", "{inf}", "-o", "{out}.png", "--size", "32", "32", *TINY], "infinite"),
    # evaluate
    (["evaluate", "{good}"], "at least one IMAGE"),
    (["evaluate", "{good}", "{gray}"], "channels"),
    (["evaluate", "{good}", "{good2}", "--patches", "20000", "--seeds", "5", "--max-memory", "2"],
     "--patches 20000"),
    (["evaluate", "{good}", "{good2}", "--patches", "0"], "--patches must be positive"),
    (["evaluate", "{nan}", "{good}"], "NaN"),
    # train
    (["train", "{good}", "-o", "{out}.pt", "--size", "100000", "--device", "cpu"], "of memory"),
    (["train", "{good}", "-o", "{out}.pt", "--targets", "0", "--device", "cpu"], "--targets"),
    (["train", "{good}", "-o", "{out}.pt", "--ema", "1", "--device", "cpu"], "--ema"),
    (["train", "{good}", "-o", "{out}.pt", "--resume", "--device", "cpu"], "no checkpoint"),
    (["train", "{nan}", "-o", "{out}.pt", "--device", "cpu"], "NaN"),
    (["train", "{bomb}", "-o", "{out}.pt", "--device", "cpu"], "more than tilegen reads"),
    (["train", "{good}", "-o", "{out}.pt", "--checkpoint-every", "-1"], "--checkpoint-every"),
    # sample
    (["sample", "{pickle}", "-o", "{out}.png"], "cannot read model"),
    (["sample", "{good}", "-o", "{out}.png"], "cannot read model"),
    (["sample", "{pt}", "-o", "{out}.png", "--size", "0", "0"], "must be positive"),
    (["sample", "{pt}", "-o", "{out}.png", "--size", "300000", "300000"], "of memory"),
    (["sample", "{pt}", "-o", "{out}.png", "--size", "20", "24", "--periodic"], "multiples of 8"),
    # export
    (["export", "{missing}", "-o", "{out}.onnx"], "no such file"),
    (["export", "{good}", "-o", "{out}.onnx"], "cannot read model"),
    (["export", "{pt}", "-o", "{out}.onnx", "--self-contained", "--tile", "64", "64", "--period",
      "100"], "--period 100"),
    (["export", "{pt}", "-o", "{out}.onnx", "--period", "64"], "--self-contained"),
    # generate
    (["generate", "{good}", "-o", "{out}.zarr", "--size", "64", "64"], "not a readable ONNX"),
    (["generate", "{onnx}", "-o", "{out}.zarr", "--size", "1000000000", "1000000000"], "free"),
    (["generate", "{onnx}", "-o", "{out}.tif", "--size", "1000000000", "1000000000"],
     "too large"),
    (["generate", "{onnx}", "-o", "{good}", "--size", "64", "64", "--overwrite"],
     "not a tilegen image"),
    (["generate", "{onnx}", "-o", "{out}.zarr", "--size", "64", "64", "--seed", "4294967296"],
     "--seed"),
    (["generate", "{onnx}", "-o", "{out}.zarr", "--size", "64", "64", "--workers", "0"],
     "--workers"),
    (["generate", "{onnx}", "-o", "{out}.zarr", "--size", "64", "64", "--shard", "8192",
      "--max-memory", "0.05"], "of memory"),
    # tiles, inspect
    (["tiles", "{folder}", "-o", "{out}"], "not a tilegen Zarr store"),
    (["tiles", "{missing}", "-o", "{out}"], "not a tilegen Zarr store"),
    (["inspect", "{text}"], "not"),
]  # fmt: skip


def _fill(args: list[str], f: dict, tmp: Path, i: int, extra: dict) -> list[str]:
    names = {**{k: str(v) for k, v in f.items()}, **extra}
    names.update(out=str(tmp / f"out{i}"), missing=str(tmp / "missing.png"))
    return [a.format(**names) for a in args]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[" ".join(c[0][:2]) for c in CASES])
def test_corpus_case_is_one_line(i, inputs, model_pt, onnx_model, tmp_path, monkeypatch, capsys):
    args, needle = CASES[i]
    argv = _fill(args, inputs, tmp_path, i, {"pt": str(model_pt), "onnx": str(onnx_model)})
    before = {p.name for p in tmp_path.iterdir()}
    code, _, err = run_inproc(monkeypatch, capsys, *argv)
    assert_one_line(code, err, needle)
    assert {p.name for p in tmp_path.iterdir()} == before, "a refused command left files"


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
    assert {c[0][0] for c in CASES} >= {
        "synth", "inpaint", "blend", "evaluate", "train", "sample", "export", "generate",
        "tiles", "inspect",
    }  # fmt: skip


def test_no_warning_lines_before_the_error(inputs, tmp_path):
    """A float TIFF with NaN is named as such: no loss blamed, no Python warnings printed."""
    code, _, err = run_sub("synth", inputs["nan"], "-o", tmp_path / "o.png", *TINY)
    line = assert_one_line(code, err, "NaN")
    assert "diverged" not in line and "lower --lr" not in line


def test_synth_prints_no_torch_warning(inputs, tmp_path):
    code, out, err = run_sub("synth", inputs["good"], "-o", tmp_path / "o.png", "--iters", "2",
                             "--scales", "2", "--size", "32", "32")  # fmt: skip
    assert code == 0, err
    assert "Warning" not in err and "wrote" in out


def test_jpeg_exif_orientation_is_applied(tmp_path):
    from tilegen.imageio import read_image

    img = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8)[None, :, None], (20, 1, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "side.jpg", exif=exif, quality=100)
    assert read_image(tmp_path / "side.jpg").shape[:2] == (40, 20)


def test_planar_tiff_reads_as_its_interleaved_twin(tmp_path):
    """A TIFF stored one plane per channel (planarconfig separate, as scanners and GIS tools
    write it) reads as the same pixels as the interleaved file, whatever its width."""
    import tifffile

    from tilegen.imageio import read_image

    rgb = np.asarray(Image.open(DATA / "grass_128.png").convert("RGB"))[:40]
    for width in (128, 3):
        part = np.ascontiguousarray(rgb[:, :width])
        tifffile.imwrite(tmp_path / "c.tif", part, photometric="rgb")
        tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(part, -1, 0), photometric="rgb",
                         planarconfig="separate")  # fmt: skip
        planar = read_image(tmp_path / "p.tif")
        assert planar.shape == (40, width, 3)
        assert np.array_equal(planar, read_image(tmp_path / "c.tif"))


# --- overwrite and tiles -----------------------------------------------------------------------


def test_overwrite_keeps_the_users_files_in_a_store(onnx_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.zarr"
    base = ["generate", onnx_model, "-o", out, "--size", 64, 64, "--no-progress"]
    assert run_inproc(monkeypatch, capsys, *base, "--seed", 1)[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = run_inproc(monkeypatch, capsys, *base, "--seed", 2, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"


def test_generate_overwrites_only_its_own_image(onnx_model, tmp_path, monkeypatch, capsys):
    png = tmp_path / "t.png"
    base = ["generate", onnx_model, "-o", png, "--size", 48, 40, "--no-progress"]
    assert run_inproc(monkeypatch, capsys, *base)[0] == 0
    code, _, err = run_inproc(monkeypatch, capsys, *base, "--seed", 3, "--overwrite")
    assert code == 0, err  # its own image: replaced


def test_tiles_refuses_an_incomplete_store_and_clears_stale_tiles(
    onnx_model, tmp_path, monkeypatch, capsys
):
    from tilegen import zarr_store

    store, tiles = tmp_path / "s.zarr", tmp_path / "tiles"
    gen = ["generate", onnx_model, "-o", store, "--size", 64, 96, "--chunk", 32, "--no-progress"]
    real = zarr_store.mark_complete

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zarr_store, "mark_complete", full_disk)
    code, _, err = run_inproc(monkeypatch, capsys, *gen)
    assert_one_line(code, err, "No space left")
    code, _, err = run_inproc(monkeypatch, capsys, "tiles", store, "-o", tiles)
    assert_one_line(code, err, "incomplete")
    monkeypatch.setattr(zarr_store, "mark_complete", real)
    code, out, err = run_inproc(monkeypatch, capsys, *gen)
    assert code == 0 and "marked complete" in out, err
    tiles.mkdir()
    (tiles / "tile_r0_c0.png.bak").write_text("a backup of mine")
    code, _, err = run_inproc(monkeypatch, capsys, "tiles", store, "-o", tiles, "--tile", 32)
    assert code == 0, err  # a .bak file is not a tile
    assert len(list(tiles.glob("tile_r*_c*.png"))) == 6
    code, _, err = run_inproc(monkeypatch, capsys, "tiles", store, "-o", tiles, "--tile", 64,
                              "--overwrite")  # fmt: skip
    assert code == 0, err
    names = {"tile_r0_c0.png", "tile_r0_c1.png", "tile_r0_c0.png.bak", "tiles.json"}
    assert {p.name for p in tiles.iterdir()} == names  # the 32-px grid's stale tiles are gone


# --- the file system: read-only folders and a full disk ----------------------------------------


def _mount_tmpfs(path: Path, size: str, read_only: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        pytest.skip(f"cannot mount a small file system here ({r.stderr.strip() or 'mount'})")


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no one may write: chmod for a normal user; as root (chmod does not stop root),
    a read-only tmpfs mount, or a skip where mount is not allowed."""
    d = tmp_path / "ro"
    if os.geteuid() != 0:
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    _mount_tmpfs(d, "1m", read_only=True)
    yield d
    subprocess.run(["umount", str(d)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 256 KB file system (root with mount only; else skipped)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    d = tmp_path / "small"
    _mount_tmpfs(d, "256k")
    yield d
    subprocess.run(["umount", str(d)], check=False)


@pytest.mark.parametrize(
    "command",
    [
        ["synth", str(DATA / "grass_128.png"), *TINY, "--size", "32", "32", "-o"],
        ["inpaint", str(DATA / "grass_128.png"), "--box", "8", "8", "8", "8", *TINY, "-o"],
        ["blend", str(DATA / "grass_128.png"), str(DATA / "bark_128.png"), "--size", "32", "32",
         *TINY, "-o"],
        ["train", str(DATA / "grass_128.png"), "--device", "cpu", "-o"],
        ["evaluate", str(DATA / "grass_128.png"), "--baselines", "--patches", "10", "--seeds",
         "1", "--json", "--max-memory", "0.0001"],
    ],
    ids=["synth", "inpaint", "blend", "train", "evaluate-memory"],
)  # fmt: skip
def test_read_only_output_folder(command, read_only_dir, monkeypatch, capsys):
    if command[0] == "evaluate":  # no output file: the memory guard's one line instead
        code, _, err = run_inproc(monkeypatch, capsys, *command)
        assert_one_line(code, err, "of memory")
        return
    suffix = ".pt" if command[0] == "train" else ".png"
    code, _, err = run_inproc(monkeypatch, capsys, *command, read_only_dir / f"o{suffix}")
    assert_one_line(code, err, "read-only")


def test_read_only_folder_for_sample_and_export(read_only_dir, model_pt, monkeypatch, capsys):
    for cmd, name in ((["sample", model_pt, "--size", 32, 32], "o.png"), (["export", model_pt],
                                                                         "o.onnx")):  # fmt: skip
        code, _, err = run_inproc(monkeypatch, capsys, *cmd, "-o", read_only_dir / name)
        assert_one_line(code, err, "read-only")


def test_full_disk_is_one_line(onnx_model, full_disk, monkeypatch, capsys):
    out = full_disk / "big.zarr"
    args = ["generate", onnx_model, "-o", out, "--size", 512, 512, "--chunk", 64, "--shard", 128,
            "--no-progress", "--codec", "zstd"]  # fmt: skip
    code, _, err = run_inproc(monkeypatch, capsys, *args)
    assert_one_line(code, err, "no space left on device")
    assert "rerun" in err
    synth = ["synth", DATA / "grass_128.png", *TINY, "--size", "600", "600", "--bits", "16"]
    code, _, err = run_inproc(monkeypatch, capsys, *synth, "-o", full_disk / "x.tif")
    assert_one_line(code, err, "no space left on device")
    assert not list(full_disk.glob("*.partial"))


# --- Ctrl-C: every long command says what was kept ---------------------------------------------


def _default_sigint() -> None:
    """A shell starts background jobs with SIGINT ignored, and Python keeps an inherited 'ignore':
    give the command the default handler a terminal's Ctrl-C meets."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(
    args: list, ready, tmp_path: Path, timeout: float = 120, settle: float = 0.5
) -> tuple[int, str]:
    """Start the command, wait until stderr shows `ready` (its progress bar; or until the
    callable `ready` says so), send SIGINT."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        cmd = [sys.executable, "-c", "import cli; cli.main()", *map(str, args)]
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                             preexec_fn=_default_sigint)  # fmt: skip
        t0 = time.time()
        seen = ready if callable(ready) else lambda: ready in err_path.read_text()
        while not seen() and time.time() - t0 < timeout:
            if p.poll() is not None:
                break
            time.sleep(0.2)
        time.sleep(settle)
        p.send_signal(signal.SIGINT)
        try:
            code = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError("Ctrl-C did not stop the command within 2 minutes")
    return code, err_path.read_text()


LONG = ["--iters", "100000", "--scales", "2", "--device", "cpu"]


@pytest.mark.parametrize(
    "name, args, ready, kept",
    [
        ("synth", ["synth", DATA / "grass_128.png", *LONG, "--size", "64", "64"], "synth",
         "was not written"),
        ("inpaint", ["inpaint", DATA / "grass_128.png", "--box", "30", "30", "20", "20", *LONG],
         "inpaint", "was not written"),
        ("blend", ["blend", DATA / "grass_128.png", DATA / "bark_128.png", "--size", "48", "48",
                   *LONG], "blend", "was not written"),
        ("train", ["train", DATA / "grass_128.png", "--iters", "100000", "--size", "32",
                   "--levels", "3", "--width", "8", "--scales", "2", "--checkpoint-every", "2",
                   "--device", "cpu"], "train", "--resume"),
        ("evaluate", ["evaluate", DATA / "grass_128.png", "--baselines", "--patches", "3000",
                      "--seeds", "20"], "image", "rerun"),
    ],
)  # fmt: skip
def test_ctrl_c_torch_commands(name, args, ready, kept, tmp_path):
    out = tmp_path / ("o.pt" if name == "train" else "o.png")
    if name != "evaluate":
        args = [*args, "-o", out]
    if name == "evaluate":
        ready = "\x00"  # it prints nothing on stderr: interrupt it after 10 s
    if name == "train":  # once its first checkpoint is on disk, however slow the machine
        ready = Path(f"{out}.ckpt").is_file
    code, err = _interrupt(args, ready, tmp_path, 10 if name == "evaluate" else 120,
                           3 if name == "train" else 0.5)  # fmt: skip
    line = assert_one_line(code, err, "interrupted", exit_code=130)
    assert kept in line, line
    if name != "train":
        assert not out.exists()


def test_a_swallowed_ctrl_c_still_stops_the_loop():
    """A KeyboardInterrupt raised where Python ignores exceptions (a finaliser, a callback) is
    lost; the commands' loops still see the Ctrl-C (tilegen.errors.raise_if_interrupted)."""
    from tilegen.errors import raise_if_interrupted, remember_ctrl_c

    before = signal.getsignal(signal.SIGINT)
    try:
        remember_ctrl_c()
        raise_if_interrupted()  # no Ctrl-C yet
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # swallowed
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
        remember_ctrl_c()  # the next command starts afresh
        raise_if_interrupted()
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_generate_tiles_sample_export(onnx_model, model_pt, tmp_path):
    store = tmp_path / "s.zarr"
    big = ["--size", 8192, 8192, "--chunk", 64, "--shard", 128]
    code, err = _interrupt(["generate", onnx_model, "-o", store, *big], "render", tmp_path)
    assert "rerun the same command to finish" in assert_one_line(code, err, "shards", 130)
    code, err = _interrupt(["generate", onnx_model, "-o", tmp_path / "i.png", "--size", 4096, 4096],
                           "render", tmp_path)  # fmt: skip
    assert_one_line(code, err, "was not written", 130)
    assert not (tmp_path / "i.png").exists() and not list(tmp_path.glob("*.partial"))
    done = tmp_path / "done.zarr"
    run_sub("generate", onnx_model, "-o", done, "--size", 2048, 2048, "--no-progress")
    code, err = _interrupt(["tiles", done, "-o", tmp_path / "t", "--tile", 16], "tiles", tmp_path)
    assert_one_line(code, err, "--overwrite", 130)
    assert not list((tmp_path / "t").glob("*.partial"))
    code, err = _interrupt(["sample", model_pt, "-o", tmp_path / "s.png", "--size", 8000, 8000,
                            "--device", "cpu"], "\x00", tmp_path, timeout=8)  # fmt: skip
    assert_one_line(code, err, "was not written", 130)
    from conftest import fixture_generator

    from train.checkpoint import save_generator

    big = tmp_path / "big.pt"  # the bundled model's shape: its export takes tens of seconds
    save_generator(big, fixture_generator(6, 16), {"exemplar_sha256": "", "training": {}})
    # Ctrl-C a moment after the export says it started (it traces for several seconds more).
    code, err = _interrupt(["export", big, "-o", tmp_path / "m.onnx"], "exporting", tmp_path,
                           settle=1.0)  # fmt: skip
    assert_one_line(code, err, "interrupted", 130)
    assert not (tmp_path / "m.onnx").exists()


def test_web_tiles_overwrite_keeps_the_users_files(onnx_model, tmp_path, monkeypatch, capsys):
    store, web = tmp_path / "s.zarr", tmp_path / "web"
    gen = ["generate", onnx_model, "-o", store, "--size", 64, 96, "--chunk", 32, "--no-progress"]
    assert run_inproc(monkeypatch, capsys, *gen)[0] == 0
    cut = ["tiles", store, "-o", web, "--format", "xyz", "--no-progress"]
    assert run_inproc(monkeypatch, capsys, *cut)[0] == 0
    (web / "notes.txt").write_text("mine")
    code, _, err = run_inproc(monkeypatch, capsys, *cut, "--overwrite")
    assert code == 0, err
    assert (web / "notes.txt").read_text() == "mine" and (web / "tilejson.json").is_file()
