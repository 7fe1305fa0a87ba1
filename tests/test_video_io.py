"""Probing and sparse frame reading with PyAV, on small videos written at test time."""

import dataclasses
import importlib.util
import logging
import pickle
from fractions import Fraction

import av
import numpy as np
import pytest

from claver_hf.processing.sampling import segment_indices
from claver_hf.video_io import (
    DecodeStats,
    VideoDecodingError,
    VideoInfo,
    probe_video,
    read_frames,
    read_frames_with_stats,
    sparse_reader,
)

from .videos import (
    DEFAULT_CODEC,
    corrupt_packets,
    cut_at_packet,
    has_encoder,
    index_pattern,
    make_directory,
    pattern_index,
    truncated_copy,
    write_10bit_video,
    write_audio_only,
    write_gray_video,
    write_text_as_mp4,
    write_unknown_codec_video,
    write_vfr_video,
    write_video,
    write_wrong_frame_count_mp4,
    write_zero_byte,
)

# The PyAV wheels bundle these encoders; a build without them skips the tests that need them.
needs_x264 = pytest.mark.skipif(DEFAULT_CODEC != "libx264", reason="needs the libx264 encoder")
needs_vpx = pytest.mark.skipif(not has_encoder("libvpx"), reason="needs the libvpx encoder")


def indices_of(frames: np.ndarray) -> list[int]:
    return [pattern_index(frame) for frame in frames]


def assert_matches(frame: np.ndarray, expected: np.ndarray, tolerance: float = 6.0) -> None:
    # Mean absolute error: lossy codecs blur the pattern's edges but keep flat areas close.
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(float) - expected.astype(float)).mean() < tolerance


# --- unreadable input -------------------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "missing.mp4"


def _truncated(tmp_path):
    # MP4 written without faststart keeps its index (moov) at the end: the first half has none.
    return truncated_copy(write_video(tmp_path / "full.mp4", num_frames=30), tmp_path / "truncated.mp4")


BAD_INPUTS = {
    "missing file": (_missing, "does not exist"),
    "directory": (lambda tmp_path: make_directory(tmp_path / "clip.mp4"), "directory"),
    "zero bytes": (lambda tmp_path: write_zero_byte(tmp_path / "empty.mp4"), "empty"),
    "text named .mp4": (
        lambda tmp_path: write_text_as_mp4(tmp_path / "notes.mp4"),
        "not a readable media file",
    ),
    "audio only": (
        lambda tmp_path: write_audio_only(tmp_path / "sound.m4a"),
        "no video stream (streams found: audio)",
    ),
    "truncated": (_truncated, "not a readable media file"),
    "unsupported codec": (
        lambda tmp_path: write_unknown_codec_video(tmp_path / "odd.avi"),
        "unsupported video codec",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_unreadable_input_raises_video_decoding_error(tmp_path, case):
    make, reason = BAD_INPUTS[case]
    path = make(tmp_path)
    for call in (lambda: probe_video(path), lambda: read_frames(path, [0])):
        with pytest.raises(VideoDecodingError) as caught:
            call()
        error = caught.value
        assert str(path) in str(error) and reason in str(error)
        assert str(error) == f"Cannot read video {path}: {error.reason}"
        assert error.path == str(path)
        assert isinstance(error, ValueError)


def test_video_decoding_error_pickles():
    error = pickle.loads(pickle.dumps(VideoDecodingError("videos/a.mp4", "file is empty (0 bytes)")))
    assert (error.path, error.reason) == ("videos/a.mp4", "file is empty (0 bytes)")
    assert str(error) == "Cannot read video videos/a.mp4: file is empty (0 bytes)"


def test_bad_indices_and_backend(tmp_path):
    path = write_video(tmp_path / "clip.mp4", num_frames=10)
    for indices, match in (([], "empty"), ([3, -1], ">= 0"), ([10], "out of range")):
        with pytest.raises(ValueError, match=match) as caught:
            read_frames(path, indices)
        assert not isinstance(caught.value, VideoDecodingError)
    with pytest.raises(ValueError, match="Unknown decoding backend"):
        read_frames(path, [0], backend="opencv")


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is not None, reason="installed")
        )
        for name in ("torchcodec", "decord")
    ],
)
def test_optional_backend_missing_raises_import_error(tmp_path, backend):
    with pytest.raises(ImportError, match=f"pip install {backend}"):
        read_frames(tmp_path / "clip.mp4", [0], backend=backend)


