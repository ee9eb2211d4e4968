"""A store's ledger: what tilegen wrote into a Zarr store, kept beside it in STORE/.tilegen/.

    .tilegen/store.json             the "tilegen" attribute block as written (settings, uid):
                                    zarr.json must still say the same, or the store was edited
    .tilegen/lock                   the writer's pid, host and start; one writer at a time
    .tilegen/shards/L/Y/X           one record per finished shard (level L, shard row Y, column
                                    X): "SIZE SHA256" of the shard's file as written

A shard is done when its record exists and its file still has the recorded size and hash, so a
missing, truncated, zero-byte or corrupted shard is found by reading the store back
(`verify_level`) and rendered again. The record is written after the shard (through a temporary
file and a rename): a run killed in between renders that shard again. `--overwrite` deletes the
shard files the records name and nothing a foreign file lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tilegen.errors import UserError
from tilegen.imageio import write_atomic

LEDGER = ".tilegen"
SETTINGS = "store.json"
LOCK = "lock"
# zarr's LocalStore writes NAME through NAME-with-suffix ".<32 hex>.partial", then renames it.
ZARR_PARTIAL = re.compile(r"(\d+|zarr)\.[0-9a-f]{32}\.partial")


def ledger_dir(store: str | os.PathLike) -> Path:
    return Path(store) / LEDGER


def shard_file(store: str | os.PathLike, level: int, yi: int, xi: int) -> Path:
    """The file of shard (yi, xi) of a level (zarr v3 default keys; channel block 0)."""
    return Path(store) / str(level) / "c" / "0" / str(yi) / str(xi)


def _record_file(store: str | os.PathLike, level: int, yi: int, xi: int) -> Path:
    return ledger_dir(store) / "shards" / str(level) / str(yi) / str(xi)


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 4 MB blocks (hashlib releases the GIL on them)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


# --- settings ---------------------------------------------------------------------------------


def write_settings(store: str | os.PathLike, block: dict) -> None:
    """Keep the attribute block tilegen wrote (less its "complete" flag, which changes)."""
    doc = {k: v for k, v in block.items() if k != "complete"}
    write_atomic(ledger_dir(store) / SETTINGS, json.dumps(doc, sort_keys=True, indent=1) + "\n")


def check_settings(store: str | os.PathLike, block: dict) -> None:
    """UserError if zarr.json's block differs from what tilegen wrote (a hand edit of size,
    levels, seed ...). A store without a ledger (an older tilegen's) is not checked."""
    path = ledger_dir(store) / SETTINGS
    try:
        written = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}): pass --overwrite to generate the store anew")
    now = {k: v for k, v in block.items() if k != "complete"}
    for key in sorted(set(written) | set(now)):
        if written.get(key) != now.get(key):
            raise UserError(
                f"{store}'s metadata was edited since tilegen wrote it ({key} "
                f"{json.dumps(written.get(key))}, now {json.dumps(now.get(key))}): restore it, or "
                "generate the store again with --overwrite"
            )


# --- shard records ----------------------------------------------------------------------------


def record_shard(store: str | os.PathLike, level: int, yi: int, xi: int) -> None:
    """Record a shard just written: its file's size and hash, read back from the disk."""
    size, digest = file_digest(shard_file(store, level, yi, xi))
    write_atomic(_record_file(store, level, yi, xi), f"{size} {digest}\n")


def forget_shard(store: str | os.PathLike, level: int, yi: int, xi: int) -> None:
    _record_file(store, level, yi, xi).unlink(missing_ok=True)


def _grid_files(root: Path, rows: int, cols: int) -> Iterator[tuple[int, int, str]]:
    """(yi, xi, path) of the plain files ROOT/yi/xi inside a rows x cols grid, from the folder
    listing (the cost follows the files there, not the size of the grid)."""
    try:
        row_dirs = [d for d in os.scandir(root) if d.name.isdigit() and int(d.name) < rows]
    except OSError:
        return
    for row in row_dirs:
        for f in os.scandir(row.path):
            if f.name.isdigit() and int(f.name) < cols and f.is_file(follow_symlinks=False):
                yield int(row.name), int(f.name), f.path


def recorded(store: str | os.PathLike, level: int, rows: int, cols: int) -> Iterator[tuple]:
    """(yi, xi, size, sha256) of every record of a level inside its rows x cols grid."""
    for yi, xi, path in _grid_files(ledger_dir(store) / "shards" / str(level), rows, cols):
        try:
            size, digest = Path(path).read_text().split()
            yield yi, xi, int(size), digest
        except (OSError, ValueError):
            yield yi, xi, -1, ""  # a damaged record: not done


def check_shard(store: str | os.PathLike, level: int, record: tuple) -> str | None:
    """None if the shard's file matches its record, else what is wrong with it."""
    yi, xi, size, digest = record
    path = shard_file(store, level, yi, xi)
    try:
        have = path.stat().st_size
    except OSError:
        return "missing"
    if size < 0:
        return "its record is damaged"
    if have != size:
        return f"{have} bytes where {size} were written"
    return None if file_digest(path)[1] == digest else "its bytes changed since they were written"


