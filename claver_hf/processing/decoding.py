"""Reading sampled frames from video files with PyAV.

`probe_video` returns a file's frame count, rate and upright size; `read_frames` decodes only the frames
at the requested indices and returns them as one ``(N, H, W, 3)`` uint8 RGB array, upright.

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

import logging
import os
import statistics
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Backend = Literal["pyav", "torchcodec", "decord"]
FrameCountSource = Literal["container", "duration", "counted"]

# File suffixes treated as videos when a folder is scanned (datasets, dataset preparation).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
# Seconds PyAV waits for opening the file and for each read before aborting (its interrupt callback),
# so a stalled or pathological input fails instead of hanging a data-loader worker.
_OPEN_TIMEOUT_S = 10.0
_READ_TIMEOUT_S = 10.0
# The container's frame count is trusted only within this distance of duration x fps; edit lists and
# B-frame delays legitimately shift the two by a frame or so.
_COUNT_TOLERANCE_FRAMES = 2.0
_COUNT_TOLERANCE_RATIO = 0.02
# A declared frame rate is kept when within this of the rate measured from packet timestamps, which is
# only as exact as the container's timestamp precision (milliseconds in Matroska).
_RATE_TOLERANCE = 0.01
# Containers that store no presentation times: their demuxers derive them from decode order, which is
# wrong once B-frames reorder frames (H.264 or packed MPEG-4 in AVI). Such streams are counted instead.
_REORDERED_PTS_FORMATS = frozenset({"avi"})
# Undecodable packets skipped in a row before the rest of the file is given up on.
_MAX_CONSECUTIVE_ERRORS = 16
# Key-frame interval assumed before two key frames are known (typical encoders use 12 to 250).
_DEFAULT_GOP = 32
# Largest believable decode delay (see _SparseReader._measure_decode_delay), in frames: H.264 and HEVC
# reorder at most 16 frames. A larger measured offset means the index is laid out some other way.
_MAX_DECODE_DELAY_FRAMES = 16
# Consecutive kept entries after which no more edit-list-discarded ones are looked for at the start of
# the index (discarded frames precede the kept ones in decode order, up to the reordering depth).
_DISCARD_SCAN_MARGIN = 2 * _MAX_DECODE_DELAY_FRAMES
# fps is stored as a float in VideoInfo; this recovers the exact rational rate (30000/1001 etc.).
_MAX_RATE_DENOMINATOR = 1_000_000
# Everything PyAV/FFmpeg raise for bad input: FFmpegError and its OSError subclasses, plus the plain
# Python errors its Cython layer raises on malformed data or metadata.
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError, IndexError, ValueError, RuntimeError)


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


@dataclass(frozen=True)
class DecodeStats:
    """Work done by one `read_frames_with_stats` call.

    Attributes:
        num_decoded_frames: frames produced by the decoder (needed or not).
        num_seeks: seeks to a key frame.
    """

    num_decoded_frames: int
    num_seeks: int


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video file's frame count, frame rate, duration and upright size.

    The container's frame count is used only when it agrees with duration x fps (within 2 frames or
    2 %); otherwise (absent, as in Matroska/WebM/MPEG-TS, or wrong) the video packets are counted by
    demuxing the whole file without decoding. Their timestamps give the measured average rate
    ``(count - 1) / (last - first timestamp)``, used instead of the declared rate when the two differ by
    more than 1 % (variable frame rate, wrong header), so that indices cover the whole video; the
    duration is then ``count / fps``. If demuxing fails part-way, ``duration x fps`` is the count. One
    frame is decoded to check that the stream is decodable and to read its rotation and size.

    Args:
        path: the video file.

    Returns:
        The `VideoInfo` of the first video stream (cover-art images excluded).

    Raises:
        VideoDecodingError: the path is missing, a directory, empty, not a media file, has no video
            stream or no decoder for it, or no frame can be decoded.
    """
    path_str = _check_path(path)
    with _opened(path_str) as container:
        stream = _video_stream(container, path_str)
        rotation, width, height = _orientation(_first_frame(container, stream, path_str))
        rate = _declared_rate(stream)
        duration = _declared_duration(container, stream)
        reported = stream.frames

    source: FrameCountSource
    if reported > 0 and rate is not None and duration is not None and _consistent(reported, duration * rate):
        num_frames, source = reported, "container"
    else:
        counted = _count_packets(path_str)
        if counted is not None:
            num_frames, measured = counted
            source = "counted"
            if measured is not None and (rate is None or abs(rate / measured - 1) > _RATE_TOLERANCE):
                # Variable frame rate or a wrong header: the measured average rate makes the indices
                # span the whole video.
                rate = measured
            # The declared duration is what disagreed (or is absent); Matroska's may even include the
            # stream's start offset.
            duration = num_frames / rate if rate is not None else None
        elif rate is not None and duration is not None:
            num_frames, source = max(1, round(duration * rate)), "duration"
        else:
            raise VideoDecodingError(path_str, "cannot determine the number of frames (demuxing failed)")
    if rate is None:
        raise VideoDecodingError(path_str, "the video stream has no frame rate")
    if duration is None:
        duration = num_frames / rate
    return VideoInfo(
        num_frames=num_frames,
        fps=float(rate),
        duration=float(duration),
        width=width,
        height=height,
        rotation=rotation,
        frame_count_source=source,
    )


