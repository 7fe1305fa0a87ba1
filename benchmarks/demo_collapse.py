"""How the demo's training reaches chance in its first steps: the demo's model and recipe (AdamW, the demo's
learning rates and warm-up over a 22-epoch schedule of 2,000 clips) trained for a few steps on in-memory clips
(as in `demo_plateau.py`), logging every 10 steps the training loss, the mean cosine between the ten classes'
text features (averaged over their prompts), the mean cosine between the embeddings of 40 validation videos, the
spread of the logits over classes and top-1 on those videos.

    python benchmarks/demo_collapse.py '{}' '{"vision": {"initializer_range": 0.1}}' '{"balanced": true}'

A change is JSON as in `demo_plateau.py` (``vision`` / ``top``, ``lr``, ``text_lr``, ``steps``, ``seed``), plus
``balanced`` (batches of 2 clips per class instead of 16 at random).
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from demo_plateau import _split
from transformers import get_linear_schedule_with_warmup

from claver_hf import demo
from claver_hf.data.synthetic import SYNTHETIC_CLASSES, write_synthetic_dataset
from claver_hf.training.optim import claver_parameter_groups

run_module = importlib.import_module("claver_hf.training.run")
TOTAL_STEPS = 22 * 2000 // 16  # the demo's schedule, which sets the warm-up's length


def _mean_cosine(features: torch.Tensor) -> float:
    features = torch.nn.functional.normalize(features, dim=-1)
    similarity, count = features @ features.T, len(features)
    return float((similarity.sum() - similarity.diagonal().sum()) / (count * count - count))


def probe(change: dict, train: tuple, validation: tuple, lists: Path) -> None:
    config = json.loads(json.dumps(demo.DEMO_MODEL_CONFIG))
    config["vision_config"].update(change.get("vision", {}))
    config.update(change.get("top", {}))
    saved, demo.DEMO_MODEL_CONFIG = demo.DEMO_MODEL_CONFIG, config
    try:
        arguments = demo.demo_arguments(
            lists / "out", lists, seed=change.get("seed", 0), num_workers=0, progress=False
        )
    finally:
        demo.DEMO_MODEL_CONFIG = saved
    model = run_module.prepare_run(*arguments).model
    groups = claver_parameter_groups(model, change.get("lr", 1e-3), 0.01, 1.0, change.get("text_lr", 0.1))
    optimizer = torch.optim.AdamW(groups)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.05 * TOTAL_STEPS), TOTAL_STEPS)
    pixels, labels = train
    generator = torch.Generator().manual_seed(change.get("seed", 0))
    order = torch.randperm(len(labels), generator=generator)
    probe_videos = torch.arange(0, len(validation[1]), max(1, len(validation[1]) // 40))
    probe_pixels = validation[0][probe_videos][:, torch.arange(8) * 2 + 1].float()
    losses = []
    print(json.dumps(change))
    for step in range(change.get("steps", 60)):
        if change.get("balanced"):
            per_class = len(labels) // len(SYNTHETIC_CLASSES)
            index = torch.cat(
                [
                    torch.nonzero(labels == label).flatten()[
                        torch.randint(0, per_class, (2,), generator=generator)
                    ]
                    for label in range(len(SYNTHETIC_CLASSES))
                ]
            )
        else:
            start = step * 16 % len(labels)
            index = order[start : start + 16]
        frames = torch.arange(8) * 2 + torch.randint(0, 2, (8,), generator=generator)
        model.train()
        loss = model(pixel_values=pixels[index][:, frames].float(), labels=labels[index]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                text = model.bank_text_features().mean(0)
                videos = model.claver.get_video_features(pixel_values=probe_pixels).pooler_output
                logits = model(pixel_values=probe_pixels).logits
            accuracy = float((logits.argmax(1) == validation[1][probe_videos]).float().mean())
            print(
                f"step {step + 1}: loss {np.mean(losses[-10:]):.3f}, text cosine {_mean_cosine(text):.4f}, "
                f"video cosine {_mean_cosine(videos):.4f}, logit spread {float(logits.std(1).mean()):.3f}, "
                f"top-1 {accuracy:.2f}",
                flush=True,
            )


def main() -> None:
    changes = [json.loads(argument) for argument in sys.argv[1:]] or [{}]
    torch.set_num_threads(2)
    train, validation = _split(100, 0), _split(20, 1)
    with tempfile.TemporaryDirectory() as folder:
        lists = Path(folder)
        write_synthetic_dataset(
            lists, num_train_per_class=1, num_val_per_class=1, num_test_per_class=0, num_heldout_per_class=0,
            size=32, num_frames=8, progress=False,
        )  # fmt: skip
        for change in changes:
            probe(change, train, validation, lists)


if __name__ == "__main__":
    main()
