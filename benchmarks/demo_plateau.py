"""Where the demo's training sits at chance: the demo's model and recipe trained on clips held in memory (rendered
by the synthetic generator, downsampled to the model's 32x32 frames, no MP4 round trip or decoding), so that a
change to the recipe can be tried in minutes instead of the demo's full run.

Each run prints the recipe change it made, validation top-1 (in-distribution) and held-out top-1 after every
epoch, and its wall-clock time. Changes are given as JSON: ``vision`` / ``top`` (fields of the demo's model
config), ``train`` / ``model`` / ``data`` (training-, model- and data-argument fields), ``mean_pooling``, ``epochs``,
``seed``, ``per_class`` (training clips per class; validation and held-out: 20). For example::

    python benchmarks/demo_plateau.py '{"epochs": 6}' '{"epochs": 6, "model": {"freeze_text_encoder": true}}'

Differences from the demo: frames are the rendered ones averaged 2x2 (the demo decodes H.264 and resizes, then crops
32 of 36 pixels at random), training samples one frame at random from each pair of frames (TSN), and the
generator's seed is fixed (99).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from claver_hf import demo
from claver_hf.data.synthetic import SYNTHETIC_CLASSES, render_clip, write_synthetic_dataset
from claver_hf.training.collator import VideoClassificationCollator
from claver_hf.training.metrics import compute_metrics
from claver_hf.training.trainer import ClaverTrainer

# `claver_hf.training` exports the function `run`, which shadows its module of the same name.
run_module = importlib.import_module("claver_hf.training.run")
MEAN = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)


def _clip(job: tuple[str, tuple[int, ...], bool]) -> np.ndarray:
    """(16, 32, 32, 3) uint8: a 64x64 clip averaged over 2x2 pixels (runs in worker processes, numpy only)."""
    name, seed, heldout = job
    frames = render_clip(name, np.random.default_rng(seed), 16, 64, heldout=heldout).astype(np.float32)
    return frames.reshape(16, 32, 2, 32, 2, 3).mean((2, 4)).round().astype(np.uint8)


def _split(per_class: int, split_id: int, heldout: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    jobs = [
        (name, (99, split_id, label, index), heldout)
        for label, name in enumerate(SYNTHETIC_CLASSES)
        for index in range(per_class)
    ]
    # Spawned workers: forked ones can hang on locks torch's threads held in the parent.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        clips = np.stack(list(pool.map(_clip, jobs, chunksize=16)))
    pixels = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float() / 255
    labels = torch.arange(len(SYNTHETIC_CLASSES)).repeat_interleave(per_class)
    return ((pixels - MEAN) / STD).half(), labels


class InMemoryClips(torch.utils.data.Dataset):
    """8 of a clip's 16 frames: one at random from each pair (training) or the second of each (evaluation)."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, training: bool):
        self.pixels, self.labels, self.training = pixels, labels, training

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        offsets = torch.randint(0, 2, (8,)) if self.training else torch.ones(8, dtype=torch.long)
        return {
            "pixel_values": self.pixels[index, torch.arange(8) * 2 + offsets].float(),
            "labels": int(self.labels[index]),
        }


def train_once(change: dict, data: dict, workdir: Path) -> dict:
    config = json.loads(json.dumps(demo.DEMO_MODEL_CONFIG))
    saved = demo.DEMO_MODEL_CONFIG
    config["vision_config"].update(change.get("vision", {}))
    config.update(change.get("top", {}))
    demo.DEMO_MODEL_CONFIG = config
    try:
        model_args, data_args, training_args = demo.demo_arguments(
            workdir / "model", workdir / "lists", epochs=change.get("epochs", 6), seed=change.get("seed", 0),
            num_workers=0, progress=False, mean_pooling=change.get("mean_pooling", False),
        )  # fmt: skip
    finally:
        demo.DEMO_MODEL_CONFIG = saved
    for key, value in change.get("train", {}).items():
        setattr(training_args, key, value)
    for key, value in change.get("model", {}).items():
        setattr(model_args, key, value)
    for key, value in change.get("data", {}).items():
        setattr(data_args, key, value)
    training_args.logging_steps = 20
    plan = run_module.prepare_run(model_args, data_args, training_args)
    trainer = ClaverTrainer(
        model=plan.model, args=training_args, train_dataset=InMemoryClips(*data["train"], True),
        eval_dataset={"val": InMemoryClips(*data["val"], False), "held": InMemoryClips(*data["held"], False)},
        data_collator=VideoClassificationCollator(len(SYNTHETIC_CLASSES)), compute_metrics=compute_metrics,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    history = trainer.state.log_history
    return {
        "change": change,
        "validation": [
            round(h["eval_val_top_1_accuracy"], 3) for h in history if "eval_val_top_1_accuracy" in h
        ],
        "heldout": [
            round(h["eval_held_top_1_accuracy"], 3) for h in history if "eval_held_top_1_accuracy" in h
        ],
        "seconds": round(time.perf_counter() - start),
    }


def main() -> None:
    changes = [json.loads(argument) for argument in sys.argv[1:]] or [{}]
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        # prepare_run reads the class list and annotation lists of a dataset folder: a one-clip-per-class one.
        write_synthetic_dataset(
            workdir / "lists", num_train_per_class=1, num_val_per_class=1, num_test_per_class=0,
            num_heldout_per_class=0, size=32, num_frames=8, progress=False,
        )  # fmt: skip
        data = {}
        for per_class in sorted({change.get("per_class", 100) for change in changes}):
            data[per_class] = {
                "train": _split(per_class, 0),
                "val": _split(20, 1),
                "held": _split(20, 3, True),
            }
        for change in changes:
            print(json.dumps(train_once(change, data[change.get("per_class", 100)], workdir)), flush=True)


if __name__ == "__main__":
    main()
