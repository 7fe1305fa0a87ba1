"""Re-encoding a video dataset once, so that training decodes small, quickly seekable files.

Full-resolution sources with long key-frame intervals make every sampled clip decode hundreds of large
frames, which leaves GPUs waiting on the data loader. `prepare_videos` converts a folder tree once: each
video is scaled to a short side (256 by default, never upscaled), re-encoded as H.264 with a key frame
every 16 frames and no B-frames (a seek then decodes at most 15 extra frames, in display order), without
audio, into an MP4 with its index up front.

`prepare_video` converts one file; `prepare_videos` converts a tree in parallel processes, with a
progress bar, and can be re-run after an interruption: a finished output only ever appears through an
atomic rename of its completed temporary file, so outputs that exist are skipped and a half-written one
is never mistaken for finished.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..video_io.common import VIDEO_EXTENSIONS, PathLike, VideoDecodingError
from ..video_io.container import opened, orientation, probe_video, to_rgb, video_stream

logger = logging.getLogger(__name__)

# The output frame rate is the source's average rate as a fraction with a denominator of at most 1001:
# exact for the usual rates (25, 30000/1001, ...), within a thousandth of a frame per second for measured
# (variable-rate) averages, and a small time base for the encoder and the MP4 time scale.
_MAX_RATE_DENOMINATOR = 1001
# swscale's bicubic filter widens with the downscale factor, so it low-pass filters large reductions.
_INTERPOLATION = "BICUBIC"


@dataclass
class PrepareReport:
    """Outcome of `prepare_videos`; paths are the source files, sorted.

    Attributes:
        converted: sources encoded by this run.
        skipped: sources whose output already existed (finished by an earlier run).
        failed: sources that could not be converted, mapped to the reason.
    """

    converted: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def prepare_video(
    source: PathLike,
    target: PathLike,
    *,
    short_side: int = 256,
    keyframe_interval: int = 16,
    crf: int = 23,
    preset: str = "veryfast",
) -> None:
    """Re-encode one video: upright, scaled to `short_side`, H.264 with dense key frames, no audio.

    Every frame is decoded and rotated upright per the stream's display matrix, so the output needs no
    rotation metadata. Frames are scaled so that the short side is `short_side` with the aspect ratio
    kept; a source whose short side is already at most `short_side` keeps its size. Both sides are
    rounded to even numbers (yuv420p needs them). The output is libx264 yuv420p at the source's average
    frame rate (variable-rate sources become constant-rate, frame count unchanged), a key frame exactly
    every `keyframe_interval` frames, no B-frames, in an MP4 with ``+faststart``.

    The output is written to a hidden temporary file next to `target` and renamed onto it only when
    complete; on any failure the temporary file is removed and `target` is left as it was.

    Args:
        source: the video file to read.
        target: the MP4 file to write (replaced if it exists); its folder is created if needed.
        short_side: length in pixels of the output's shorter side (for sources larger than that).
        keyframe_interval: frames from one key frame to the next.
        crf: libx264 constant rate factor, 0 (lossless) to 51; lower is better quality and larger.
        preset: libx264 speed preset (``"ultrafast"`` ... ``"veryslow"``).

    Raises:
        VideoDecodingError: `source` cannot be read or decoded (the error names the file).
        ValueError: invalid settings, or `target` is `source`.
        OSError, av.error.FFmpegError: the output cannot be written.
    """
    _check_settings(short_side, keyframe_interval)
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}.")
    source, target = Path(source), Path(target)
    if target.resolve() == source.resolve():
        raise ValueError(f"Refusing to overwrite the source video {source}: choose another target.")

    info = probe_video(source)
    width, height = _output_size(info.width, info.height, short_side)
    rate = Fraction(info.fps).limit_denominator(_MAX_RATE_DENOMINATOR)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_h264(
        target, _upright_frames(source, width, height), width=width, height=height, rate=rate,
        keyframe_interval=keyframe_interval, crf=crf, preset=preset,
    )  # fmt: skip


def write_h264(
    target: PathLike,
    frames: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    rate: Fraction | int,
    keyframe_interval: int,
    crf: int,
    preset: str = "veryfast",
    threads: int | None = None,
) -> None:
    """Encode `(height, width, 3)` uint8 RGB frames as an MP4 (libx264, yuv420p, ``+faststart``) written atomically.

    A key frame comes exactly every `keyframe_interval` frames and there are no B-frames. The file is written
    to a hidden temporary name next to `target` and renamed onto it only when complete; on any failure the
    temporary file is removed and `target` is left as it was. `threads` fixes the encoder's thread count.
    """
    target = Path(target)
    partial = _partial_path(target)
    try:
        # The format is named because the temporary file's suffix does not say it.
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as output:
            stream = output.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = keyframe_interval
            if threads is not None:
                stream.codec_context.thread_count = threads
            stream.codec_context.options = {
                "preset": preset,
                "crf": str(crf),
                # Key frames at exactly every `keyframe_interval` frames: no scene-cut key frames, and
                # no shorter intervals.
                "keyint_min": str(keyframe_interval),
                "sc_threshold": "0",
                # Without B-frames, decode order is display order: seeking and sparse reads decode
                # fewer frames, and no reader has to reorder timestamps.
                "bf": "0",
            }
            # Converted to yuv420p here rather than left to PyAV inside encode(): with that implicit
            # conversion, identical runs sometimes wrote slightly different pixels. One reformatter serves
            # all frames: a new conversion context per frame costs more than encoding small frames.
            reformatter = VideoReformatter()
            time_base = 1 / Fraction(rate)
            for index, rgb in enumerate(frames):
                rgb_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = reformatter.reformat(rgb_frame, format="yuv420p")
                frame.pts, frame.time_base = index, time_base
                output.mux(stream.encode(frame))
            output.mux(stream.encode())
        os.replace(partial, target)
    except BaseException:
        # Also on KeyboardInterrupt: an interrupted conversion leaves nothing behind.
        partial.unlink(missing_ok=True)
        raise


def prepare_videos(
    source_dir: PathLike,
    target_dir: PathLike,
    *,
    short_side: int = 256,
    keyframe_interval: int = 16,
    num_workers: int | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    progress: bool = True,
) -> PrepareReport:
    """Convert every video under `source_dir` with `prepare_video`, mirroring its folders in `target_dir`.

    ``source_dir/a/b.avi`` becomes ``target_dir/a/b.mp4``. Files are matched by suffix, case-insensitively;
    hidden files (names starting with ``.``, such as macOS ``._*`` resource forks) are ignored. Outputs
    that already exist are skipped, so an interrupted run resumes where it stopped; an output left
    half-written by a killed run was never renamed into place and is redone. Two sources that would map
    to the same output (``a.avi`` and ``a.mkv``) are not guessed between: the first in sorted order is
    converted, the others fail.

    A video that cannot be converted does not stop the run: it is logged with its path and the reason and
    listed in `PrepareReport.failed`.

    Args:
        source_dir: folder tree of videos; never written to.
        target_dir: where the outputs go (created if needed); must not overlap `source_dir`.
        short_side: output short side in pixels (see `prepare_video`).
        keyframe_interval: output key-frame interval in frames (see `prepare_video`).
        num_workers: processes converting in parallel; None uses every CPU, 1 converts in this process
            (no pool: simpler to debug or profile).
        extensions: file suffixes of the videos to convert.
        progress: show a progress bar.

    Returns:
        A `PrepareReport` of converted, skipped and failed sources.

    Raises:
        FileNotFoundError, NotADirectoryError: `source_dir` is missing or not a folder.
        ValueError: the folders overlap, or `num_workers` is below 1.
    """
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    if not source_dir.exists():
        raise FileNotFoundError(f"Source folder {source_dir} does not exist.")
    if not source_dir.is_dir():
        raise NotADirectoryError(f"Source {source_dir} is not a folder.")
    _check_separate(source_dir, target_dir)
    # Checked once here rather than failing every video with the same error.
    _check_settings(short_side, keyframe_interval)
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}.")

    report = PrepareReport()
    pending: dict[Path, Path] = {}  # source -> target still to convert
    claimed: dict[Path, Path] = {}  # target -> the source converted to it
    sources = _find_videos(source_dir, extensions)
    for source in sources:
        target = (target_dir / source.relative_to(source_dir)).with_suffix(".mp4")
        if target in claimed:
            report.failed[source] = f"{claimed[target]} is converted to the same output {target}"
            logger.warning("Cannot prepare video %s: %s", source, report.failed[source])
            continue
        claimed[target] = source
        if target.exists():
            report.skipped.append(source)
        else:
            pending[source] = target

    options = {"short_side": short_side, "keyframe_interval": keyframe_interval}
    with (
        logging_redirect_tqdm(),
        tqdm(
            total=len(sources),
            initial=len(report.skipped) + len(report.failed),
            unit="video",
            desc="Preparing videos",
            disable=not progress,
        ) as bar,
    ):
        for source, error in _convert_all(pending, options, min(num_workers, len(pending))):
            if error is None:
                report.converted.append(source)
            else:
                logger.warning("Cannot prepare video %s: %s", source, error)
                report.failed[source] = error
                bar.set_postfix(failed=len(report.failed))
            bar.update()

    report.converted.sort()
    report.skipped.sort()
    report.failed = dict(sorted(report.failed.items()))
    return report


def _convert_all(
    pending: dict[Path, Path], options: dict[str, int], num_workers: int
) -> Iterator[tuple[Path, str | None]]:
    """Yield ``(source, error or None)`` for each pending conversion as it finishes."""
    if num_workers <= 1:
        for source, target in pending.items():
            yield source, _convert(source, target, options)
        return
    pool = ProcessPoolExecutor(max_workers=num_workers)
    try:
        futures = {
            pool.submit(_convert, source, target, options): source for source, target in pending.items()
        }
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        # On Ctrl-C (or an error in the caller), queued conversions are dropped instead of run to the end.
        pool.shutdown(cancel_futures=True)


def _convert(source: Path, target: Path, options: dict[str, int]) -> str | None:
    """`prepare_video`, returning why it failed instead of raising (runs in worker processes)."""
    try:
        prepare_video(source, target, **options)
    except VideoDecodingError as err:
        return err.reason
    except Exception as err:  # One bad file must not end a dataset-wide run.
        return f"{type(err).__name__}: {err}"
    return None


def _upright_frames(source: Path, width: int, height: int) -> Iterator[np.ndarray]:
    """Every frame of `source` as an upright ``(height, width, 3)`` uint8 RGB array, in display order."""
    path = str(source)
    reformatter = VideoReformatter()
    with opened(path) as container:
        stream = video_stream(container, path)
        for frame in container.decode(stream):
            # Scaling before rotating works on the smaller image; the scaled frame keeps the display
            # matrix, so it is sized in the stored orientation (sides swapped for quarter turns).
            rotation = orientation(frame)[0]
            stored = (height, width) if rotation % 180 else (width, height)
            small = reformatter.reformat(
                frame, width=stored[0], height=stored[1], format="rgb24", interpolation=_INTERPOLATION
            )
            yield to_rgb(small, reformatter)


def _check_settings(short_side: int, keyframe_interval: int) -> None:
    if short_side < 2:
        raise ValueError(f"short_side must be at least 2 pixels, got {short_side}.")
    if keyframe_interval < 1:
        raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}.")


def _output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Upright output size: short side `short_side` (never larger than the source), both sides even."""
    scale = min(1.0, short_side / min(width, height))
    return _even(width * scale), _even(height * scale)


def _even(length: float) -> int:
    return max(2, 2 * round(length / 2))


def _partial_path(target: Path) -> Path:
    """Where `target` is written before its atomic rename: hidden and not ending in ``.mp4``, so video
    globs over the output tree never pick up an unfinished file. The name is fixed, so a rerun overwrites
    what a killed run left behind without a clean-up pass."""
    return target.with_name(f".{target.name}.partial")


def _check_separate(source_dir: Path, target_dir: Path) -> None:
    """Refuse overlapping folders: outputs would land among the sources, and a source file at an output's
    path would be taken for a finished output."""
    source, target = source_dir.resolve(), target_dir.resolve()
    if target == source or target.is_relative_to(source):
        raise ValueError(
            f"Target folder {target_dir} is inside the source folder {source_dir}: choose a separate folder."
        )
    if source.is_relative_to(target):
        raise ValueError(
            f"Source folder {source_dir} is inside the target folder {target_dir}: choose a separate folder."
        )


def _find_videos(source_dir: Path, extensions: Sequence[str]) -> list[Path]:
    suffixes = {extension.lower() for extension in extensions}
    return sorted(
        path
        for path in source_dir.rglob("*")
        if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file()
    )
