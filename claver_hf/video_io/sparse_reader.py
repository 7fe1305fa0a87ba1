"""Decoding only the frames at requested indices with PyAV, seeking to key frames when that decodes less.

`read_frames_with_stats` is the PyAV reader behind `read_frames`; `_SparseReader` holds the seek-or-decode-on
state of one file.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .common import PathLike, VideoDecodingError, VideoInfo, check_path, check_range, sorted_unique
from .container import AV_ERRORS, decoding_errors, describe, open_container, probe_video, to_rgb, video_stream

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class DecodeStats:
    """Work done by one `read_frames_with_stats` call.

    Attributes:
        num_decoded_frames: frames produced by the decoder (needed or not).
        num_seeks: seeks to a key frame.
    """

    num_decoded_frames: int
    num_seeks: int


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
    wanted = sorted_unique(indices)
    path_str = check_path(path)
    if info is None:
        info = probe_video(path_str)
    check_range(wanted, info)
    fps = Fraction(info.fps).limit_denominator(_MAX_RATE_DENOMINATOR)
    with decoding_errors(path_str):
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
            self._rgb = to_rgb(self.frame, self.reformatter)
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
        self.container = open_container(self.path)
        self.stream = video_stream(self.container, self.path)
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
            detail = f" ({describe(self.errors[-1])})" if self.errors else ""
            raise VideoDecodingError(self.path, f"no frame could be decoded{detail}")
        if self.errors:
            logger.warning(
                "Video %s: skipped %d packet(s) that failed to decode (%s).",
                self.path,
                len(self.errors),
                describe(self.errors[-1]),
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
        except AV_ERRORS:
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
            except AV_ERRORS as err:
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
