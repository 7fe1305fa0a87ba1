from .kronecker import (
    KroneckerEncoderLayer,
    KroneckerMaskAttention,
    kronecker_allowed_mask,
    kronecker_mask_mod,
)
from .modeling_claver import (
    ClaverForVideoClassification,
    ClaverModel,
    ClaverOutput,
    ClaverPreTrainedModel,
    ClaverVideoClassifierOutput,
    ClaverVideoFeaturesOutput,
    ClaverVisionModel,
    ClaverVisionModelOutput,
)

__all__ = [
    "ClaverForVideoClassification",
    "ClaverModel",
    "ClaverOutput",
    "ClaverPreTrainedModel",
    "ClaverVideoClassifierOutput",
    "ClaverVideoFeaturesOutput",
    "ClaverVisionModel",
    "ClaverVisionModelOutput",
    "KroneckerEncoderLayer",
    "KroneckerMaskAttention",
    "kronecker_allowed_mask",
    "kronecker_mask_mod",
]
