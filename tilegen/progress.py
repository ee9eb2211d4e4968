"""The progress bar of the long commands: pixels done, in megapixels, with MP/s and ETA."""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar counting pixels, shown in megapixels with MP/s and ETA, fed from the main
    thread (dask callbacks locally, as_completed on a cluster)."""

    def __init__(self, total: int, done: int, desc: str, enabled: bool = True):
        self.bar = None
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(
                total=int(total),
                initial=int(done),
                desc=desc,
                unit="MP",
                unit_scale=1e-6,
                dynamic_ncols=True,
                file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} MP "
                "[{elapsed}<{remaining}, {rate_noinv_fmt}]",
                smoothing=0.1,
            )

    def advance(self, pixels: int) -> None:
        if self.bar is not None:
            self.bar.update(int(pixels))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
