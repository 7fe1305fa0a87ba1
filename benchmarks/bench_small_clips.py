"""Benchmark the per-clip overheads that dominate loading small clips (the demo's 64x64, 16-frame H.264 files).

Writes synthetic-dataset clips into a temporary folder and times, in the same run, each change against the
way it was done before:

* **RGB conversion** of the 8 frames `read_frames` returns: ours converts with one `VideoReformatter` per
  video; the baseline calls ``frame.to_ndarray(format="rgb24")`` on each decoded frame, which builds a new
  conversion context per frame. Both decode every frame of the file with PyAV and convert the same 8.
* **Item seeding**: ours seeds only torch's CPU generator (``torch.default_generator.manual_seed``), the
  baseline ``torch.manual_seed``, which also queues seeds for accelerators (recording a stack trace when none
  is initialised).
* **One training item** of the demo's dataset (decode, sample, augment, normalise), for reference.

Prints microseconds per call (median of ``--repeats`` rounds) and the speed-up ours / baseline.

    python benchmarks/bench_small_clips.py [--clips 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from machine import machine_description

from claver_hf.data.synthetic import write_synthetic_dataset
from claver_hf.processing.sampling import segment_indices
from claver_hf.training import ClaverTrainingArguments, DataTrainingArguments, ModelArguments
from claver_hf.training.run import prepare_run


def _decode_and_convert(
    path: Path, wanted: set[int], reformatter: VideoReformatter | None
) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = []
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                if reformatter is None:
                    frames.append(frame.to_ndarray(format="rgb24"))
                else:
                    frames.append(reformatter.reformat(frame, format="rgb24").to_ndarray())
        return frames


def _median_us(function: Callable[[], object], calls: int, repeats: int) -> float:
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=40, help="clips written (4 per class)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as folder:
        per_class = max(1, args.clips // 10)
        write_synthetic_dataset(folder, num_train_per_class=per_class, num_val_per_class=1, num_test_per_class=1, progress=False)  # fmt: skip
        paths = sorted(Path(folder, "train").rglob("*.mp4"))
        wanted = set(segment_indices(16, 8, training=False))
        for path in paths:  # same frames both ways
            reference = _decode_and_convert(path, wanted, None)
            np.testing.assert_array_equal(reference, _decode_and_convert(path, wanted, VideoReformatter()))

        def conversion(reuse: bool) -> Callable[[], object]:
            return lambda: [
                _decode_and_convert(p, wanted, VideoReformatter() if reuse else None) for p in paths
            ]

        rows = [
            (
                "decode + RGB of 8 frames, per clip",
                _median_us(conversion(True), 1, args.repeats) / len(paths),
                _median_us(conversion(False), 1, args.repeats) / len(paths),
            ),
            (
                "seeding an item",
                _median_us(lambda: torch.default_generator.manual_seed(1234), 200, args.repeats),
                _median_us(lambda: torch.manual_seed(1234), 200, args.repeats),
            ),
        ]

        plan = prepare_run(
            ModelArguments(config_overrides='{"vision_config": {"image_size": 32, "patch_size": 8}}'),
            DataTrainingArguments(dataset_dir=folder, prompt_bank="synthetic", num_frames=8, image_size=32, train_short_side=36),
            ClaverTrainingArguments(output_dir=str(Path(folder, "out")), use_cpu=True, report_to="none"),
        )  # fmt: skip
        train = plan.datasets["train"]
        item = _median_us(lambda: [train[i] for i in range(len(train))], 1, args.repeats) / len(train)

    print(f"{machine_description()}\n{len(paths)} synthetic clips (64x64, 16 frames, H.264), one thread\n")
    print("| step | ours (us) | baseline (us) | speed-up |\n|---|---:|---:|---:|")
    for name, ours, baseline in rows:
        print(f"| {name} | {ours:.0f} | {baseline:.0f} | {baseline / ours:.2f}x |")
    print(f"\nOne training item of the demo's dataset (ours, for reference): {item:.0f} us")


if __name__ == "__main__":
    main()