def read_frames(
    path: PathLike,
    indices: Sequence[int],
    *,
    info: VideoInfo | None = None,
    backend: Backend = "pyav",
) -> np.ndarray:
    """Decode the frames at `indices` (see the module docstring for the index space and failure policy).

    Args:
        path: the video file.
        indices: frame indices in ``[0, info.num_frames)``, any order, repeats allowed.
        info: `probe_video(path)`, if already known (saves probing again; its fps and frame count define
            the index space). Used by the ``"pyav"`` backend; other backends only range-check with it.
        backend: ``"pyav"`` (default); ``"torchcodec"`` or ``"decord"`` when that package is installed.
            Those return frames as their library decodes them, without applying rotation metadata.

    Returns:
        uint8 RGB array of shape ``(len(indices), H, W, 3)``, frame ``j`` being ``indices[j]``; with the
        pyav backend, H and W are the upright (rotated) size.

    Raises:
        VideoDecodingError: the file cannot be read.
        ValueError: `indices` is empty, negative or out of range, or `backend` is unknown.
        ImportError: the requested backend's package is not installed (the message names it).
    """
    if backend == "pyav":
        return read_frames_with_stats(path, indices, info=info)[0]
    if backend == "torchcodec":
        return _read_frames_torchcodec(path, indices, info)
    if backend == "decord":
        return _read_frames_decord(path, indices, info)
    raise ValueError(f"Unknown decoding backend {backend!r}; expected 'pyav', 'torchcodec' or 'decord'.")


