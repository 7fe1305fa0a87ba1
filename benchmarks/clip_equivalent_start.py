"""Does a CLIP-equivalent start (`zero_init_temporal`) shorten the early plateau of fine-tuning from CLIP weights?

No pretrained CLIP can be downloaded here, so the demo's own pretraining stands in for it: the demo's small model
with mean pooling (no KMT blocks, no temporal embedding: a per-frame image-text CLIP whose frame embeddings are
averaged over time) is trained on the demo's synthetic dataset and saved as a transformers `CLIPModel` checkpoint
with its tokenizer. Such a model tells the motion pairs apart (moving left or right, ...) but not the direction
within a pair, which needs frame order.

Then, in this same process, a KMTA CLAVER is fine-tuned from that checkpoint twice with the demo's recipe, seed and
data, differing only in how the temporal parts start: the paper's random initialisation, and `zero_init_temporal`
(each KMT block the identity and the temporal embedding zero, so fine-tuning starts from exactly the pretrained
model's scores). For each it prints validation top-1 before training and after every epoch, the mean training
loss of every epoch, the first epoch at which validation top-1 reaches the threshold, and the final test top-1.

    python benchmarks/clip_equivalent_start.py [--output-dir outputs/clip_equivalent_start] [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import machine_description
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from claver_hf import ClaverForVideoClassification, ClaverProcessor
from claver_hf.demo import DEMO_EPOCHS, demo_arguments, model_threads, run_demo
from claver_hf.training import run

STARTS = {"paper's random init": False, "zero_init_temporal": True}


def save_as_clip(mean_pooling_model: Path, output: Path) -> Path:
    """The mean-pooling CLAVER (whose weights are exactly a CLIP's) as a `CLIPModel` folder with its tokenizer."""
    claver = ClaverForVideoClassification.from_pretrained(mean_pooling_model).claver
    config = claver.config

    def clip_fields(sub_config, clip_class) -> dict:
        return {k: v for k, v in sub_config.to_dict().items() if k in clip_class.__dataclass_fields__}

    clip = CLIPModel(
        CLIPConfig(
            text_config=clip_fields(config.text_config, CLIPTextConfig),
            vision_config=clip_fields(config.vision_config, CLIPVisionConfig),
            projection_dim=config.projection_dim,
        )
    )
    clip.load_state_dict(claver.state_dict(), strict=True)
    clip.save_pretrained(output)
    ClaverProcessor.from_pretrained(mean_pooling_model).tokenizer.save_pretrained(output)
    return output


def fine_tune(clip: Path, data: Path, output: Path, zero_init: bool, epochs: float, seed: int) -> dict:
    model, data_args, training = demo_arguments(output, data, epochs=epochs, seed=seed, progress=False)
    model.model_name_or_path = str(clip)
    model.tokenizer_name_or_path = None  # the checkpoint's own
    model.config_overrides = json.dumps(
        {
            "vision_config": {
                "kmt_num_hidden_layers": 2,
                "use_temporal_embedding": True,
                "zero_init_temporal": zero_init,
            },
            "num_text_views_per_step": 3,
        }
    )
    training.eval_on_start = True
    with model_threads(training.dataloader_num_workers):
        return run(model, data_args, training)


def curves(results: dict) -> tuple[list[float], list[float]]:
    """Validation top-1 at each evaluation (before training, then after every epoch) and mean training loss per
    epoch, from the run's log history."""
    history = results["log_history"]
    # The run's closing evaluation repeats the last epoch's (same step): one value per step.
    by_step = {
        entry["step"]: entry["eval_top_1_accuracy"] for entry in history if "eval_top_1_accuracy" in entry
    }
    accuracy = [by_step[step] for step in sorted(by_step)]
    losses: dict[int, list[float]] = {}
    for entry in history:
        if "loss" in entry:
            losses.setdefault(int(entry["epoch"] - 1e-6), []).append(entry["loss"])
    return accuracy, [sum(values) / len(values) for _, values in sorted(losses.items())]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="outputs/clip_equivalent_start")
    parser.add_argument("--pretrain-epochs", type=float, default=DEMO_EPOCHS)
    parser.add_argument("--epochs", type=float, default=12, help="fine-tuning epochs of each start")
    parser.add_argument("--threshold", type=float, default=0.9, help="validation top-1 that ends the plateau")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    output = Path(args.output_dir)

    start = time.perf_counter()
    pretrained = run_demo(
        output / "pretrain", data_dir=output / "data", mean_pooling=True, epochs=args.pretrain_epochs,
        seed=args.seed, progress=False,
    )  # fmt: skip
    clip = save_as_clip(output / "pretrain" / "model", output / "clip")
    print(
        f"pretraining (mean pooling, {args.pretrain_epochs:g} epochs): test top-1 "
        f"{pretrained['test']['top_1_accuracy']:.3f}, direction {pretrained['direction_accuracy']:.2f} "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )

    rows, reached = [], {}
    for name, zero_init in STARTS.items():
        start = time.perf_counter()
        results = fine_tune(clip, output / "data", output / name.replace(" ", "_").replace("'", ""), zero_init,
                            args.epochs, args.seed)  # fmt: skip
        accuracy, losses = curves(results)
        reached[name] = next((epoch for epoch, value in enumerate(accuracy) if value >= args.threshold), None)
        rows.append(
            f"| {name} | {' '.join(f'{value:.2f}' for value in accuracy)} | {' '.join(f'{v:.2f}' for v in losses)} | "
            f"{reached[name] if reached[name] is not None else 'not reached'} | {results['test']['top_1_accuracy']:.3f} | "
            f"{time.perf_counter() - start:.0f} |"
        )
        print(rows[-1], flush=True)

    print(f"\n{machine_description()}\nfine-tuning {args.epochs:g} epochs per start, seed {args.seed}\n")
    print(
        "| start | validation top-1: before training, after each epoch | mean training loss per epoch | "
        f"first epoch with validation top-1 >= {args.threshold} | test top-1 | seconds |"
    )
    print("|---|---|---|---:|---:|---:|")
    print("\n".join(rows))
    random_start, zero_start = (reached[name] for name in STARTS)
    if random_start is not None and zero_start:
        print(f"\nepochs to {args.threshold}: zero_init_temporal / random = {zero_start / random_start:.2f}x")


if __name__ == "__main__":
    main()
