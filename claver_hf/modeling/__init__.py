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
from .scoring import class_log_probs, text_view_logits, view_averaged_log_probs
from .text_bank import ClaverTextBank

__all__ = [
    "ClaverForVideoClassification",
    "ClaverModel",
    "ClaverOutput",
    "ClaverPreTrainedModel",
    "ClaverTextBank",
    "ClaverVideoClassifierOutput",
    "ClaverVideoFeaturesOutput",
    "ClaverVisionModel",
    "ClaverVisionModelOutput",
    "KroneckerEncoderLayer",
    "KroneckerMaskAttention",
    "kronecker_allowed_mask",
    "class_log_probs",
    "kronecker_mask_mod",
    "text_view_logits",
    "view_averaged_log_probs",
]