def read_frames_with_stats(
    path: PathLike, indices: Sequence[int], *, info: VideoInfo | None = None
) -> tuple[np.ndarray, DecodeStats]:
    """`read_frames` with the PyAV backend, also returning how much decoding it took.

    Only the needed part of the stream is decoded: the sorted distinct indices are visited in order,
    and before each one the reader either keeps decoding forward or seeks to the key frame before it,
    whichever decodes fewer frames. Key-frame positions come from the container's index where it covers
    the target (MP4 and AVI up front, Matroska after its first seek); elsewhere the reader seeks when
    the gap exceeds the key-frame interval seen so far; index timestamps that are decode times (MP4 with
    B-frames) are moved to presentation times by the stream's decode delay. A seek that lands past its
    target (MPEG-TS; open-GOP key frames, shown after frames decoded later) is retried further back.
    Decoding stops at the last needed frame, and each distinct frame is decoded and converted once.

    Args:
        path: the video file.
        indices: frame indices, as for `read_frames`.
        info: `probe_video(path)`, if already known.

    Returns:
        ``(frames, stats)``: frames as `read_frames` returns them, shape ``(len(indices), H, W, 3)``
        uint8, and the `DecodeStats` of this call.

    Raises:
        VideoDecodingError: the file cannot be read.
        ValueError: `indices` is empty, negative or not below ``info.num_frames``.
    """
    wanted = _sorted_unique(indices)
    path_str = _check_path(path)
    if info is None:
        info = probe_video(path_str)
    _check_range(wanted, info)
    fps = Fraction(info.fps).limit_denominator(_MAX_RATE_DENOMINATOR)
    with _decoding_errors(path_str):
        reader = _SparseReader(path_str, fps)
        try:
            by_index = reader.read(wanted)
        finally:
            reader.close()
    shapes = {frame.shape for frame in by_index.values()}
    if len(shapes) > 1:
        raise VideoDecodingError(path_str, f"frame size changes within the stream ({sorted(shapes)})")
    stacked = np.stack([by_index[index] for index in wanted])
    row = {index: position for position, index in enumerate(wanted)}
    return stacked[[row[int(index)] for index in indices]], reader.stats()


class _Decoded:
    """A decoded frame, its index, and its RGB array once converted (converted at most once)."""

    def __init__(self, index: int, frame: av.VideoFrame, reformatter: VideoReformatter) -> None:
        self.index = index
        self.frame = frame
        self.reformatter = reformatter
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = _to_rgb(self.frame, self.reformatter)
        return self._rgb