# --- probing --------------------------------------------------------------------------------------------


def test_probe_mp4(tmp_path):
    info = probe_video(write_video(tmp_path / "clip.mp4", num_frames=50, fps=25, size=(64, 48)))
    assert info == VideoInfo(
        num_frames=50, fps=25.0, duration=2.0, width=64, height=48, rotation=0, frame_count_source="container"
    )


def test_missing_container_frame_count_is_counted(tmp_path):
    # Matroska stores no frame count: packets are counted by demuxing.
    path = write_video(tmp_path / "clip.mkv", num_frames=45, fps=15, gop=7)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.frame_count_source) == (45, 15.0, "counted")
    assert info.duration == pytest.approx(3.0, abs=0.01)
    assert indices_of(read_frames(path, [0, 22, 44], info=info)) == [0, 22, 44]


def test_wrong_container_frame_count_is_not_trusted(tmp_path):
    path = write_wrong_frame_count_mp4(tmp_path / "lying.mp4", num_frames=30)
    info = probe_video(path)
    assert (info.num_frames, info.frame_count_source) == (30, "counted")
    assert indices_of(read_frames(path, [0, 15, 29], info=info)) == [0, 15, 29]


@needs_x264
def test_stream_without_timestamps(tmp_path):
    # A raw H.264 elementary stream has no timestamps and no index: decode order is the frame index.
    path = write_video(tmp_path / "clip.h264", num_frames=20, gop=5)
    info = probe_video(path)
    assert (info.num_frames, info.frame_count_source) == (20, "counted")
    assert indices_of(read_frames(path, [19, 3, 3, 0], info=info)) == [19, 3, 3, 0]


# --- frame content --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_sampled_frames_have_the_right_content(tmp_path, suffix):
    path = write_video(tmp_path / f"clip{suffix}", num_frames=80, gop=6)
    indices = segment_indices(80, 8, training=False)
    frames = read_frames(path, indices)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    assert indices_of(frames) == indices == [5, 15, 25, 35, 45, 55, 65, 75]
    for frame, index in zip(frames, indices, strict=True):
        assert_matches(frame, index_pattern(index, 64, 48))


@pytest.mark.parametrize(
    ("suffix", "bframes"),
    [
        *(pytest.param(*case, marks=needs_x264) for case in [(".mp4", 2), (".mkv", 0), (".mkv", 3)]),
        pytest.param(".webm", None, marks=needs_vpx),
        *(pytest.param(*case, marks=needs_x264) for case in [(".ts", 2), (".avi", 2)]),
    ],
)
def test_random_index_sets_match_their_frames(tmp_path, suffix, bframes):
    # Every mix of seeking and decoding forward, across B-frame reordering and container quirks: Matroska
    # loads its index on the first seek, MPEG-TS has none and seeks inexactly, and H.264 with B-frames in
    # AVI has out-of-order timestamps (frames are then counted).
    if suffix == ".webm":
        path = write_video(tmp_path / "clip.webm", num_frames=120, gop=7, codec="libvpx")
    else:
        path = write_video(tmp_path / f"clip{suffix}", num_frames=120, gop=7, bframes=bframes)
    info = probe_video(path)
    rng = np.random.default_rng(0)
    for _ in range(6):
        indices = rng.integers(0, 120, size=int(rng.integers(1, 12))).tolist()
        assert indices_of(read_frames(path, indices, info=info)) == indices


def test_order_and_repeats_follow_indices(tmp_path):
    path = write_video(tmp_path / "clip.mp4", num_frames=30)
    indices = [7, 2, 7, 0, 2, 29, 7]
    frames, stats = read_frames_with_stats(path, indices)
    assert indices_of(frames) == indices
    assert np.array_equal(frames[0], frames[2]) and np.array_equal(frames[0], frames[6])
    assert stats.num_decoded_frames <= 30  # each distinct frame decoded once, never the whole clip twice


