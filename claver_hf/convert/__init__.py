"""Checkpoint conversion: reference CLAVER checkpoints and OpenAI CLIP weights to transformers folders."""

from .openai_clip import convert_openai_clip, convert_openai_clip_state_dict
from .reference import (
    convert_reference_checkpoint,
    convert_reference_state_dict,
    infer_clip_architecture,
    load_state_dict_file,
)

__all__ = [
    "convert_openai_clip",
    "convert_openai_clip_state_dict",
    "convert_reference_checkpoint",
    "convert_reference_state_dict",
    "infer_clip_architecture",
    "load_state_dict_file",
]
