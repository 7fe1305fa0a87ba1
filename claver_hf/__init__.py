"""claver-hf: CLAVER video action recognition as a Hugging Face Transformers model."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVideoClassification,
    AutoProcessor,
    AutoVideoProcessor,
)

from .configuration import CLAVER_PRESETS, ClaverConfig, ClaverVisionConfig, preset_config
from .modeling import (
    ClaverForVideoClassification,
    ClaverModel,
    ClaverOutput,
    ClaverPreTrainedModel,
    ClaverVideoClassifierOutput,
    ClaverVideoFeaturesOutput,
    ClaverVisionModel,
    ClaverVisionModelOutput,
    KroneckerEncoderLayer,
    KroneckerMaskAttention,
    kronecker_allowed_mask,
    kronecker_mask_mod,
)
from .pipelines import ZeroShotVideoClassificationPipeline, register_pipelines
from .processing import ClaverProcessor, ClaverVideoProcessor
from .video_io import VideoDecodingError

__version__ = "0.1.0"

AutoConfig.register(ClaverConfig.model_type, ClaverConfig, exist_ok=True)
AutoConfig.register(ClaverVisionConfig.model_type, ClaverVisionConfig, exist_ok=True)
AutoModel.register(ClaverConfig, ClaverModel, exist_ok=True)
AutoModel.register(ClaverVisionConfig, ClaverVisionModel, exist_ok=True)
AutoModelForVideoClassification.register(ClaverConfig, ClaverForVideoClassification, exist_ok=True)
AutoVideoProcessor.register(ClaverConfig, ClaverVideoProcessor, exist_ok=True)
AutoProcessor.register(ClaverConfig, ClaverProcessor, exist_ok=True)
register_pipelines()

__all__ = [
    "CLAVER_PRESETS",
    "preset_config",
    "ClaverConfig",
    "ClaverForVideoClassification",
    "ClaverModel",
    "ClaverOutput",
    "ClaverPreTrainedModel",
    "ClaverProcessor",
    "ClaverVideoProcessor",
    "VideoDecodingError",
    "ZeroShotVideoClassificationPipeline",
    "ClaverVideoClassifierOutput",
    "ClaverVideoFeaturesOutput",
    "ClaverVisionConfig",
    "ClaverVisionModel",
    "ClaverVisionModelOutput",
    "KroneckerEncoderLayer",
    "KroneckerMaskAttention",
    "kronecker_allowed_mask",
    "kronecker_mask_mod",
]
