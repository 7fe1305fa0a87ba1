"""Benchmark decoding video files into CLAVER's `pixel_values`: sparse seeking against decoding everything.

At run time the script writes 1280x720 H.264 clips of 10 s and 60 s into a temporary directory (libx264,
yuv420p, 30 fps, a key frame every 2 s: GOP 60 with ``keyint_min`` 60 and scene-cut key frames off, as in
web video; the content pans over a smooth random texture with fine detail, about 3 Mbit/s). For
``T = 8`` and ``T = 32`` frames sampled at the TSN segment centres over the whole clip
(`segment_indices(num_total_frames, T, training=False)`), it measures clips per second of producing
`pixel_values` with:

* **ours**: ``ClaverVideoProcessor()(path, num_frames=T)``: `probe_video`, then `read_frames`, which
  seeks to the key frame before each sampled frame when that decodes fewer frames, then the evaluation
  transforms (short side 224, centre crop 224, CLIP normalisation);
* **baseline**: ``transformers.video_utils.load_video(path, backend="pyav", sample_indices_fn=...)``
  returning the same indices, which decodes every frame from the start through the last sampled one,
  then the same processor on the decoded frames with ``do_sample_frames=False``, so that only the
  decoding differs.

Before timing, both paths are checked to sample the same indices and to give `pixel_values` of the same
shape and near-equal values at the first, middle and last sampled frames. The table gives clips per
second (median over ``--repeats`` rounds; in a round the two paths take turns, one call each, until each
has run for ``--min-time`` seconds, so that changing background load affects both alike), the speed-up
ours / baseline, the same ratio by process CPU time per clip (all threads; less affected than clips/s
when other processes share the machine), and the frames each path decodes per clip: ours from
`read_frames_with_stats` (the probe decodes one more); the baseline's loop decodes the last sampled
frame's index + 2 frames (it reads one frame past the last sampled one before stopping), or the whole
clip when that is shorter.
Targets (on clips/s): at least 2x the baseline for 8 frames of the 60-s clip, and at least 0.95x for
the 10-s clip and for 32 frames.

If `claver_hf.data.prepare.prepare_video` is importable, the clips are also re-encoded with it (short
side 256, a key frame every 16 frames) and the training path
``ClaverVideoProcessor()(path, num_frames=8, training=True)`` is timed on the original against the
prepared file, with the same random frame indices and augmentations on both: the global torch RNG is
seeded before each call, and every round covers at least the same 5 seeds, because the augmentations'
cost varies from call to call by more than the decoding costs (from tens of milliseconds to most of a
second per clip on a 2-core machine).

Run from the repository root (a few minutes; ``--quick`` is a smoke run of a few seconds on 640x360
clips of 4 s and 12 s with one repeat):

    python benchmarks/bench_decode.py
    python benchmarks/bench_decode.py --quick
    python benchmarks/bench_decode.py --preset veryfast   # CABAC, deblocking, B-frames: costlier decoding
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from machine import machine_description
from transformers.video_utils import VideoMetadata, load_video

from claver_hf.processing.sampling import segment_indices
from claver_hf.processing.video_processing_claver import ClaverVideoProcessor
from claver_hf.video_io import probe_video, read_frames_with_stats

FPS = 30
GOP = 60  # a key frame every 2 s
# Texture: Gaussian noise upsampled bicubically from 1/32 (large blobs) and 1/4 (fine detail) of the
# canvas size, with these grey-level amplitudes; about 3 Mbit/s at 720p with the ultrafast preset.
TEXTURE_OCTAVES = ((32, 60.0), (4, 6.0))
# `pixel_values` are normalised by CLIP's std (about 0.27): 0.03 is about two grey levels.
PIXEL_TOLERANCE = 0.03
TRAINING_FRAMES = 8
# Turns (random seeds 0, 1, ...) each round of the training path covers at least, so that rounds and
# clips share the same mix of augmentations; also the draws the frames decoded per clip are averaged over.
TRAINING_DRAWS = 5


@dataclass(frozen=True)
class Clip:
    """A benchmark input written by `write_clip`."""

    path: Path
    seconds: int
    num_frames: int
    width: int
    height: int

    def describe(self) -> str:
        megabits = self.path.stat().st_size * 8 / 1e6
        return (
            f"{self.seconds:>3} s: {self.width}x{self.height}, {self.num_frames} frames, "
            f"{megabits / self.seconds:.1f} Mbit/s ({self.path.name})"
        )


@dataclass(frozen=True)
class Rate:
    """How fast one path ran: medians over the rounds of `measure`."""

    clips_per_s: float  # wall clock
    cpu_s: float  # process CPU time per clip, all threads: less affected by other processes than wall clock

    def speedup_over(self, baseline: Rate) -> tuple[float, float]:
        """How many times faster than `baseline`: by wall clock, and by CPU time per clip."""
        return self.clips_per_s / baseline.clips_per_s, baseline.cpu_s / self.cpu_s


@dataclass(frozen=True)
class EvalResult:
    """Ours against the baseline for one clip and number of sampled frames."""

    seconds: int
    num_frames: int
    ours: Rate
    baseline: Rate
    ours_decoded: int
    baseline_decoded: int
    max_abs_diff: float  # between the two paths' pixel_values at the checked frames

    @property
    def speedups(self) -> tuple[float, float]:
        return self.ours.speedup_over(self.baseline)


@dataclass(frozen=True)
class TrainingResult:
    """The training path on an original clip against its `prepare_video` re-encoding."""

    seconds: int
    prepare_s: float
    original: Rate
    prepared: Rate
    original_decoded: float  # frames per clip, mean over TRAINING_DRAWS index draws
    prepared_decoded: float

    @property
    def speedups(self) -> tuple[float, float]:
        return self.prepared.speedup_over(self.original)


def textured_canvas(width: int, height: int) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB smooth random texture with fine detail (see TEXTURE_OCTAVES)."""
    generator = torch.Generator().manual_seed(0)
    canvas = torch.full((3, height, width), 128.0)
    for scale, amplitude in TEXTURE_OCTAVES:
        noise = torch.randn(1, 3, height // scale, width // scale, generator=generator)
        canvas += (
            amplitude * F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0]
        )
    return canvas.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def write_clip(path: Path, seconds: int, width: int, height: int, preset: str) -> Clip:
    """Encode `seconds` of a camera pan over a texture twice the frame size (see the module docstring)."""
    canvas = textured_canvas(2 * width, 2 * height)
    num_frames = seconds * FPS
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.codec_context.options = {"keyint_min": str(GOP), "sc_threshold": "0", "preset": preset}
        for index in range(num_frames):
            left = round(width / 2 * (1 + np.sin(index / 90)))
            top = round(height / 2 * (1 + np.sin(index / 70)))
            window = np.ascontiguousarray(canvas[top : top + height, left : left + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(window, format="rgb24")))
        container.mux(stream.encode())
    return Clip(path, seconds, num_frames, width, height)


