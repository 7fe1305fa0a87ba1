"""Types, errors and argument checks shared by every video reader of `claver_hf.video_io`.

Frame index space: index ``i`` is the frame whose presentation time, measured from the first frame's
timestamp and rounded to the nearest multiple of ``1 / fps`` (the average rate from `probe_video`), is
``i / fps``. For constant-rate video this is exactly the i-th frame, tolerant to timestamp jitter of up
to half a frame. For variable-rate video an index with no frame of its own maps to the frame still on
screen (the last earlier one); when several frames round to the same index, the first one is used.
Streams without usable timestamps (raw ``.h264``; B-frames in AVI, whose timestamps follow decode order)
are indexed by counting frames in presentation order from the start, without seeking.

Failure policy: every way a file can be unreadable (missing, directory, empty, not a media file, no
video stream, no decoder, truncated, nothing decodable) raises `VideoDecodingError`; raw PyAV/FFmpeg
exceptions never reach the caller, and a garbage file cannot hang (PyAV open/read timeouts). Packets that
fail to decode in the middle of a file are skipped (their indices show the frame before them, as for a
variable-frame-rate gap), with a warning. A file that ends before a requested index (wrong frame count,
cut-off data) yields its last decoded frame for the missing indices, with a warning naming the file;
blank frames are never returned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PathLike = str | os.PathLike[str]
Backend = Literal["pyav", "torchcodec", "decord"]
FrameCountSource = Literal["container", "duration", "counted"]

# File suffixes treated as videos when a folder is scanned (datasets, dataset preparation).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


class VideoDecodingError(ValueError):
    """A video file cannot be read; `path` is the file and `reason` says why."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read video {path!s}: {reason}")

    def __reduce__(self) -> tuple[type[VideoDecodingError], tuple[str, str]]:
        # Keeps the exception picklable (data-loader workers send errors to the main process).
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learned about a file's first video stream.

    Attributes:
        num_frames: number of frames; valid frame indices are ``0 .. num_frames - 1``.
        fps: average frame rate (frames per second) that maps frame times to indices.
        duration: length of the video stream in seconds.
        width: frame width in pixels after applying `rotation`.
        height: frame height in pixels after applying `rotation`.
        rotation: counter-clockwise rotation in degrees (0, 90, 180 or 270) that makes stored frames
            upright, read from the stream's display matrix (as attached to decoded frames).
        frame_count_source: where `num_frames` came from: ``"container"`` (the container's frame count,
            consistent with duration x fps), ``"counted"`` (video packets counted by demuxing) or
            ``"duration"`` (duration x fps, when demuxing failed part-way).
    """

    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    rotation: int
    frame_count_source: FrameCountSource


def check_path(path: PathLike) -> str:
    """The path as a string, after the checks whose FFmpeg errors would be cryptic."""
    path_str = os.fspath(path)
    try:
        target = Path(path_str)
        if not target.exists():
            raise VideoDecodingError(path_str, "file does not exist")
        if target.is_dir():
            raise VideoDecodingError(path_str, "path is a directory, not a video file")
        if target.stat().st_size == 0:
            raise VideoDecodingError(path_str, "file is empty (0 bytes)")
    except OSError as err:
        raise VideoDecodingError(path_str, f"cannot access the file ({err})") from err
    return path_str


def sorted_unique(indices: Sequence[int]) -> list[int]:
    if len(indices) == 0:
        raise ValueError("indices is empty: at least one frame index is needed.")
    wanted = sorted({int(index) for index in indices})
    if wanted[0] < 0:
        raise ValueError(f"Frame indices must be >= 0, got {wanted[0]}.")
    return wanted


def check_range(wanted: list[int], info: VideoInfo | None) -> None:
    if info is not None and wanted[-1] >= info.num_frames:
        raise ValueError(f"Frame index {wanted[-1]} is out of range for a video of {info.num_frames} frames.")
