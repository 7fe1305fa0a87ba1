"""Parameter and FLOP counts of CLAVER models, measured with `torch.utils.flop_counter` on the meta device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..configuration.configuration_claver import ClaverConfig
from .modeling_claver import ClaverModel


@dataclass(frozen=True)
class ModelCost:
    """Sizes of one CLAVER configuration; FLOPs count a multiply-add as 2 (FLOPs, not MACs)."""

    parameters: int
    vision_parameters: int
    text_parameters: int
    temporal_parameters: int
    video_flops: int
    """Forward FLOPs of the video encoder for one clip (CLIP per-frame tower + temporal part + projection)."""
    temporal_flops: int
    """The part of `video_flops` spent in the KMT blocks."""
    text_flops_per_prompt: int
    """Forward FLOPs of the text encoder for one 77-token prompt."""


def measure_cost(config: ClaverConfig, num_frames: int, text_length: int = 77) -> ModelCost:
    """Count parameters and forward FLOPs of `config` at `num_frames` frames, without allocating weights."""
    with torch.device("meta"):
        model = ClaverModel(config).eval()
    vision = config.vision_config
    pixel_values = torch.empty(
        1, num_frames, vision.num_channels, vision.image_size, vision.image_size, device="meta"
    )
    input_ids = torch.zeros(1, text_length, dtype=torch.long, device="meta")

    with FlopCounterMode(display=False) as video_counter, torch.no_grad():
        model.get_video_features(pixel_values)
    with FlopCounterMode(display=False) as text_counter, torch.no_grad():
        model.get_text_features(input_ids)
    temporal_flops = sum(
        sum(ops.values())
        for name, ops in video_counter.get_flop_counts().items()
        if name.endswith(".temporal_encoder")
    )

    def size(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    temporal = size(model.vision_model.temporal_encoder)
    if model.vision_model.temporal_embedding is not None:
        temporal += size(model.vision_model.temporal_embedding)
    return ModelCost(
        parameters=size(model),
        vision_parameters=size(model.vision_model) + size(model.visual_projection),
        text_parameters=size(model.text_model) + size(model.text_projection),
        temporal_parameters=temporal,
        video_flops=video_counter.get_total_flops(),
        temporal_flops=temporal_flops,
        text_flops_per_prompt=text_counter.get_total_flops(),
    )
