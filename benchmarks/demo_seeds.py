"""The demo's robustness over seeds: the embedded main job (`claver-hf demo`) run once per seed, each seed drawing
its own dataset and initialisation, with the demo's model (KMTA) and, as the control, mean pooling on the same
dataset (no KMT blocks and no temporal embedding: blind to frame order by construction).

For each run it prints top-1 on the in-distribution test split and on the held-out split (shapes and background
kinds no training clip shows), both as the demo tests (each clip with its 8 label-mapped mirror images and
quarter turns, `DEMO_TEST_SYMMETRIES`), then held-out top-1 of the clip alone; the held-out accuracy of each
time-reversed pair (a video counts when it gets its own class) and the held-out share of right directions within
each pair (of the videos given a class of their own pair, the share given their own: 0.5 is chance), and the
wall-clock time; then the mean and the worst seed of each variant.

    python benchmarks/demo_seeds.py [--output-dir outputs/demo_seeds] [--seeds 0 1 2 3 4] [--variants kmta "mean pooling"]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import machine_description

from claver_hf.data.synthetic import HELDOUT_SPLIT
from claver_hf.demo import DEMO_CLIPS_PER_CLASS, DEMO_EPOCHS, evaluate_split, run_demo

VARIANTS = {"kmta": {"kronecker_mask": "kmta"}, "mean pooling": {"mean_pooling": True}}
PAIRS = ("left / right", "up / down", "clockwise / anti", "growing / shrinking", "appearing / disappearing")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="outputs/demo_seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=float, default=DEMO_EPOCHS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    output_dir = Path(args.output_dir)
    header = (
        "| variant | seed | test top-1 | held-out top-1 | held-out top-1, one view | "
        + " | ".join(f"{pair} (held out)" for pair in PAIRS)
        + " | "
        + " | ".join(f"{pair} direction" for pair in PAIRS)
        + " | seconds |"
    )
    rows, summary = [], {name: [] for name in args.variants}
    for seed in args.seeds:
        for name in args.variants:
            start = time.perf_counter()
            run_dir, data_dir = (
                output_dir / f"seed{seed}" / name.replace(" ", "_"),
                output_dir / f"seed{seed}" / "data",
            )
            results = run_demo(
                run_dir, data_dir=data_dir, epochs=args.epochs, seed=seed, progress=False, **VARIANTS[name]
            )
            seconds = time.perf_counter() - start
            heldout = results["heldout"]
            one_view = evaluate_split(
                run_dir / "model", data_dir, HELDOUT_SPLIT, False, symmetries=(), plot=False
            )
            summary[name].append(
                {
                    "seed": seed,
                    "test": results["test"]["top_1_accuracy"],
                    "heldout": heldout["top_1_accuracy"],
                    "heldout_one_view": one_view["top_1_accuracy"],
                    "pairs": list(heldout["reversed_pair_accuracy"].values()),
                    "directions": list(heldout["pair_direction_accuracy"].values()),
                    "seconds": seconds,
                }
            )
            row = summary[name][-1]
            rows.append(
                f"| {name} | {seed} | {row['test']:.3f} | {row['heldout']:.3f} | {row['heldout_one_view']:.3f} | "
                + " | ".join(f"{a:.2f}" for a in row["pairs"])
                + " | "
                + " | ".join(f"{a:.2f}" for a in row["directions"])
                + f" | {seconds:.0f} |"
            )
            print(rows[-1], flush=True)
            (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))

    clips = "/".join(map(str, DEMO_CLIPS_PER_CLASS))
    print(
        f"\n{machine_description()}\n{args.epochs:g} epochs, clips per class (train/val/test/heldout) {clips}\n"
    )
    print(header)
    print("|---|---:" + "|---:" * (4 + 2 * len(PAIRS)) + "|")
    print("\n".join(rows))
    print()
    for name, runs in summary.items():
        if not runs:
            continue
        for key in ("test", "heldout", "heldout_one_view"):
            values = [run[key] for run in runs]
            print(f"{name}: {key} top-1 mean {sum(values) / len(values):.3f}, worst {min(values):.3f}")
        worst_pair = min(min(run["pairs"]) for run in runs)
        print(f"{name}: worst held-out pair accuracy over seeds {worst_pair:.2f}")
        directions = [d for run in runs for d in run["directions"]]
        print(f"{name}: held-out pair directions from {min(directions):.2f} to {max(directions):.2f}")


if __name__ == "__main__":
    main()
