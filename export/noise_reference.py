"""Writes docs/noise_reference.json: reference values of the tilegen-hash32 noise (docs/NOISE.md).

    python -m export.noise_reference > docs/noise_reference.json

Every value comes from tilegen/noise.py (tests/test_export.py checks them against it), so another
runtime that reproduces this file reproduces tilegen's noise bit for bit.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from tilegen.noise import NOISE_SPEC, NOISE_SPEC_VERSION, mix32, noise_window, wrap

SEEDS = [0, 1, 42, 2**31, 3735928559, 2**32 - 1]
POINTS = [  # (level, channel, y, x)
    (0, 0, 0, 0),
    (0, 1, 0, 1),
    (1, 2, 1, 0),
    (2, 0, -1, -1),
    (3, 1, -2, 5),
    (5, 2, 1000, -1000),
    (4, 0, 2**31 - 1, -(2**31)),
    (5, 1, 123456, 654321),
]
PERIODIC = [  # (seed, level, channel, y, x, level period (py, px))
    (7, 0, 0, -1, -1, (4, 4)),
    (7, 3, 2, -33, 70, (32, 64)),
    (2**32 - 1, 5, 1, 1000, -1000, (256, 128)),
]


def point(seed: int, level: int, channel: int, y: int, x: int) -> tuple[int, float]:
    """(uint32 hash, float32 value) at one coordinate, by the definition (not the window code)."""
    # h = mix(mix(mix(mix(mix(seed) ^ level) ^ channel) ^ u32(y)) ^ u32(x))
    h = mix32(np.uint32(seed))
    for v in (level, channel, y, x):
        h = mix32(h ^ np.uint32(int(v) & 0xFFFFFFFF))
    h = int(h)
    return h, float(np.float32(h >> 8) * np.float32(2.0**-24))


def reference() -> dict:
    values = []
    for seed in SEEDS:
        for level, channel, y, x in POINTS:
            h, v = point(seed, level, channel, y, x)
            w = noise_window(seed, level, channel + 1, y, x, 1, 1)[channel, 0, 0]
            assert float(w) == v, (seed, level, channel, y, x)
            values.append(
                {"seed": seed, "level": level, "channel": channel, "y": y, "x": x,
                 "hash": h, "hash_hex": f"0x{h:08x}", "value": v}
            )  # fmt: skip
    periodic = []
    for seed, level, channel, y, x, (py, px) in PERIODIC:
        wy, wx = int(wrap(np.int64(y), py)), int(wrap(np.int64(x), px))
        h, v = point(seed, level, channel, wy, wx)
        w = noise_window(seed, level, channel + 1, y, x, 1, 1, (py, px))[channel, 0, 0]
        assert float(w) == v
        periodic.append(
            {"seed": seed, "level": level, "channel": channel, "y": y, "x": x,
             "level_period": [py, px], "wrapped_y": wy, "wrapped_x": wx,
             "hash": h, "hash_hex": f"0x{h:08x}", "value": v}
        )  # fmt: skip
    mixes = [{"in": v, "out": int(mix32(np.uint32(v)))} for v in (0, 1, 0xDEADBEEF, 2**32 - 1)]
    win = noise_window(7, 2, 2, -1, -2, 2, 3)
    return {
        "spec": NOISE_SPEC,
        "version": NOISE_SPEC_VERSION,
        "definition": "h = mix(mix(mix(mix(mix(seed) ^ level) ^ channel) ^ u32(y)) ^ u32(x)); "
        "value = (h >> 8) * 2^-24; mix = lowbias32: h ^= h >> 16; h *= 0x7feb352d; "
        "h ^= h >> 15; h *= 0x846ca68b; h ^= h >> 16 (uint32, wrapping)",
        "mix32": mixes,
        "values": values,
        "periodic": periodic,
        "window": {
            "seed": 7,
            "level": 2,
            "channels": 2,
            "y0": -1,
            "x0": -2,
            "height": 2,
            "width": 3,
            "values_chw": [[[float(v) for v in row] for row in ch] for ch in win],
        },
    }


def dumps(ref: dict) -> str:
    """JSON with one record per line."""
    parts = []
    for k, v in ref.items():
        if isinstance(v, list):
            rows = ",\n".join("    " + json.dumps(r) for r in v)
            parts.append(f"  {json.dumps(k)}: [\n{rows}\n  ]")
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    sys.stdout.write(dumps(reference()))


if __name__ == "__main__":
    main()
