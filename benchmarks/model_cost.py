"""Parameter counts and forward FLOPs of the paper's backbones at 8, 16 and 32 frames.

Counted with `torch.utils.flop_counter.FlopCounterMode` on the meta device (no weights are allocated, so
it runs in seconds on any machine). Figures are FLOPs: a multiply-add counts as 2. Divide by 2 for MACs.

    python benchmarks/model_cost.py [--frames 8 16 32] [--mask kmta kmcta]
"""

from __future__ import annotations

import argparse

from claver_hf import CLAVER_PRESETS, preset_config
from claver_hf.modeling.cost import measure_cost


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--mask", nargs="+", default=["kmta", "kmcta"], help="Kronecker mask types to count")
    args = parser.parse_args()

    print(
        "| backbone | mask | frames | params (M) | temporal params (M) | video GFLOPs | of which KMT | text GFLOPs / prompt |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for backbone in CLAVER_PRESETS:
        for mask in args.mask:
            for frames in args.frames:
                cost = measure_cost(preset_config(backbone, num_frames=frames, kronecker_mask=mask), frames)
                print(
                    f"| {backbone} | {mask} | {frames} | {cost.parameters / 1e6:.1f} | "
                    f"{cost.temporal_parameters / 1e6:.1f} | {cost.video_flops / 1e9:.1f} | "
                    f"{cost.temporal_flops / 1e9:.1f} | {cost.text_flops_per_prompt / 1e9:.2f} |"
                )


if __name__ == "__main__":
    main()
