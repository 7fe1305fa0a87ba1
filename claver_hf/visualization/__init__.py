"""Seeing what CLAVER looks at: attention heat maps over the frames and word importance of prompts."""

from .attention import (
    ATTENTION_METHODS,
    AttentionMethod,
    attention_relevance,
    eager_attention,
    video_attention_maps,
)
from .explain import ExplainResult, explain_video
from .render import attention_tiles, jet, overlay, save_gif, save_grid, save_mp4, save_word_importance
from .words import WORD_METHODS, WordMethod, word_importance, word_scores

__all__ = [
    "ATTENTION_METHODS",
    "WORD_METHODS",
    "AttentionMethod",
    "ExplainResult",
    "WordMethod",
    "attention_relevance",
    "attention_tiles",
    "eager_attention",
    "explain_video",
    "jet",
    "overlay",
    "save_gif",
    "save_grid",
    "save_mp4",
    "save_word_importance",
    "video_attention_maps",
    "word_importance",
    "word_scores",
]
