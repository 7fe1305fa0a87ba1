"""CLAVER pipelines for transformers' `pipeline()` factory."""

from transformers.pipelines import PIPELINE_REGISTRY

from ..modeling.modeling_claver import ClaverModel
from .label_embeddings import LabelViewEmbeddings, text_tower_fingerprint
from .zero_shot_video_classification import TASK, ZeroShotVideoClassificationPipeline


def register_pipelines() -> None:
    """Make `pipeline("zero-shot-video-classification", model=...)` build a
    [`ZeroShotVideoClassificationPipeline`]. Safe to call more than once (transformers warns on re-registration,
    so an existing registration of this class is left alone)."""
    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if registered is not None and registered["impl"] is ZeroShotVideoClassificationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=ZeroShotVideoClassificationPipeline, pt_model=ClaverModel, type="multimodal"
    )


__all__ = [
    "TASK",
    "LabelViewEmbeddings",
    "ZeroShotVideoClassificationPipeline",
    "register_pipelines",
    "text_tower_fingerprint",
]
