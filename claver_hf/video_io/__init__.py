"""Reading video files: probing a file and decoding the frames at chosen indices.

Modules, each importing only those before it:

- `common`: `VideoInfo`, `VideoDecodingError`, `VIDEO_EXTENSIONS`, the frame index space and failure policy
  every reader follows, and the checks of paths and indices they share.
- `container`: PyAV containers: opening with timeouts, picking the video stream, `probe_video`, upright RGB.
- `sparse_reader`: `read_frames_with_stats`, the PyAV reader that seeks to key frames when that decodes less.
- `backends`: `read_frames`, which reads with PyAV, torchcodec or decord.
"""

from .backends import read_frames
from .common import VIDEO_EXTENSIONS, VideoDecodingError, VideoInfo
from .container import probe_video
from .sparse_reader import DecodeStats, read_frames_with_stats

__all__ = [
    "VIDEO_EXTENSIONS",
    "DecodeStats",
    "VideoDecodingError",
    "VideoInfo",
    "probe_video",
    "read_frames",
    "read_frames_with_stats",
]