class _SparseReader:
    """Decodes the frames at a sorted list of indices from one file, seeking when it pays.

    Index 0 is the first decoded frame (the container's start time can differ: AVI reports packet
    times), so the reader always decodes that frame before deciding where to seek.
    """

    def __init__(self, path: str, fps: Fraction) -> None:
        self.path = path
        self.fps = fps
        self.start: int | None = None  # pts of the first frame
        # Ticks by which the container index's timestamps run behind presentation times (B-frames in
        # MP4, whose index holds decode times); measured with the first frame.
        self.delay = 0
        self.can_seek = False  # enabled once the first frame has a timestamp
        # Index frames by counting them in output order (see _index_of).
        self.count_frames = False
        # Key-frame intervals seen while decoding with no seek in between: the interval estimate used
        # where the container's index does not (yet) cover the target.
        self.gop_samples: list[int] = []
        self.decoded = 0
        self.seeks = 0
        self.errors: list[BaseException] = []
        self.reformatter = VideoReformatter()
        self._open()
        if self.container.format.name in _REORDERED_PTS_FORMATS and self.stream.codec_context.has_b_frames:
            self.count_frames = True

    def _open(self) -> None:
        self.container = _open_container(self.path)
        self.stream = _video_stream(self.container, self.path)
        # index = floor((pts - start) * time_base * fps + 1/2), kept in integers: exact and fast.
        time_base = self.stream.time_base
        self.num = time_base.numerator * self.fps.numerator
        self.den = time_base.denominator * self.fps.denominator
        self.frames: Iterator[av.VideoFrame] = self.container.decode(self.stream)
        self.run_last_key: int | None = None

    def close(self) -> None:
        self.container.close()

    def stats(self) -> DecodeStats:
        return DecodeStats(num_decoded_frames=self.decoded, num_seeks=self.seeks)

    def read(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Frames (upright RGB arrays) for the sorted distinct indices `wanted`."""
        results: dict[int, np.ndarray] = {}
        pending = deque(wanted)
        previous: _Decoded | None = None  # last frame decoded since the last seek
        last: _Decoded | None = None  # last frame decoded at all
        planned_for = -1
        just_sought = False
        back = 0  # frames before the target to seek to, grown while seeks overshoot
        while pending:
            target = pending[0]
            if target != planned_for and self.start is not None:
                planned_for, back = target, 0
                position = previous.index if previous is not None else -1
                if self.can_seek and self._should_seek(target, position):
                    just_sought = self._seek(target)
                    if just_sought:
                        previous = None
            frame = self._next_frame()
            if frame is None:
                if just_sought:
                    # The index promised a key frame where the data ends (truncated file): read again
                    # from the start without seeking, so the frames that do exist are found.
                    self.can_seek = False
                    self._restart()
                    previous, just_sought = None, False
                    continue
                break
            self.decoded += 1
            index = self._index_of(frame, previous)
            if index is None:
                # Timestamps turned out missing or out of order (e.g. H.264 with B-frames in AVI), so
                # what was placed so far may be misplaced: count frames from the start instead.
                self._restart()
                results.clear()
                pending = deque(wanted)
                previous = last = None
                just_sought = False
                continue
            current = _Decoded(index, frame, self.reformatter)
            last = current
            if frame.key_frame:
                if self.run_last_key is not None and index > self.run_last_key:
                    self.gop_samples.append(index - self.run_last_key)
                self.run_last_key = index
            if just_sought and index > target:
                # Landed past the target: the seek is not exact here (MPEG-TS seeks to any packet and the
                # decoder resumes at the next key frame; an open-GOP key frame is shown after the frames
                # decoded right after it, later than its index timestamp plus the decode delay). Seek
                # further back, doubling the margin each time.
                back = max(2 * back, index - target + 1)
                previous = None
                just_sought = target - back > 0 and self._seek(target - back)
                if not just_sought:
                    self._restart()
                continue
            just_sought = False
            if previous is not None:
                # Indices this frame skipped over (variable frame rate) show the frame still on screen.
                while pending and pending[0] < index:
                    results[pending.popleft()] = previous.rgb()
            while pending and pending[0] <= index:
                results[pending.popleft()] = current.rgb()
            previous = current
        if pending and last is None:
            detail = f" ({_describe(self.errors[-1])})" if self.errors else ""
            raise VideoDecodingError(self.path, f"no frame could be decoded{detail}")
        if self.errors:
            logger.warning(
                "Video %s: skipped %d packet(s) that failed to decode (%s).",
                self.path,
                len(self.errors),
                _describe(self.errors[-1]),
            )
        if pending:
            logger.warning(
                "Video %s ended before frame(s) %s (its frame count is too high or the file is damaged or "
                "truncated); repeating its last decoded frame.",
                self.path,
                list(pending),
            )
            results.update(dict.fromkeys(pending, last.rgb()))
        return results

    def _should_seek(self, target: int, position: int) -> bool:
        """Whether seeking decodes fewer frames than going forward from frame `position` to `target`.

        Where the container's index extends to `target` (MP4 and AVI index every frame up front,
        Matroska loads its key-frame cues on the first seek) it gives the last key frame shown at or
        before `target`, which is where `_seek` lands: seek iff that key frame lies beyond the next frame
        (seeking to a key frame at or behind the decode position would decode frames twice). Elsewhere,
        seek when the gap exceeds the key-frame interval seen so far.
        """
        entries = self.stream.index_entries
        found = self._key_entry(target)
        if found >= 0 and self._index_of_pts(entries[found].timestamp + self.delay) > position + 1:
            return True
        # Timestamps in the index only grow, so its last entry is the last frame it knows of.
        if len(entries) and self._index_of_pts(entries[len(entries) - 1].timestamp + self.delay) >= target:
            return False
        gop = statistics.median_low(self.gop_samples) if self.gop_samples else _DEFAULT_GOP
        return target - position > gop

    def _seek_pts(self, index: int) -> int:
        """The largest pts whose index is <= `index`, so a key frame at `index + 1` is never chosen."""
        assert self.start is not None  # seeking starts after the first frame
        return self.start + (self.den * (2 * index + 1) - 1) // (2 * self.num)

    def _key_entry(self, index: int) -> int:
        """Position in the container's index of the last key frame shown at or before frame `index`
        (-1 if the index has none). Exact for key frames that start a closed GOP (x264's default); an
        open-GOP key frame is shown later than its index timestamp says, so a seek to it may overshoot.
        """
        # Index timestamps are shown `delay` ticks later: compare them with the target's time minus it.
        return self.stream.index_entries.search_timestamp(
            self._seek_pts(index) - self.delay, backward=True, any_frame=False
        )

    def _seek_request(self, index: int) -> int:
        """The timestamp to pass to FFmpeg so that it lands on the key frame `_key_entry(index)`.

        Demuxers disagree on what a seek timestamp is when decode and presentation times differ: AVI and
        MP4 without an edit list compare it with the index's decode times as is, while MP4 with an edit
        list first subtracts its own decode delay (about `delay`, a frame more when the edit list trims
        the start). Any request from `delay` past the key frame's presentation time up to just before the
        next key frame's index timestamp lands on the key frame under every such reading, as long as a
        GOP lasts longer than twice the delay.
        """
        request = self._seek_pts(index) + self.delay
        entries = self.stream.index_entries
        found = self._key_entry(index)
        if found >= 0:
            following = entries.search_timestamp(
                entries[found].timestamp + 1, backward=False, any_frame=False
            )
            if following >= 0:
                request = min(request, entries[following].timestamp - 1)
        return request

    def _seek(self, index: int) -> bool:
        """Seek to the key frame at or before `index`; False (and no more seeking) if unsupported."""
        try:
            self.container.seek(self._seek_request(index), stream=self.stream, backward=True, any_frame=False)
        except _AV_ERRORS:
            self.can_seek = False
            return False
        self.frames = self.container.decode(self.stream)
        self.seeks += 1
        self.run_last_key = None
        return True

    def _measure_decode_delay(self) -> int:
        """Ticks from an index timestamp to its key frame's presentation time; 0 where they agree.

        MP4 indexes decode times, which run behind presentation times when frames are reordered
        (B-frames): encoders give the n-th frame in decode order the n-th presentation time minus a fixed
        delay, so a key frame starting a closed GOP (decoded after exactly the frames shown before it) is
        shown `delay` ticks after its index timestamp. The first shown frame is the first presentation
        time that an edit list keeps: it follows the entries the edit list discards (frames before its
        start, kept only to decode from the preceding key frame), so its decode time is that of entry
        number "count of discarded entries". AVI's index is one frame behind its packet times, which
        this measures the same way. Matroska indexes presentation times (delay 0); MPEG-TS has no index
        yet when the first frame is decoded (delay 0: its inexact seeks are corrected after landing).
        """
        assert self.start is not None
        entries = self.stream.index_entries
        discarded = kept_in_a_row = position = 0
        while position < len(entries) and kept_in_a_row < _DISCARD_SCAN_MARGIN:
            if entries[position].is_discard:
                discarded += 1
                kept_in_a_row = 0
            else:
                kept_in_a_row += 1
            position += 1
        if discarded >= len(entries):
            return 0
        delay = self.start - entries[discarded].timestamp
        # Ticks per frame are den / num; anything outside 0 .. 16 frames is not a reordering delay.
        if delay < 0 or delay * self.num > _MAX_DECODE_DELAY_FRAMES * self.den:
            return 0
        return delay

    def _restart(self) -> None:
        # Reopening is the one exact way back to the first frame: seeking to the start time is not exact
        # in every container (MPEG-TS).
        self.close()
        self._open()

    def _next_frame(self) -> av.VideoFrame | None:
        """The next decoded frame, or None at the end of the data.

        A packet that fails to decode (damaged data) is skipped and recorded in `errors`; the frames
        after it are still usable. More than `_MAX_CONSECUTIVE_ERRORS` in a row count as the end.
        """
        for _ in range(_MAX_CONSECUTIVE_ERRORS):
            try:
                return next(self.frames, None)
            except _AV_ERRORS as err:
                self.errors.append(err)
                # The exception ends the generator; a new one resumes demuxing after the bad packet.
                self.frames = self.container.decode(self.stream)
        return None

    def _index_of(self, frame: av.VideoFrame, previous: _Decoded | None) -> int | None:
        """Index of `frame` (`previous` is the frame decoded before it, None after a seek or restart).

        Uses the timestamp while timestamps are present and in presentation order; from the first frame
        where they are not, frames are counted in output order instead. Counting is only right from the
        start of the file, so None is returned when the switch happens later: decoding must restart.
        """
        if not self.count_frames:
            if frame.pts is not None and (previous is None or frame.pts >= previous.frame.pts):
                if self.start is None:
                    self.start = frame.pts
                    self.delay = self._measure_decode_delay()
                    self.can_seek = True
                return self._index_of_pts(frame.pts)
            self.count_frames = True
            self.can_seek = False
            if previous is not None or self.seeks:
                return None
        return previous.index + 1 if previous is not None else 0

    def _index_of_pts(self, pts: int) -> int:
        assert self.start is not None
        return (2 * (pts - self.start) * self.num + self.den) // (2 * self.den)


def _to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of any pixel format, rotated upright per the frame's display matrix.

    Pass one `reformatter` for all frames of a video: `frame.to_ndarray(format=...)` builds a conversion
    context for every frame, which costs several times the conversion of a small frame (measured: 400 against
    76 microseconds for 64x64 H.264 frames).
    """
    array = reformatter.reformat(frame, format="rgb24").to_ndarray()
    turns = _quarter_turns(frame.rotation)
    # The display matrix rotation is counter-clockwise, as is np.rot90 for positive k.
    return np.rot90(array, turns) if turns else array


def _quarter_turns(rotation: float) -> int:
    # Display matrices may hold non-right angles; frames are only ever turned by multiples of 90 degrees.
    return round(rotation / 90) % 4


def _orientation(frame: av.VideoFrame) -> tuple[int, int, int]:
    """(rotation in degrees, upright width, upright height) of a decoded frame."""
    turns = _quarter_turns(frame.rotation)
    if turns % 2:
        return 90 * turns, frame.height, frame.width
    return 90 * turns, frame.width, frame.height


def _check_path(path: PathLike) -> str:
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


def _open_container(path: str) -> av.container.InputContainer:
    try:
        # Undecodable metadata must not make an otherwise readable video fail.
        return av.open(path, timeout=(_OPEN_TIMEOUT_S, _READ_TIMEOUT_S), metadata_errors="replace")
    except _AV_ERRORS as err:
        raise VideoDecodingError(path, f"not a readable media file ({_describe(err)})") from err


@contextmanager
def _decoding_errors(path: str) -> Iterator[None]:
    """PyAV/FFmpeg errors raised in the block become `VideoDecodingError`."""
    try:
        yield
    except VideoDecodingError:
        raise
    except _AV_ERRORS as err:
        raise VideoDecodingError(path, f"decoding failed ({_describe(err)})") from err


@contextmanager
def _opened(path: str) -> Iterator[av.container.InputContainer]:
    """`path` opened with PyAV, closed after the block; errors become `VideoDecodingError`."""
    container = _open_container(path)
    try:
        with _decoding_errors(path):
            yield container
    finally:
        container.close()


def _describe(err: BaseException) -> str:
    # FFmpeg errors carry a readable strerror; their str() adds an errno and the file name.
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    """The first video stream that is not an attached picture (audio cover art); it must be decodable."""
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        found = sorted({stream.type for stream in container.streams})
        described = ", ".join(found) if found else "none"
        raise VideoDecodingError(path, f"no video stream (streams found: {described})")
    stream = videos[0]
    if stream.codec_context is None:
        raise VideoDecodingError(path, "unsupported video codec (FFmpeg has no decoder for it)")
    return stream


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream, path: str) -> av.VideoFrame:
    for frame in container.decode(stream):
        return frame
    raise VideoDecodingError(path, "no frame could be decoded")