def measure(
    calls: dict[str, Callable[[], Any]], repeats: int, min_time: float, min_turns: int = 1
) -> dict[str, Rate]:
    """Each call's `Rate`: calls per second and CPU seconds per call, medians over `repeats` rounds.

    In a round the calls take turns, one call each per turn, until each has run for `min_time` seconds in
    total and there have been `min_turns` turns: they run equally often, and changing background load
    affects them alike. Before turn ``k`` of every round the global torch RNG is seeded with ``k``, so the
    training path draws the same frame indices and augmentations for every call and in every round.
    """
    rates: dict[str, list[float]] = {name: [] for name in calls}
    cpu_times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        spent = dict.fromkeys(calls, 0.0)
        cpu_spent = dict.fromkeys(calls, 0.0)
        turns = 0
        while min(spent.values()) < min_time or turns < min_turns:
            for name, call in calls.items():
                torch.manual_seed(turns)
                start, cpu_start = time.perf_counter(), time.process_time()
                call()
                spent[name] += time.perf_counter() - start
                cpu_spent[name] += time.process_time() - cpu_start
            turns += 1
        for name in calls:
            rates[name].append(turns / spent[name])
            cpu_times[name].append(cpu_spent[name] / turns)
    return {name: Rate(statistics.median(rates[name]), statistics.median(cpu_times[name])) for name in calls}


def eval_indices(num_total_frames: int, num_frames: int) -> list[int]:
    return segment_indices(num_total_frames, num_frames, training=False)


def baseline_decode(path: Path, num_frames: int) -> tuple[np.ndarray, list[int]]:
    """Frames decoded by `transformers.video_utils.load_video` at the TSN segment centres, and the indices."""

    def sample_indices_fn(metadata: VideoMetadata, **kwargs: Any) -> list[int]:
        return eval_indices(metadata.total_num_frames, num_frames)

    frames, metadata = load_video(str(path), backend="pyav", sample_indices_fn=sample_indices_fn)
    return frames, list(metadata.frames_indices)


def ours(processor: ClaverVideoProcessor, path: Path, num_frames: int) -> torch.Tensor:
    return processor(str(path), num_frames=num_frames, return_tensors="pt")["pixel_values"]


def baseline(processor: ClaverVideoProcessor, path: Path, num_frames: int) -> torch.Tensor:
    frames, _ = baseline_decode(path, num_frames)
    return processor(frames, do_sample_frames=False, return_tensors="pt")["pixel_values"]


