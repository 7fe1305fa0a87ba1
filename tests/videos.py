"""Small test videos written with PyAV at test time, whose pixels encode the frame index.

`index_pattern(i)` fills the left half of the frame with grey level ``LEVELS[i % 16]`` and the right half
with ``LEVELS[(i // 16) % 16]``, so 256 consecutive frames are distinguishable after lossy compression;
`pattern_index(frame)` reads the index back from a decoded (upright) frame.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Grey levels 14 apart: lossy codecs on flat areas stay within a few levels of the source.
LEVELS = np.arange(16, 240, 14, dtype=np.uint8)
Pattern = Callable[[int, int, int], np.ndarray]


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


DEFAULT_CODEC = "libx264" if has_encoder("libx264") else "mpeg4"


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB frame encoding `index` (see the module docstring)."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:, : width // 2] = LEVELS[index % 16]
    frame[:, width // 2 :] = LEVELS[(index // 16) % 16]
    return frame


def pattern_index(frame: np.ndarray) -> int:
    """The index encoded by `index_pattern` in a decoded ``(H, W, 3)`` frame; away from the edges and
    the middle seam, where compression blurs."""
    height, width = frame.shape[:2]
    margin_y, margin_x = height // 6, width // 8
    rows = slice(margin_y, height - margin_y)
    left = frame[rows, margin_x : width // 2 - margin_x].mean()
    right = frame[rows, width // 2 + margin_x : width - margin_x].mean()
    low = int(np.abs(LEVELS.astype(float) - left).argmin())
    high = int(np.abs(LEVELS.astype(float) - right).argmin())
    return high * 16 + low


def write_video(
    path: Path,
    *,
    num_frames: int = 30,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    gop: int = 10,
    codec: str = DEFAULT_CODEC,
    pix_fmt: str = "yuv420p",
    pattern: Pattern = index_pattern,
    rotation: int = 0,
    bframes: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode `num_frames` frames ``pattern(i, width, height)`` to `path` (container from its suffix).

    Args:
        size: (width, height).
        gop: key-frame interval (exact for libx264: scene-cut key frames are disabled).
        rotation: counter-clockwise display rotation stored in the container's display matrix.
        bframes: libx264 B-frames (None keeps the encoder default).
        pts / time_base: explicit frame timestamps (variable frame rate, non-zero start); `fps` is then
            not declared to the muxer.
        container_options: muxer options, e.g. ``{"movflags": "faststart"}``.
    """
    width, height = size
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=None if pts is not None else fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        if codec == "libx264":
            options = {"keyint_min": str(gop), "sc_threshold": "0"}
            if bframes is not None:
                options["bf"] = str(bframes)
            stream.codec_context.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern(index, width, height), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[index], time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_vfr_video(path: Path, times_ms: Sequence[int], size: tuple[int, int] = (64, 48)) -> Path:
    """Variable-frame-rate Matroska file: frame ``i`` at ``times_ms[i]`` milliseconds."""
    return write_video(path, num_frames=len(times_ms), size=size, pts=times_ms, time_base=Fraction(1, 1000))


def write_gray_video(path: Path, num_frames: int = 20) -> Path:
    """Grayscale source (FFV1 ``gray`` in Matroska)."""
    return write_video(path, num_frames=num_frames, codec="ffv1", pix_fmt="gray")


def write_10bit_video(path: Path, num_frames: int = 20) -> Path:
    """10-bit source: libx264 ``yuv420p10le`` when available, else lossless FFV1 (use a .mkv path then)."""
    if DEFAULT_CODEC == "libx264":
        return write_video(path, num_frames=num_frames, pix_fmt="yuv420p10le")
    return write_video(path.with_suffix(".mkv"), num_frames=num_frames, codec="ffv1", pix_fmt="yuv420p10le")


def write_audio_only(path: Path, seconds: float = 0.5, sample_rate: int = 16000) -> Path:
    """Audio-only file (AAC in an .m4a/.mp4 container): a sine tone, no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        samples = np.sin(np.arange(int(seconds * sample_rate)) * 0.05).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_unknown_codec_video(path: Path) -> Path:
    """AVI whose video FourCC is replaced by one FFmpeg has no decoder for."""
    write_video(path, num_frames=10, codec="mpeg4")
    data = path.read_bytes()
    assert data.count(b"FMP4") >= 1, "mpeg4 AVI without the expected FMP4 FourCC"
    path.write_bytes(data.replace(b"FMP4", b"ZQZQ"))
    return path


def write_wrong_frame_count_mp4(path: Path, num_frames: int = 30) -> Path:
    """MP4 whose sample table (stts) claims twice as many frames as it holds."""
    write_video(path, num_frames=num_frames, codec="mpeg4", gop=5)
    data = bytearray(path.read_bytes())
    box = data.find(b"stts")
    # stts body: version/flags (4 bytes), entry count (4), then (sample count, sample delta) pairs.
    (entries,) = struct.unpack(">I", data[box + 8 : box + 12])
    assert entries == 1, "constant-rate stts with a single entry expected"
    (count,) = struct.unpack(">I", data[box + 12 : box + 16])
    assert count == num_frames
    data[box + 12 : box + 16] = struct.pack(">I", 2 * count)
    path.write_bytes(bytes(data))
    return path


def truncated_copy(source: Path, target: Path, fraction: float = 0.5) -> Path:
    """The first `fraction` of `source`'s bytes."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def cut_at_packet(source: Path, target: Path, packet_number: int) -> Path:
    """`source` cut inside its `packet_number`-th video packet (decode order), as an interrupted
    download of a file with its index at the start (MP4 faststart) would be."""
    with av.open(str(source)) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
        cut = packets[packet_number].pos + packets[packet_number].size // 2
    target.write_bytes(source.read_bytes()[:cut])
    return target


def corrupt_packets(source: Path, target: Path, packet_numbers: Sequence[int]) -> Path:
    """`source` with the payload of the given video packets (decode order) overwritten by random bytes."""
    with av.open(str(source)) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
        spans = [(packets[n].pos, packets[n].size) for n in packet_numbers]
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(0)
    for position, size in spans:
        data[position : position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def write_zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def write_text_as_mp4(path: Path) -> Path:
    path.write_text("This is a text file, not a video.\n" * 20)
    return path


def make_directory(path: Path) -> Path:
    path.mkdir()
    return path