@needs_x264
def test_timestamps_going_backwards_switch_to_counting(tmp_path, monkeypatch):
    # The generic guard behind the AVI rule: without it, H.264 B-frames in AVI come out with timestamps
    # in decode order. Decoding from the start, the reader notices and restarts counting frames.
    monkeypatch.setattr(sparse_reader, "_REORDERED_PTS_FORMATS", frozenset())
    path = write_video(tmp_path / "clip.avi", num_frames=30, gop=30, bframes=3)
    frames, stats = read_frames_with_stats(path, [0, 5, 6, 20])
    assert indices_of(frames) == [0, 5, 6, 20]
    assert stats.num_seeks == 0


def test_odd_frame_size(tmp_path):
    path = write_video(tmp_path / "odd.avi", num_frames=12, size=(63, 47), codec="mpeg4")
    info = probe_video(path)
    assert (info.width, info.height) == (63, 47)
    frames = read_frames(path, [0, 11, 5], info=info)
    assert frames.shape == (3, 47, 63, 3)
    assert indices_of(frames) == [0, 11, 5]


def test_gray_source(tmp_path):
    path = write_gray_video(tmp_path / "gray.mkv")
    frames = read_frames(path, [3, 17])
    assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8
    assert indices_of(frames) == [3, 17]
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 1], frames[..., 2])


