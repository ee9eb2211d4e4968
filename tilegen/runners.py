"""Where a store run's tasks execute: Dask's local schedulers (threads, processes, sync) or a
dask.distributed cluster (one we start, or an existing scheduler's address).

Jobs are submitted in bounded batches (local schedulers) or a bounded sliding window
(distributed), so memory does not grow with the output size; `on_done` is called on the main
thread for every finished job.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING

from tilegen.errors import UserError
from tilegen.planning import plan
from tilegen.shard_tasks import Job, TaskConfig

if TYPE_CHECKING:
    from tilegen.tiler import GenerateConfig

LOCAL_SCHEDULERS = ("threads", "processes", "local", "sync")
BATCH = 256  # jobs per local Dask graph

OnDone = Callable[[Job, tuple[int, str]], None]


def _ignore_stop_signals() -> None:
    """In a worker process: Ctrl-C or SIGTERM sent to the whole group is the main process's to
    handle (it cancels, lets running shards finish whole and reports); a worker that died of it
    would only break the pool."""
    import signal

    from tilegen.errors import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class LocalRunner:
    """Dask's local schedulers ("threads", "processes", "sync"), graphs of at most BATCH jobs.

    The pool is created once and reused by every batch, so worker processes keep their sessions.
    """

    def __init__(self, scheduler: str, workers: int):
        self.scheduler, self.workers = scheduler, max(1, workers)
        self.pool = None
        if scheduler == "threads":
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tilegen")
        elif scheduler == "processes":
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_ignore_stop_signals
            )

    def describe(self) -> str:
        if self.scheduler == "sync":
            return "dask synchronous scheduler"
        return f"dask {self.scheduler} scheduler, {self.workers} workers"

    def run(self, fn, cfg: TaskConfig, jobs: Iterable[Job], on_done: OnDone) -> None:
        import dask
        from dask.callbacks import Callback

        it = iter(jobs)
        while batch := list(islice(it, BATCH)):
            by_key = {job.key: job for job in batch}

            def posttask(key, result, dsk, state, worker_id, by_key=by_key):
                if key in by_key:
                    on_done(by_key[key], result)

            tasks = [dask.delayed(fn, pure=False)(cfg, j, dask_key_name=j.key) for j in batch]
            kwargs = {"scheduler": self.scheduler}
            if self.pool is not None:
                kwargs.update(pool=self.pool, num_workers=self.workers)
            with Callback(posttask=posttask):
                dask.compute(*tasks, **kwargs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def connect(address: str, timeout: float):
    """A dask.distributed Client of the scheduler at `address`, or a one-line UserError within
    about `timeout` seconds: a host that does not resolve or a port that refuses fails at once,
    and a peer that accepts but never answers the handshake (Client's own timeout does not cover
    it) is given up after the deadline."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from distributed import Client

    where = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = where.hostname, where.port or 8786
    except ValueError as e:
        raise UserError(f"--scheduler {address}: not an address such as tcp://host:8786 ({e})")
    try:
        if where.scheme in ("tcp", "tls"):  # not inproc://, a scheduler in this process
            socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as e:
        raise UserError(f"--scheduler {address}: cannot resolve {host} ({e.strerror or e})")
    except OSError as e:
        raise UserError(
            f"cannot reach the Dask scheduler at {address}: {e.strerror or e}; is it running?"
        )
    box: dict = {}

    def handshake() -> None:
        try:
            box["client"] = Client(address, timeout=f"{timeout}s")
        except Exception as e:  # distributed raises OSError, TimeoutError and its own types
            box["error"] = e

    thread = threading.Thread(target=handshake, daemon=True, name="tilegen-connect")
    thread.start()
    thread.join(timeout + 2)
    if "client" in box:
        return box["client"]
    why = f"{box['error']}" if "error" in box else f"no answer within {timeout:g} s"
    raise UserError(
        f"the Dask scheduler at {address} did not complete the handshake ({why}): is it a "
        "dask.distributed scheduler? (--connect-timeout sets the wait)"
    )


class DistributedRunner:
    """A dask.distributed Client: a LocalCluster we start, or an existing scheduler's address.
    At most `window` jobs are in flight; results are handled with `as_completed`."""

    def __init__(self, address: str | None, workers: int, threads: int, client=None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover
            raise UserError("dask.distributed is not installed: pip install distributed")
        self.cluster = None
        if address is None:
            # The scheduler's HTTP server falls back to a free port when 8787 is taken (another
            # cluster, a notebook): nothing the user must act on, so no 4-line warning.
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            self.client = Client(self.cluster)
        else:
            self.client = client
        info = self.client.scheduler_info()["workers"]
        if not info:
            raise UserError(f"the Dask cluster at {address or 'localhost'} has no workers")
        self.workers = info
        self.slots = sum(w.get("nthreads", 1) for w in info.values())

    def describe(self) -> str:
        where = "local cluster" if self.cluster else f"cluster {self.client.scheduler.address}"
        return f"dask.distributed {where}, {len(self.workers)} workers, {self.slots} threads"

    def ort_threads(self) -> tuple[tuple[str, int], ...]:
        """onnxruntime threads per worker: the host's cores over the Dask threads it runs."""
        cpus = self.client.run(os.cpu_count)
        per_host: dict[str, int] = {}
        for w in self.workers.values():
            per_host[w["host"]] = per_host.get(w["host"], 0) + w.get("nthreads", 1)
        return tuple(
            (addr, max(1, (cpus.get(addr) or 1) // per_host[w["host"]]))
            for addr, w in self.workers.items()
        )

    def run(self, fn, cfg: TaskConfig, jobs: Iterable[Job], on_done: OnDone) -> None:
        from distributed import as_completed

        it = iter(jobs)
        window = 2 * self.slots + 2
        futures = {}

        def submit(job: Job):
            fut = self.client.submit(fn, cfg, job, key=job.key, pure=False, retries=0)
            futures[fut.key] = job
            return fut

        ac = as_completed([submit(j) for j in islice(it, window)])
        try:
            for fut in ac:
                result = fut.result()  # re-raises a task's exception here
                on_done(futures.pop(fut.key), result)
                nxt = next(it, None)
                if nxt is not None:
                    ac.add(submit(nxt))
        except BaseException:
            self.client.cancel(list(ac.futures))
            raise

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_runner(
    cfg: GenerateConfig, n_jobs: int, remote=None
) -> tuple[LocalRunner | DistributedRunner, int | tuple[tuple[str, int], ...]]:
    """The executor `plan` describes, and the onnxruntime threads per task (per worker on a
    cluster; `remote`: a connected Client of the scheduler --scheduler names)."""
    p = plan(cfg, n_jobs)
    if p is None:
        client = remote or connect(cfg.scheduler, cfg.connect_timeout)
        runner = DistributedRunner(cfg.scheduler, 0, 0, client=client)
        return runner, runner.ort_threads()
    if p.scheduler == "local":
        return DistributedRunner(None, p.processes, p.threads_per_worker), p.ort
    return LocalRunner(p.scheduler, p.tasks), p.ort


def check_scheduler(name: str) -> str:
    """--scheduler: a local scheduler's name or a dask.distributed address."""
    if name in LOCAL_SCHEDULERS or "://" in name or ":" in name:
        return name
    raise UserError(
        f"--scheduler {name!r}: use threads, processes, local or a dask.distributed address "
        "such as tcp://host:8786"
    )
