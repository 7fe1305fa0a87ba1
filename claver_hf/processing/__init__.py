from .processing_claver import ClaverProcessor
from .video_processing_claver import ClaverVideoProcessor

__all__ = ["ClaverProcessor", "ClaverVideoProcessor"]
