"""A bounded map over a thread pool that yields its results in order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice


def ordered_map(fn, items: Iterable, workers: int, ahead: int) -> Iterator:
    """fn over items on a thread pool, results in order, at most `ahead` pending (bounded)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="tilegen") as pool:
        pending: deque = deque()
        it = iter(items)
        for item in islice(it, ahead):
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
