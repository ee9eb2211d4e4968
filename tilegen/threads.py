"""How many CPU threads a command uses: the cores this process may run on (`usable_cores`, what
the tiler and the tile cutters spread over), and the torch paths' threads, decided once per command.

Measured on a 2-core machine (bench/RESULTS.md, "Threads"): torch's OpenMP threads busy-wait at
every barrier (GNU OpenMP spins 300,000 times by default). On an idle machine two threads make a
training iteration 1.8x faster than one; but while another process holds a core, the spinning
thread waits on the descheduled one at every barrier and two threads run 1.7x *slower* than one.
Hence two rules:

- a short spin before a waiting thread sleeps (`GOMP_SPINCOUNT`, read once when OpenMP loads, so
  `prepare_openmp` must run before torch is imported; `train/` and `export/` call it on import);
- as many threads as there are idle cores when the command starts (`pick_threads`), or what the
  user asks for with `--threads` (or an OMP_NUM_THREADS they set).

Torch-free, like the rest of `tilegen/`.
"""

from __future__ import annotations

import os

from tilegen.errors import UserError

SPIN_COUNT = "1000"  # about a microsecond of spinning: idle speed kept, a busy core not fought


def prepare_openmp() -> None:
    """Set the OpenMP spin before torch loads OpenMP (a value the user set is kept)."""
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def idle_cores(interval: float = 0.2) -> int:
    """Usable cores minus those other processes kept busy over the last `interval` seconds."""
    import psutil

    busy = psutil.cpu_percent(interval) / 100.0 * (psutil.cpu_count() or 1)
    return max(1, min(usable_cores(), round(usable_cores() - busy + 0.25)))


def pick_threads(requested: int | None = None) -> int:
    """`requested` (--threads) if given, else OMP_NUM_THREADS if the user set it, else the idle
    cores now."""
    if requested is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        return int(env) if env.isdigit() and int(env) > 0 else idle_cores()
    if requested < 1:
        raise UserError(f"--threads {requested}: use a positive number, or leave it out")
    return requested