def _declared_rate(stream: av.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream) -> Fraction | None:
    """Duration in seconds: the stream's own, else the container's."""
    if stream.duration and stream.time_base:
        return stream.duration * stream.time_base
    if container.duration:
        return Fraction(container.duration, av.time_base)
    return None


def _consistent(num_frames: int, expected: Fraction) -> bool:
    tolerance = max(_COUNT_TOLERANCE_FRAMES, _COUNT_TOLERANCE_RATIO * float(expected))
    return abs(num_frames - float(expected)) <= tolerance


def _count_packets(path: str) -> tuple[int, Fraction | None] | None:
    """(video packets, their measured average rate) by demuxing without decoding.

    The rate is ``(count - 1) / (last pts - first pts)``: frame intervals only, so it does not depend on
    packet durations, which demuxers often derive from a guessed rate. It is None without at least two
    timestamped packets. Returns None when demuxing fails part-way (damaged file) or finds no packet,
    so the caller can fall back to duration x fps.
    """
    count = 0
    first: int | None = None
    last: int | None = None
    try:
        with _open_container(path) as container:
            stream = _video_stream(container, path)
            time_base = stream.time_base
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet demux() yields at the end
                    continue
                count += 1
                # Packets come in decode order: with B-frames the extreme timestamps are not first/last.
                if packet.pts is not None:
                    first = packet.pts if first is None else min(first, packet.pts)
                    last = packet.pts if last is None else max(last, packet.pts)
    except _AV_ERRORS:
        return None
    if count == 0:
        return None
    if first is None or last is None or last == first:
        return count, None
    return count, Fraction(count - 1) / ((last - first) * time_base)


