"""Quality along one training: is it still improving, or swinging from checkpoint to checkpoint?

    python bench/training_trajectory.py TEXTURE [--set KEY=VALUE ...] [--marks 10] [--label NAME]

Trains one generator (TrainConfig defaults changed by `--set`, as bench/generator_quality.py
takes them) on a yardstick texture with one torch thread, checkpointing `--marks` times. At each
checkpoint the network alone (folded; its weight average when `ema` is set) paints two 256^2
samples, scored like the yardstick (debiased patch OT, 1000 patches x 3 draws, 4 levels) and
printed as ratios to the cached `synth` score, beside the mean training loss since the last mark.
Sample pictures go to out/trajectory/LABEL/TEXTURE_ITERATION.png.

One final score per model hides how much a run swings: on pebbles the default's ratio went
2.9 -> 5.3 -> 4.7 -> 3.2 -> 4.0 -> 1.6 -> 2.3 over its last 900 iterations (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from generator_quality import exemplar_path, parse_sets, synth_row, train_config  # noqa: E402


def network_at(checkpoint: Path, cfg):
    """The folded network as checkpointed (its weight average when the run keeps one)."""
    import torch

    from train.checkpoint import load_checkpoint
    from train.generator import TextureGenerator, fold

    ckpt = load_checkpoint(checkpoint)
    model = TextureGenerator(cfg.gen)
    model.load_state_dict(ckpt["model"])
    if "ema" in ckpt:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(ckpt["ema"][name])
    return fold(model.eval())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("texture")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--marks", type=int, default=10, help="checkpoints scored along the run")
    p.add_argument("--label", default="default", help="names the picture folder")
    args = p.parse_args()

    import torch

    from tilegen.evaluator import Evaluator
    from tilegen.imageio import read_image, write_image
    from train.train_generator import for_exemplar, sample, train

    torch.set_num_threads(1)
    exemplar = read_image(exemplar_path(args.texture))
    synth = synth_row(args.texture, 1)["synth"]
    cfg = for_exemplar(train_config(parse_sets(args.sets)), exemplar)
    every = max(cfg.iters // args.marks, 1)
    score = Evaluator(exemplar, n=1000)
    pictures = ROOT / "out" / "trajectory" / args.label
    pictures.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "run.ckpt"

        def report(it: int) -> None:
            net = network_at(checkpoint, cfg)
            images = [sample(net, 256, 256, seed) for seed in range(2)]
            write_image(pictures / f"{args.texture}_{it}.png", images[0])
            ratios = [score(im)["debiased"] / synth for im in images]
            loss = sum(losses[-every:]) / len(losses[-every:])
            print(
                f"{args.label} {args.texture} it {it:5d} loss {loss:10.4g} ratio to synth "
                + " ".join(f"{r:.2f}" for r in ratios),
                flush=True,
            )

        def on_step(it: int, loss: float, image) -> None:
            losses.append(loss)
            if it > every and (it - 1) % every == 0:  # the checkpoint of it - 1 is on disk
                report(it - 1)

        t = time.perf_counter()
        train(exemplar, cfg, checkpoint=checkpoint, checkpoint_every=every, on_step=on_step)
        report(cfg.iters)
    print(f"{args.label} {args.texture}: {time.perf_counter() - t:.0f} s, settings {args.sets}")


if __name__ == "__main__":
    main()
