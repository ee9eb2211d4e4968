"""The CPU thread policy (tilegen/threads.py): idle cores, a short OpenMP spin, --threads."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT, cli

from tilegen.errors import UserError
from tilegen.threads import SPIN_COUNT, idle_cores, pick_threads, usable_cores


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_requested_threads_win_and_must_be_positive(monkeypatch):
    assert pick_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # a user's own setting, when no --threads
    assert pick_threads() == 5 and pick_threads(2) == 2
    with pytest.raises(UserError, match="--threads 0"):
        pick_threads(0)


def test_busy_cores_are_left_alone():
    """With every core busy in other processes, the policy takes one thread, not all of them
    (two OpenMP threads on a busy 2-core machine ran 1.7x slower than one)."""
    cores = usable_cores()
    procs = [mp.get_context("spawn").Process(target=_spin, args=(6.0,)) for _ in range(cores)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.5)  # let them start spinning
        assert idle_cores() == 1
    finally:
        for p in procs:
            p.terminate()
            p.join()
    assert 1 <= pick_threads() <= cores


def test_openmp_spin_is_set_before_torch_loads():
    code = "import os, train, torch; print(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert out.stdout.decode().strip() == SPIN_COUNT
    env["GOMP_SPINCOUNT"] = "5"  # a user's own setting is kept
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert out.stdout.decode().strip() == "5"


def test_cli_threads_option(tmp_path):
    rc, _, err = cli(
        "synth", ROOT / "tests/data/bark_128.png", "-o", tmp_path / "a.png", "--threads", "0"
    )
    assert rc == 2 and err.strip() == (
        "tilegen: error: --threads 0: use a positive number, or leave it out"
    )
    rc, out, err = cli(
        "synth", ROOT / "tests/data/bark_128.png", "-o", tmp_path / "b.png",
        "--size", "32", "32", "--iters", "2", "--scales", "2", "--threads", "1",
    )  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "b.png").is_file()
