from .decoding import VideoDecodingError, probe_video, read_frames
from .processing_claver import ClaverProcessor
from .video_processing_claver import ClaverVideoProcessor

__all__ = ["ClaverProcessor", "ClaverVideoProcessor", "VideoDecodingError", "probe_video", "read_frames"]