def check_same_frames(processor: ClaverVideoProcessor, clip: Clip, num_frames: int) -> float:
    """Assert that both paths sample the same indices and give matching `pixel_values`; the largest
    difference at the first, middle and last sampled frames."""
    indices = eval_indices(probe_video(clip.path).num_frames, num_frames)
    _, baseline_indices = baseline_decode(clip.path, num_frames)
    assert baseline_indices == indices, f"baseline sampled {baseline_indices}, ours {indices}"
    ours_values = ours(processor, clip.path, num_frames)
    baseline_values = baseline(processor, clip.path, num_frames)
    assert ours_values.shape == baseline_values.shape, (ours_values.shape, baseline_values.shape)
    checked = sorted({0, num_frames // 2, num_frames - 1})
    difference = float((ours_values[:, checked] - baseline_values[:, checked]).abs().max())
    assert difference <= PIXEL_TOLERANCE, (
        f"{clip.path.name}, T={num_frames}: pixel_values differ by {difference}"
    )
    return difference


def frames_decoded_by_ours(path: Path, indices: Sequence[int]) -> int:
    return read_frames_with_stats(path, indices)[1].num_decoded_frames


def run_eval(
    processor: ClaverVideoProcessor, clip: Clip, num_frames: int, repeats: int, min_time: float
) -> EvalResult:
    difference = check_same_frames(processor, clip, num_frames)  # also warms up both paths
    indices = eval_indices(clip.num_frames, num_frames)
    rates = measure(
        {
            "ours": lambda: ours(processor, clip.path, num_frames),
            "baseline": lambda: baseline(processor, clip.path, num_frames),
        },
        repeats,
        min_time,
    )
    return EvalResult(
        seconds=clip.seconds,
        num_frames=num_frames,
        ours=rates["ours"],
        baseline=rates["baseline"],
        ours_decoded=frames_decoded_by_ours(clip.path, indices),
        baseline_decoded=min(indices[-1] + 2, clip.num_frames),
        max_abs_diff=difference,
    )


def training_call(processor: ClaverVideoProcessor, path: Path) -> Callable[[], torch.Tensor]:
    """The training path on `path`; its frame indices and augmentations come from the global torch RNG."""

    def call() -> torch.Tensor:
        return processor(str(path), num_frames=TRAINING_FRAMES, training=True, return_tensors="pt")[
            "pixel_values"
        ]

    return call


def mean_training_decoded(path: Path) -> float:
    """Frames decoded per clip by ours for the indices of the first TRAINING_DRAWS turns of
    `measure` (the processor draws them first after the seeding)."""
    total = probe_video(path).num_frames
    decoded = []
    for turn in range(TRAINING_DRAWS):
        torch.manual_seed(turn)
        decoded.append(frames_decoded_by_ours(path, segment_indices(total, TRAINING_FRAMES, training=True)))
    return statistics.mean(decoded)


def run_training(
    processor: ClaverVideoProcessor, clips: Sequence[Clip], repeats: int, min_time: float
) -> list[TrainingResult] | None:
    """Training path on each clip against its `prepare_video` re-encoding; None if that is unavailable."""
    try:
        from claver_hf.data.prepare import prepare_video
    except ImportError as err:
        print(f"  skipped: claver_hf.data.prepare.prepare_video is not importable ({err}).")
        return None
    results = []
    for clip in clips:
        prepared = clip.path.with_name(f"{clip.path.stem}_prepared.mp4")
        start = time.perf_counter()
        prepare_video(clip.path, prepared)
        prepare_s = time.perf_counter() - start
        info = probe_video(prepared)
        megabits = prepared.stat().st_size * 8 / 1e6
        print(
            f"  prepared {clip.seconds:>3} s in {prepare_s:.1f} s: {info.width}x{info.height}, "
            f"{info.num_frames} frames, {megabits / info.duration:.1f} Mbit/s"
        )
        calls = {
            "original": training_call(processor, clip.path),
            "prepared": training_call(processor, prepared),
        }
        for call in calls.values():
            call()  # warm-up
        rates = measure(calls, repeats, min_time, min_turns=TRAINING_DRAWS)
        results.append(
            TrainingResult(
                seconds=clip.seconds,
                prepare_s=prepare_s,
                original=rates["original"],
                prepared=rates["prepared"],
                original_decoded=mean_training_decoded(clip.path),
                prepared_decoded=mean_training_decoded(prepared),
            )
        )
    return results


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Rows as a right-aligned text table, or as a markdown table."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---:|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in [headers, *rows]
    )


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print(
        f"\n{title}\n\n{table(headers, rows, markdown=False)}\n\nMarkdown:\n\n{table(headers, rows, markdown=True)}"
    )


def eval_rows(results: Sequence[EvalResult]) -> list[list[str]]:
    return [
        [
            f"{r.seconds} s",
            str(r.num_frames),
            f"{r.ours.clips_per_s:.2f}",
            f"{r.baseline.clips_per_s:.2f}",
            *(f"{speedup:.2f}x" for speedup in r.speedups),
            str(r.ours_decoded),
            str(r.baseline_decoded),
        ]
        for r in results
    ]


def training_rows(results: Sequence[TrainingResult]) -> list[list[str]]:
    return [
        [
            f"{r.seconds} s",
            f"{r.original.clips_per_s:.2f}",
            f"{r.prepared.clips_per_s:.2f}",
            *(f"{speedup:.2f}x" for speedup in r.speedups),
            f"{r.original_decoded:.0f}",
            f"{r.prepared_decoded:.0f}",
            f"{r.prepare_s:.1f}",
        ]
        for r in results
    ]


def targets(results: Sequence[EvalResult]) -> list[tuple[str, bool]]:
    """(description, met) for each target, a least speed-up: 2x for the fewest frames of the longest clip
    (when clips of several lengths are measured), 0.95x for every case of the shortest clip and for the most
    frames."""
    lengths = {r.seconds for r in results}
    frame_counts = {r.num_frames for r in results}
    checks = []
    for r in results:
        if len(lengths) > 1 and r.seconds == max(lengths) and r.num_frames == min(frame_counts):
            bound = 2.0
        elif r.seconds == min(lengths) or r.num_frames == max(frame_counts):
            bound = 0.95
        else:
            continue
        wall, cpu = r.speedups
        label = (
            f"{r.seconds} s, T={r.num_frames}: >= {bound:g}x (measured {wall:.2f}x; by CPU time {cpu:.2f}x)"
        )
        checks.append((label, wall >= bound))
    return checks


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="640x360 clips of 4 s and 12 s, 1 repeat")
    parser.add_argument("--seconds", type=int, nargs="+", help="clip lengths (default 10 60; quick: 4 12)")
    parser.add_argument(
        "--frames", type=int, nargs="+", default=[8, 32], help="sampled frames T (default 8 32)"
    )
    parser.add_argument(
        "--repeats", type=int, help="rounds per case, the median is reported (default 3; quick: 1)"
    )
    parser.add_argument("--min-time", type=float, help="seconds per path and round (default 2; quick: 0.2)")
    parser.add_argument(
        "--preset", default="ultrafast", help="libx264 preset of the clips (default ultrafast)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    width, height = (640, 360) if args.quick else (1280, 720)
    seconds = args.seconds or ([4, 12] if args.quick else [10, 60])
    repeats = args.repeats or (1 if args.quick else 3)
    min_time = args.min_time or (0.2 if args.quick else 2.0)
    began = time.perf_counter()
    print(f"Machine: {machine_description(f'av {av.__version__} (FFmpeg {av.ffmpeg_version_info})')}")
    print(f"Load average at start: {load_average()}")
    processor = ClaverVideoProcessor()
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as directory:
        print(f"\nWriting clips (libx264 {args.preset}, {FPS} fps, GOP {GOP}):")
        clips = []
        for length in sorted(seconds):
            start = time.perf_counter()
            clip = write_clip(Path(directory) / f"clip_{length}s.mp4", length, width, height, args.preset)
            print(f"  {clip.describe()}, written in {time.perf_counter() - start:.1f} s")
            clips.append(clip)

        results = [
            run_eval(processor, clip, num_frames, repeats, min_time)
            for clip in clips
            for num_frames in args.frames
        ]
        largest_difference = max(r.max_abs_diff for r in results)
        print(
            "\nSanity check passed: same indices and shapes; largest pixel_values difference at the checked "
            f"frames: {largest_difference:.2g}."
        )
        print_table(
            f"Evaluation path, {width}x{height}: clips/s (median of {repeats}), speed-up and frames decoded per clip",
            [
                "clip",
                "T",
                "ours clips/s",
                "baseline clips/s",
                "ours / baseline",
                "by CPU time",
                "decoded ours",
                "decoded baseline",
            ],
            eval_rows(results),
        )
        print("\nTargets:")
        for description, met in targets(results):
            print(f"  {description}: {'met' if met else 'NOT met'}")

        print(f"\nTraining path (T={TRAINING_FRAMES}, training=True) on prepared files:")
        training = run_training(processor, clips, repeats, min_time)
        if training is not None:
            print_table(
                f"Training path: clips/s (median of {repeats}) on the original {width}x{height} clip and the "
                f"prepared one, frames decoded per clip (mean of {TRAINING_DRAWS} draws)",
                [
                    "clip",
                    "original clips/s",
                    "prepared clips/s",
                    "prepared / original",
                    "by CPU time",
                    "decoded original",
                    "decoded prepared",
                    "prepare s",
                ],
                training_rows(training),
            )
    print(f"\nTotal time {time.perf_counter() - began:.0f} s; load average at end: {load_average()}")


if __name__ == "__main__":
    main()
