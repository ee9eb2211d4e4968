"""The one tile-grid iterator: every loop over the tiles of a region goes through `tiles`.

    tiles(y0, x0, h, w, th, tw)              tiles of th x tw from the region's top-left corner
    tiles(y0, x0, h, w, th, tw, aligned=True)  tiles on the global grid of multiples of (th, tw),
                                             cut to the region (an evaluation's pieces then sit
                                             on the same grid whichever region asked for them)

Each tile is a `Tile(row, col, y, x, h, w)`: its index in the grid (row-major) and its pixels,
the last row and column smaller where the region is not a multiple of the tile. `grid_shape`
counts them without listing them, so a grid of 10^12 tiles costs nothing until it is walked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple


class Tile(NamedTuple):
    row: int
    col: int
    y: int
    x: int
    h: int
    w: int


def _starts(start: int, size: int, step: int, aligned: bool) -> range:
    first = start - start % step if aligned else start
    return range(first, start + size, step)


def grid_shape(
    y0: int, x0: int, h: int, w: int, th: int, tw: int | None = None, aligned: bool = False
) -> tuple[int, int]:
    """(rows, cols) of the grid `tiles` walks."""
    tw = tw or th
    return len(_starts(y0, h, th, aligned)), len(_starts(x0, w, tw, aligned))


def tiles(
    y0: int, x0: int, h: int, w: int, th: int, tw: int | None = None, aligned: bool = False
) -> Iterator[Tile]:
    """The tiles covering [y0, y0+h) x [x0, x0+w), row-major (see the module docstring)."""
    tw = tw or th
    if th < 1 or tw < 1:
        raise ValueError(f"tile size must be positive, got {th}x{tw}")
    for row, ty in enumerate(_starts(y0, h, th, aligned)):
        ya, yb = max(ty, y0), min(ty + th, y0 + h)
        for col, tx in enumerate(_starts(x0, w, tw, aligned)):
            xa, xb = max(tx, x0), min(tx + tw, x0 + w)
            yield Tile(row, col, ya, xa, yb - ya, xb - xa)