def test_10bit_source(tmp_path):
    path = write_10bit_video(tmp_path / "deep.mp4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    frames = read_frames(path, [0, 9, 19])
    assert frames.dtype == np.uint8 and frames.shape == (3, 48, 64, 3)
    assert indices_of(frames) == [0, 9, 19]


def test_variable_frame_rate(tmp_path):
    times_ms = [0, 33, 66, 200, 233, 400, 600, 633, 666, 700, 900, 933]
    path = write_vfr_video(tmp_path / "vfr.mkv", times_ms)
    info = probe_video(path)
    assert (info.num_frames, info.frame_count_source) == (12, "counted")
    # The index space spans the whole clip at the measured average rate.
    assert info.fps == pytest.approx(11 / 0.933)
    assert info.duration == pytest.approx(12 / info.fps)
    frames, stats = read_frames_with_stats(path, range(12), info=info)
    # Documented policy: index i is the first frame whose time rounds to i / fps, else the frame on screen.
    rounded = [int(t / 1000 * info.fps + 0.5) for t in times_ms]
    expected = []
    for i in range(12):
        exact = [frame for frame, r in enumerate(rounded) if r == i]
        expected.append(exact[0] if exact else max(frame for frame, r in enumerate(rounded) if r < i))
    assert indices_of(frames) == expected
    assert expected[0] == 0 and expected[-1] >= 10  # the clip's start and end are both reached
    assert stats.num_decoded_frames <= 12


def test_stream_starting_late(tmp_path):
    # First timestamp at 5 s: index 0 is the first frame, not 5 s worth of missing frames.
    path = write_video(
        tmp_path / "late.mkv",
        num_frames=20,
        pts=[5000 + 40 * i for i in range(20)],
        time_base=Fraction(1, 1000),
    )
    info = probe_video(path)
    assert (info.num_frames, info.fps) == (20, 25.0)
    assert indices_of(read_frames(path, [0, 10, 19], info=info)) == [0, 10, 19]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_makes_frames_upright(tmp_path, rotation):
    path = write_video(tmp_path / "phone.mp4", num_frames=10, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((48, 64) if rotation in (90, 270) else (64, 48))
    frames = read_frames(path, [4, 9], info=info)
    assert frames.shape == (2, info.height, info.width, 3)
    for frame, index in zip(frames, [4, 9], strict=True):
        # Counter-clockwise display rotation, as FFmpeg's players apply it.
        assert_matches(frame, np.rot90(index_pattern(index, 64, 48), rotation // 90))


# --- short and damaged videos ---------------------------------------------------------------------------


def test_video_shorter_than_the_clip(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=3)
    info = probe_video(path)
    indices = segment_indices(info.num_frames, 8, training=False)
    frames = read_frames(path, indices, info=info)
    assert frames.shape == (8, 48, 64, 3)
    assert indices_of(frames) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_file_ending_early_repeats_the_last_frame_with_a_warning(tmp_path, caplog):
    # Index at the start (faststart), data cut inside packet 25: the container still promises 40 frames.
    full = write_video(
        tmp_path / "full.mp4", num_frames=40, gop=10, bframes=0, container_options={"movflags": "faststart"}
    )
    path = cut_at_packet(full, tmp_path / "cut.mp4", 25)
    info = probe_video(path)
    assert (info.num_frames, info.frame_count_source) == (40, "container")
    with caplog.at_level(logging.WARNING, logger="claver_hf.video_io.sparse_reader"):
        frames = read_frames(path, [5, 20, 35, 39], info=info)
    decoded = indices_of(frames)
    assert decoded[:2] == [5, 20]
    assert 20 <= decoded[2] == decoded[3] < 25  # the last frame before the cut, not a blank frame
    assert str(path) in caplog.text and "repeating its last decoded frame" in caplog.text


def test_damaged_packets_mid_file_are_skipped(tmp_path, caplog):
    full = write_video(tmp_path / "full.mp4", num_frames=60, gop=10, bframes=0)
    path = corrupt_packets(full, tmp_path / "damaged.mp4", [25, 26])
    with caplog.at_level(logging.WARNING, logger="claver_hf.video_io.sparse_reader"):
        frames = read_frames(path, [20, 25, 26, 27, 59])
    # Frames 25 and 26 cannot be decoded: their indices show frame 24, still on screen; decoding resumes.
    assert indices_of(frames) == [20, 24, 24, 27, 59]
    assert str(path) in caplog.text and "failed to decode" in caplog.text


def test_overstated_frame_count_in_info(tmp_path, caplog):
    path = write_video(tmp_path / "clip.mp4", num_frames=10)
    info = dataclasses.replace(probe_video(path), num_frames=14)  # as if estimated from a wrong duration
    with caplog.at_level(logging.WARNING, logger="claver_hf.video_io.sparse_reader"):
        assert indices_of(read_frames(path, [2, 13], info=info)) == [2, 9]
    assert str(path) in caplog.text


# --- decoding only what is needed ------------------------------------------------------------------------


def test_sparse_sampling_decodes_few_frames(tmp_path):
    path = write_video(tmp_path / "long.mp4", num_frames=240, gop=10)
    indices = segment_indices(240, 8, training=False)
    frames, stats = read_frames_with_stats(path, indices)
    assert indices_of(frames) == indices
    # Decoding through to the last sampled frame would take indices[-1] + 1 = 226 frames; seeking to the key
    # frame before each sampled frame takes at most a key-frame interval per frame.
    assert stats.num_seeks >= 7
    assert stats.num_decoded_frames <= 8 * 10 < (indices[-1] + 1) / 2


def test_consecutive_frames_are_decoded_without_seeking(tmp_path):
    path = write_video(tmp_path / "clip.mp4", num_frames=60, gop=12)
    frames, stats = read_frames_with_stats(path, list(range(40)))
    assert indices_of(frames) == list(range(40))
    assert (stats.num_seeks, stats.num_decoded_frames) == (0, 40)  # stops at the last needed frame


# --- B-frames: MP4 indexes decode times ------------------------------------------------------------------

# Sorted index sets around the key frames of a 60-frame GOP (0, 60, ..., 240), where a key frame's decode
# time (what MP4's index holds) lies before targets it is shown after.
NEAR_KEY_FRAMES = [
    [229, 238],  # 238 is two frames before the key frame at 240: decoding on from 229 is cheapest
    [229, 239],
    [230, 240],
    [179, 238],
    [178, 181],
    [58, 59, 61],
    [59],
    [239],
    [119, 120],
    [0, 59, 60, 119, 179, 239, 240, 255],
]


def _gop60_clip(path, **options):
    return write_video(path, num_frames=300, fps=30, gop=60, **options)


def _trimmed(source, target, frames):
    """`source` remuxed with its first `frames` frames cut off by an edit list (their packets stay, marked
    for discarding), as a stream copy cut between key frames is."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        copy = writer.add_stream_from_template(stream)
        shift = frames * round(1 / (stream.average_rate * stream.time_base))
        for packet in reader.demux(stream):
            if packet.size:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, copy
                writer.mux(packet)
    return target


def planned_stats(indices, key_frames):
    """The `DecodeStats` of the reader's plan with exact key-frame positions: it decodes frame 0, then for
    each target seeks to the last key frame at or before it iff that lies beyond the next frame."""
    decoded, seeks, position = 1, 0, 0
    for target in sorted(set(indices)):
        if target <= position:
            continue
        key = max(frame for frame in key_frames if frame <= target)
        if key > position + 1:
            decoded, seeks = decoded + target - key + 1, seeks + 1
        else:
            decoded += target - position
        position = target
    return DecodeStats(num_decoded_frames=decoded, num_seeks=seeks)


@needs_x264
def test_b_frames_before_a_key_frame_do_not_seek_behind_the_decode_position(tmp_path):
    # The key frame at 240 is decoded two frames (the B-frame delay) before it is shown, so its index
    # timestamp reads as frame 238. Taking it for a key frame before 238 made the reader seek from 229,
    # and FFmpeg, seeking by presentation time, went back to the key frame at 180: 110 frames decoded.
    path = _gop60_clip(tmp_path / "clip.mp4", bframes=2)
    frames, stats = read_frames_with_stats(path, [229, 238])
    assert indices_of(frames) == [229, 238]
    # Frame 0 (always decoded first), then 180 .. 238 after one seek.
    assert stats.num_seeks == 1
    assert stats.num_decoded_frames <= 62


@pytest.mark.parametrize(
    ("suffix", "bframes", "container_options"),
    [
        (".mp4", 2, None),  # an edit list hides the 2-frame decode delay of x264's B-pyramid
        (".mp4", None, None),  # x264's default B-frames
        (".mp4", 3, {"use_editlist": "0"}),  # no edit list: the first frame is shown at the delay
        (".mp4", 2, {"movflags": "faststart"}),
        (".mp4", 2, {"movflags": "negative_cts_offsets"}),
        (".mov", 1, None),
        (".mp4", 0, None),
        (".avi", 0, None),  # AVI's index runs a frame behind its packet times
    ],
)
@needs_x264
def test_seeks_follow_the_key_frames_as_shown(tmp_path, suffix, bframes, container_options):
    path = _gop60_clip(tmp_path / f"clip{suffix}", bframes=bframes, container_options=container_options)
    for indices in NEAR_KEY_FRAMES:
        frames, stats = read_frames_with_stats(path, indices)
        assert indices_of(frames) == indices
        assert stats == planned_stats(indices, range(0, 300, 60)), indices


@needs_x264
def test_edit_list_cutting_the_start_of_a_b_frame_mp4(tmp_path):
    # The first 5 frames are cut: their packets (decoded only to reach frame 5) lead the index, marked
    # for discarding, and must not count into the decode delay.
    for bframes in (0, 2):
        path = _trimmed(
            _gop60_clip(tmp_path / f"b{bframes}.mp4", bframes=bframes), tmp_path / f"cut{bframes}.mp4", 5
        )
        # Key frames now show at 55, 115, 175, 235 (and decoding starts at frame 0). Counting the cut
        # frames into the delay would put them 5 frames later: from 116 or 237 the reader would seek back.
        for indices in (
            [224, 233],
            [174, 233],
            [53, 54, 56],
            [116, 121],
            [237, 245],
            [0, 54, 55, 234, 235, 249],
        ):
            frames, stats = read_frames_with_stats(path, indices)
            assert indices_of(frames) == [index + 5 for index in indices]
            assert stats == planned_stats(indices, [0, 55, 115, 175, 235]), (bframes, indices)
