"""Paint a texture from a self-contained tilegen model with plain onnxruntime + numpy + Pillow.

No tilegen needed: the model computes its own noise (docs/NOISE.md) and returns the tile at
(seed, y0, x0). Tiles at any origins (negative ones too) fit together seamlessly, so a larger
image is just tiles laid side by side. Node twin: plain_onnxruntime.mjs.

    tilegen export MODEL.pt -o tile.onnx --self-contained [--tile 256 256]
    python examples/plain_onnxruntime.py tile.onnx texture.png --seed 7 --tiles 2 3

The contract this relies on (docs/FORMAT.md): inputs seed, y0, x0 (int64 scalars, shape []) and,
in the dynamic form, height, width, period_y, period_x; output "image" float32 [1, C, H, W],
values in metadata tilegen.value_range (clip, then quantise: section 7), channel order in
tilegen.channels, the fixed form's tile size in tilegen.tile.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime as ort
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a self-contained tilegen .onnx file")
    ap.add_argument("output", help="PNG to write")
    ap.add_argument("--seed", type=int, default=0, help="texture seed, 0 <= seed < 2**32")
    ap.add_argument("--origin", type=int, nargs=2, default=(0, 0), metavar=("Y", "X"))
    ap.add_argument("--tiles", type=int, nargs=2, default=(2, 2), metavar=("ROWS", "COLS"))
    ap.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(256, 256),
        metavar=("H", "W"),
        help="tile size (dynamic form; the fixed form has its own)",
    )
    ap.add_argument(
        "--period",
        type=int,
        nargs=2,
        default=(0, 0),
        metavar=("PY", "PX"),
        help="output period (dynamic form; 0 0: not periodic)",
    )
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    if meta.get("tilegen.form") != "self-contained":
        raise SystemExit(f"{args.model}: not a self-contained tilegen model")
    dynamic = "tilegen.tile" not in meta
    th, tw = args.size if dynamic else json.loads(meta["tilegen.tile"])
    lo, hi = json.loads(meta.get("tilegen.value_range", "[0, 1]"))
    channels = meta.get("tilegen.channels", "RGB")

    rows, cols = args.tiles
    y0, x0 = args.origin
    image = np.zeros((th * rows, tw * cols, len(channels)), np.float32)
    for r in range(rows):
        for c in range(cols):
            feed = {
                "seed": np.array(args.seed, np.int64),
                "y0": np.array(y0 + r * th, np.int64),
                "x0": np.array(x0 + c * tw, np.int64),
            }
            if dynamic:
                sizes = {"height": th, "width": tw, "period_y": args.period[0]}
                sizes["period_x"] = args.period[1]
                feed |= {k: np.array(v, np.int64) for k, v in sizes.items()}
            tile = sess.run(["image"], feed)[0][0]  # (C, th, tw)
            image[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile.transpose(1, 2, 0)

    unit = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    pixels = np.rint(unit * 255).astype(np.uint8)
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(args.output)
    period = meta.get("tilegen.period") or (args.period if dynamic and args.period[0] else None)
    print(
        f"wrote {args.output}: {image.shape[0]}x{image.shape[1]} {channels}, seed {args.seed}, "
        f"{rows}x{cols} tiles of {th}x{tw}" + (f", periodic {period}" if period else "")
    )


if __name__ == "__main__":
    main()
