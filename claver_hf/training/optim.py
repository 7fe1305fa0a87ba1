"""Parameter groups of the paper's recipe (docs/recipe.md)."""

from __future__ import annotations

import torch
from torch import nn

# CLAVER's temporal parts start from scratch and train with a larger learning rate.
TEMPORAL_PARAMETER_MARKERS = ("temporal_encoder.", "temporal_embedding.")
# The text tower and its projection (names as in transformers' CLIPModel).
TEXT_PARAMETER_MARKERS = ("text_model.", "text_projection.")
# Embedding tables and scales that, like biases and norms, are not weight-decayed.
NO_DECAY_MARKERS = ("position_embedding", "class_embedding", "temporal_embedding", "logit_scale")


def is_temporal_parameter(name: str) -> bool:
    return any(marker in name for marker in TEMPORAL_PARAMETER_MARKERS)


def is_decayed_parameter(name: str, parameter: torch.Tensor) -> bool:
    """Weight decay applies to matrices only: not to 1-D parameters (biases, norms), embeddings or scales."""
    return parameter.ndim >= 2 and not any(marker in name for marker in NO_DECAY_MARKERS)


def is_text_parameter(name: str) -> bool:
    return any(marker in name for marker in TEXT_PARAMETER_MARKERS)


def _part(name: str) -> str:
    if is_temporal_parameter(name):
        return "temporal"
    return "text" if is_text_parameter(name) else "clip"


def claver_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    temporal_lr_multiplier: float = 10.0,
    text_lr_multiplier: float = 1.0,
) -> list[dict]:
    """AdamW parameter groups: CLIP weights at `learning_rate`, the temporal parts (KMT blocks and temporal
    embedding) at `temporal_lr_multiplier` × that, the text tower (with its projection) at `text_lr_multiplier`
    × that; weight decay only on matrices that are not embeddings.

    Frozen parameters (`requires_grad=False`) are left out; empty groups are dropped.
    """
    multipliers = {"clip": 1.0, "temporal": temporal_lr_multiplier, "text": text_lr_multiplier}
    groups: dict[tuple[str, bool], list[torch.Tensor]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((_part(name), is_decayed_parameter(name, parameter)), []).append(parameter)
    return [
        {
            "params": params,
            "lr": learning_rate * multipliers[part],
            "weight_decay": weight_decay if decayed else 0.0,
        }
        for (part, decayed), params in sorted(groups.items())
    ]
