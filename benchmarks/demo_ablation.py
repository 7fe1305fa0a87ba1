"""The demo's ablation: the embedded main job (`claver-hf demo`) trained with each temporal design in turn.

All variants share one synthetic dataset (written once under `OUTPUT/data`), the demo's model size, recipe and
seed; only the KMT blocks' mask changes, or, for mean pooling (the control), the KMT blocks and temporal embedding
are removed (CLIP's frame embeddings averaged: blind to frame order by construction). For each variant it prints
top-1 on the in-distribution test split and on the held-out split (shapes and background kinds no training clip
shows), and on the held-out split the share of right directions within each time-reversed pair (of the videos
given a class of their own pair, the share given their own class: 0.5 is chance between the two directions,
all mean pooling can do) and over all pairs, and the wall-clock time of the run.

    python benchmarks/demo_ablation.py [--output-dir outputs/ablation] [--epochs E] [--variants kmta kmcta ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from machine import machine_description

from claver_hf.demo import DEMO_CLIPS_PER_CLASS, DEMO_EPOCHS, run_demo

VARIANTS = {
    "kmta": {"kronecker_mask": "kmta"},
    "kmcta": {"kronecker_mask": "kmcta"},
    "joint": {"kronecker_mask": "joint"},
    "divided": {"kronecker_mask": "divided"},
    "mean pooling": {"mean_pooling": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="outputs/ablation")
    parser.add_argument("--epochs", type=float, default=DEMO_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    output_dir = Path(args.output_dir)
    rows = []
    for name in args.variants:
        start = time.perf_counter()
        results = run_demo(
            output_dir / name.replace(" ", "_"),
            data_dir=output_dir / "data",
            epochs=args.epochs,
            seed=args.seed,
            progress=False,
            **VARIANTS[name],
        )
        heldout = results["heldout"]
        pairs = " | ".join(f"{accuracy:.2f}" for accuracy in heldout["pair_direction_accuracy"].values())
        rows.append(
            f"| {name} | {results['test']['top_1_accuracy']:.3f} | {heldout['top_1_accuracy']:.3f} | "
            f"{pairs} | {heldout['direction_accuracy']:.2f} | {time.perf_counter() - start:.0f} |"
        )
        print(rows[-1], flush=True)

    clips = "/".join(map(str, DEMO_CLIPS_PER_CLASS))
    print(f"\n{machine_description()}\n{args.epochs:g} epochs, clips per class (train/val/test) {clips}\n")
    print(
        "| variant | test top-1 | test top-5 | left / right | up / down | clockwise / anti | growing / shrinking "
        "| appearing / disappearing | direction | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
