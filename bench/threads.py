"""Thread policy: every torch command's wall time (start-up included) under each policy, one run.

    python bench/threads.py [--only synth128 train ...] [--busy]

Policies, each a fresh `tilegen` process:
- default: what a user gets (tilegen/threads.py: the idle cores, a short OpenMP spin);
- 1 thread: `OMP_NUM_THREADS=1`;
- before: what tilegen did before the policy existed: torch's default (all cores) with GNU
  OpenMP's default spin (`GOMP_SPINCOUNT=300000`).
`--busy` runs each again while another process keeps one core busy (a second training, a
browser...), the case where spinning threads lose. Prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "tilegen" / "assets" / "exemplars"
DATA = ROOT / "tests" / "data"

COMMANDS = {
    "synth128": ["synth", DATA / "bark_128.png", "--iters", "200"],
    "synth256": ["synth", EX / "bark.png", "--size", "256", "256"],
    "train": [
        "train", EX / "grass.png", "--iters", "100", "--no-check", "--checkpoint-every", "0",
        "--device", "cpu", "--projection", "0",
    ],
    "inpaint": [
        "inpaint", DATA / "grass_128.png", "--box", "40", "40", "48", "48", "--iters", "100",
    ],
    "blend": [
        "blend", DATA / "grass_128.png", DATA / "bark_128.png", "--size", "128", "128",
        "--iters", "100",
    ],
    "sample": ["sample", ROOT / "tilegen/assets/grass.pt", "--size", "2048", "2048"],
}  # fmt: skip

POLICIES = {
    "default": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "before": {"GOMP_SPINCOUNT": "300000", "TILEGEN_BENCH_THREADS": "all"},
}


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def run(name: str, policy: str, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    args = [str(a) for a in COMMANDS[name]]
    if env.pop("TILEGEN_BENCH_THREADS", None):
        args += ["--threads", str(os.cpu_count())]
    suffix = ".pt" if name == "train" else ".png"
    cmd = [sys.executable, "-c", "import cli; cli.main()", *args, "-o", str(out / f"o{suffix}")]
    t = time.perf_counter()
    subprocess.run(cmd + ["--overwrite"], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    p.add_argument("--busy", action="store_true", help="also with one core kept busy")
    args = p.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} before the run"
    )
    loads = [False, True] if args.busy else [False]
    header = "| command | machine | " + " | ".join(f"{p} (s)" for p in POLICIES)
    print(header + " | 1 thread / default |")
    print("|---|---|" + "---:|" * (len(POLICIES) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            for busy in loads:
                hog = None
                if busy:
                    hog = mp.get_context("spawn").Process(target=_spin, args=(3600,))
                    hog.start()
                    time.sleep(1.0)
                try:
                    t = {pol: run(name, pol, Path(tmp)) for pol in POLICIES}
                finally:
                    if hog is not None:
                        hog.terminate()
                        hog.join()
                cells = " | ".join(f"{t[pol]:.1f}" for pol in POLICIES)
                ratio = t["1 thread"] / t["default"]
                print(f"| {name} | {'one core busy' if busy else 'idle'} | {cells} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
