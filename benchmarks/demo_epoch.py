"""Where an epoch of the demo's training goes: clips decoded from their files at every epoch, as the demo did up
to generator v9, against clips decoded once into memory (`--cache_videos`), as it does now.

Writes the demo's dataset (or reuses `--data-dir`), builds the demo's model and training split for both, and
times in the same run, for each way of loading:

* **loading alone**: one epoch of the training split through the `DataLoader` (decode, sample, augment), no model;
* **one epoch of training**: the same, with the demo's model taking a training step (forward, backward, AdamW) on
  each batch of 16 clips; both start from the same weights.

The baseline loads with two worker processes and gives the model the one core they leave (the demo's former
setting, `demo.model_threads`); the cache loads in the main process and gives the model both cores. Prints
seconds per epoch (median of `--repeats`), the speed-up, and the time to build the cache, which a run pays once.

    python benchmarks/demo_epoch.py [--data-dir outputs/demo/data] [--steps 125] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import machine_description
from torch.utils.data import DataLoader

from claver_hf.data.synthetic import write_synthetic_dataset
from claver_hf.demo import DEMO_CLIPS_PER_CLASS, demo_arguments, model_threads
from claver_hf.training.collator import VideoClassificationCollator
from claver_hf.training.run import prepare_run


def _epoch_seconds(loader: DataLoader, model: torch.nn.Module | None, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if model is not None else None
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step == steps:
            break
        if model is not None:
            loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", help="a demo dataset folder (default: write one into a temporary folder)"
    )
    parser.add_argument("--steps", type=int, default=125, help="training steps per epoch (the demo's: 125)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    data_dir = args.data_dir
    if data_dir is None:
        train, validation, _, _ = DEMO_CLIPS_PER_CLASS
        data_dir = write_synthetic_dataset(
            Path(tempfile.mkdtemp()) / "data", num_train_per_class=train, num_val_per_class=validation,
            num_test_per_class=0, num_heldout_per_class=0, num_workers=2, progress=False,
        )["root"]  # fmt: skip

    settings = {"files, 2 workers": (False, 2), "cached, 0 workers": (True, 0)}
    plans, build_seconds = {}, {}
    for name, (cache, workers) in settings.items():
        model_args, data_args, training_args = demo_arguments(
            Path(tempfile.mkdtemp()), data_dir, num_workers=workers, progress=False
        )
        data_args.cache_videos = cache
        start = time.perf_counter()
        plans[name] = prepare_run(model_args, data_args, training_args)
        build_seconds[name] = time.perf_counter() - start
    initial = plans["files, 2 workers"].model.state_dict()

    results = {}
    for name, (_, workers) in settings.items():
        plan = plans[name]
        loader = DataLoader(
            plan.datasets["train"], batch_size=16, shuffle=True, num_workers=workers,
            collate_fn=VideoClassificationCollator(len(plan.id2label)),
        )  # fmt: skip
        with model_threads(workers):
            threads = torch.get_num_threads()
            loading = [_epoch_seconds(loader, None, args.steps) for _ in range(args.repeats)]
            training = []
            for _ in range(args.repeats):
                model = copy.deepcopy(plan.model)
                model.load_state_dict(initial)
                training.append(_epoch_seconds(loader, model.train(), args.steps))
        results[name] = (threads, statistics.median(loading), statistics.median(training))

    print(f"\n{machine_description()}\n{args.steps} steps of 16 clips per epoch, median of {args.repeats}\n")
    print("| loading | model threads | loading alone (s/epoch) | training (s/epoch) | run set-up (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, (threads, loading, training) in results.items():
        print(f"| {name} | {threads} | {loading:.1f} | {training:.1f} | {build_seconds[name]:.1f} |")
    (_, base_loading, base_training), (_, loading, training) = results.values()
    print(
        f"\nspeed-up of the cache: loading {base_loading / loading:.1f}x, training epoch {base_training / training:.2f}x"
    )


if __name__ == "__main__":
    main()
