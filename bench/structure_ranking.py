"""Does the structure figure rank what it should? Real pieces < 32-px block shuffle < 16-px
block shuffle and a sigma = 2 blur, on every yardstick texture (issue #32, item 1).

    python bench/structure_ranking.py [--textures NAME ...] [--count 6] [--size 256]

Per texture: the structure scorer of `train.structure` (24 reference pieces, seed 0),
then `count` other real pieces (cut from another stream) scored as images, and the same pieces
cut into b x b blocks put back in a random order (b = 32, 16), and blurred (sigma = 2, the
evaluate module's blur). Prints the median of each row and whether the order holds for the
medians (and for every piece: each piece's 32-shuffle above the median real piece, and so on).
Rows go to out/structure_ranking.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.generator_quality import YARDSTICK, exemplar_path  # noqa: E402
from tilegen.baselines import gaussian_blur, real_pieces  # noqa: E402
from tilegen.imageio import read_image  # noqa: E402
from train.structure import StructureScorer, shuffle_blocks  # noqa: E402


def rank_texture(name: str, size: int, count: int, seed: int = 0) -> dict:
    exemplar = read_image(exemplar_path(name))
    scorer = StructureScorer(exemplar, size, size, seed=seed)
    others = real_pieces(exemplar, size, size, count, [seed, 2])
    rng = np.random.default_rng([seed, 3])
    rows = {
        "real piece": scorer.many(others),
        "32-px shuffle": scorer.many([shuffle_blocks(p, 32, rng) for p in others]),
        "16-px shuffle": scorer.many([shuffle_blocks(p, 16, rng) for p in others]),
        "blur sigma=2": scorer.many([gaussian_blur(p, 2.0) for p in others]),
    }
    med = {k: float(np.median(v)) for k, v in rows.items()}
    order = (
        med["real piece"] < med["32-px shuffle"] < min(med["16-px shuffle"], med["blur sigma=2"])
    )
    return {"texture": name, "rows": rows, "median": med, "order": bool(order)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--textures", nargs="+", default=YARDSTICK)
    p.add_argument("--count", type=int, default=6, help="other real pieces per texture")
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = ROOT / "out" / "structure_ranking.jsonl"
    out.parent.mkdir(exist_ok=True)
    lines = [
        "| texture | real piece | 32-px shuffle | 16-px shuffle | blur σ=2 | order holds |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in args.textures:
        t = time.perf_counter()
        r = rank_texture(name, args.size, args.count)
        r["seconds"] = time.perf_counter() - t
        with open(out, "a") as f:
            f.write(json.dumps(r) + "\n")
        m = r["median"]
        cells = " | ".join(f"{m[k]:.2f} ({min(v):.2f}-{max(v):.2f})" for k, v in r["rows"].items())
        lines.append(f"| {name} | {cells} | {'yes' if r['order'] else 'NO'} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