def _sorted_unique(indices: Sequence[int]) -> list[int]:
    if len(indices) == 0:
        raise ValueError("indices is empty: at least one frame index is needed.")
    wanted = sorted({int(index) for index in indices})
    if wanted[0] < 0:
        raise ValueError(f"Frame indices must be >= 0, got {wanted[0]}.")
    return wanted


def _check_range(wanted: list[int], info: VideoInfo | None) -> None:
    if info is not None and wanted[-1] >= info.num_frames:
        raise ValueError(f"Frame index {wanted[-1]} is out of range for a video of {info.num_frames} frames.")


def _read_frames_torchcodec(path: PathLike, indices: Sequence[int], info: VideoInfo | None) -> np.ndarray:
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as err:
        raise ImportError(
            "backend='torchcodec' needs the torchcodec package: pip install torchcodec"
        ) from err
    _check_range(_sorted_unique(indices), info)
    path_str = _check_path(path)
    try:
        # get_frames_at returns the frames in the order asked, repeats included.
        batch = VideoDecoder(path_str, dimension_order="NHWC").get_frames_at(
            indices=[int(i) for i in indices]
        )
    except (RuntimeError, ValueError, OSError) as err:
        raise VideoDecodingError(path_str, str(err)) from err
    return batch.data.numpy()


def _read_frames_decord(path: PathLike, indices: Sequence[int], info: VideoInfo | None) -> np.ndarray:
    try:
        import decord
    except ImportError as err:
        raise ImportError("backend='decord' needs the decord package: pip install decord") from err
    _check_range(_sorted_unique(indices), info)
    path_str = _check_path(path)
    try:
        batch = decord.VideoReader(path_str, ctx=decord.cpu(0)).get_batch([int(i) for i in indices])
    except (RuntimeError, ValueError, OSError) as err:  # decord's DECORDError is a RuntimeError
        raise VideoDecodingError(path_str, str(err)) from err
    # decord.bridge may be set to torch globally, in which case get_batch returns a tensor.
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