def verify_level(
    store: str | os.PathLike,
    level: int,
    rows: int,
    cols: int,
    threads: int = 2,
    on_checked: Callable[[int], None] | None = None,
) -> tuple[set[tuple[int, int]], dict[tuple[int, int], str]]:
    """Read a level's recorded shards back: (the (yi, xi) that are intact, {(yi, xi): what is
    wrong} for the damaged ones). Shards never recorded are in neither."""
    good, bad = set(), {}
    records = list(recorded(store, level, rows, cols))
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="tilegen-verify") as pool:
        for rec, problem in zip(records, pool.map(lambda r: check_shard(store, level, r), records)):
            if problem is None:
                good.add(rec[:2])
            else:
                bad[rec[:2]] = problem
            if on_checked is not None:
                on_checked(1)
    return good, bad


# --- the writer's lock ------------------------------------------------------------------------


def _me() -> dict:
    import psutil

    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": psutil.Process().create_time(),
    }


def _alive(owner: dict) -> bool:
    """Whether the process a lock names still runs (same host only: another host's is assumed
    alive). A reused pid is told apart by its start time."""
    import psutil

    if owner.get("host") != socket.gethostname():
        return True
    try:
        p = psutil.Process(int(owner["pid"]))
        return abs(p.create_time() - float(owner["started"])) < 1.0
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


class StoreLock:
    """One writer per store: STORE/.tilegen/lock made with O_EXCL, holding the owner's pid, host
    and start time. A lock whose process is gone (on this host) is stale and taken over."""

    def __init__(self, store: str | os.PathLike):
        self.path = ledger_dir(store) / LOCK
        self.store = Path(store)
        self.me = _me()
        self.held = False

    def acquire(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:  # being written this instant, or garbage: look again
                    time.sleep(0.05)
                    if self._owner() is None and self._age() > 5:
                        self.path.unlink(missing_ok=True)
                    continue
                if _alive(owner):
                    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(owner["started"]))
                    raise UserError(
                        f"{self.store} is being written by another tilegen run (pid "
                        f"{owner['pid']} on {owner['host']}, since {since}): wait for it to end; "
                        f"if it is no longer running, delete {self.path}"
                    )
                self.path.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self.held = True
            return self
        raise UserError(f"cannot take the lock {self.path}: delete it if no tilegen run is writing")

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) and "pid" in owner else None
        except (OSError, ValueError):
            return None

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        if self.held and self._owner() == self.me:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --- removing what tilegen wrote ----------------------------------------------------------------


def remove_recorded(
    store: str | os.PathLike, levels: Iterable[tuple[int, int, int]], legacy: bool = False
) -> None:
    """Delete the shard files the ledger records for each (level, rows, cols), zarr's temp files
    of those levels, the levels' array metadata and the records (the lock stays: its holder is
    replacing the store); then the folders this leaves empty. A user's file anywhere in the store
    stays. `legacy`: a store of an older tilegen, which kept no records: its shards are the files
    named as zarr names them inside the grid."""
    store = Path(store)
    for level, rows, cols in levels:
        shards = _named_shards(store, level, rows, cols) if legacy else (
            r[:2] for r in recorded(store, level, rows, cols))  # fmt: skip
        for yi, xi in list(shards):
            shard_file(store, level, yi, xi).unlink(missing_ok=True)
        top = store / str(level)
        if top.is_dir() and not top.is_symlink():
            for root, _dirs, files in os.walk(top):
                for f in files:
                    if ZARR_PARTIAL.fullmatch(f):
                        os.unlink(os.path.join(root, f))
            (top / "zarr.json").unlink(missing_ok=True)
            _prune_empty(top)
    ledger = ledger_dir(store)
    if ledger.is_dir() and not ledger.is_symlink():
        for root, dirs, files in os.walk(ledger, topdown=False):
            for f in files:
                if Path(root, f) != ledger / LOCK:
                    os.unlink(os.path.join(root, f))
            for d in dirs:
                if not os.path.islink(os.path.join(root, d)):
                    os.rmdir(os.path.join(root, d))


def _named_shards(store: Path, level: int, rows: int, cols: int) -> Iterator[tuple[int, int]]:
    root = shard_file(store, level, 0, 0).parent.parent
    return ((yi, xi) for yi, xi, _ in _grid_files(root, rows, cols))


def _prune_empty(top: Path) -> None:
    """Remove the empty folders under `top` (and `top` itself if it ends up empty)."""
    for root, dirs, _files in os.walk(top, topdown=False):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                try:
                    os.rmdir(p)
                except OSError:  # not empty: something of the user's is inside
                    pass
    try:
        top.rmdir()
    except OSError:
        pass
