"""The paper's backbones (OpenAI CLIP ViT-B/32, B/16, L/14, L/14@336) as CLAVER configs."""

from __future__ import annotations

from typing import Any

from .configuration_claver import ClaverConfig

_VIT_B = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
_VIT_L = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16}
_TEXT_B = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}
_TEXT_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}

CLAVER_PRESETS: dict[str, dict[str, Any]] = {
    "B/32": {
        "vision": {**_VIT_B, "patch_size": 32, "image_size": 224},
        "text": _TEXT_B,
        "projection_dim": 512,
    },
    "B/16": {
        "vision": {**_VIT_B, "patch_size": 16, "image_size": 224},
        "text": _TEXT_B,
        "projection_dim": 512,
    },
    "L/14": {
        "vision": {**_VIT_L, "patch_size": 14, "image_size": 224},
        "text": _TEXT_L,
        "projection_dim": 768,
    },
    "L/14@336": {
        "vision": {**_VIT_L, "patch_size": 14, "image_size": 336},
        "text": _TEXT_L,
        "projection_dim": 768,
    },
}
"""Architecture of each backbone; the CLIP checkpoints are `openai/clip-vit-{base-patch32, base-patch16,
large-patch14, large-patch14-336}`."""


def preset_config(backbone: str, **vision_kwargs: Any) -> ClaverConfig:
    """A randomly initialisable [`ClaverConfig`] of one of the paper's backbones.

    Args:
        backbone: one of `CLAVER_PRESETS` (`"B/32"`, `"B/16"`, `"L/14"`, `"L/14@336"`).
        vision_kwargs: [`ClaverVisionConfig`] fields, e.g. `num_frames=16, kronecker_mask="kmcta"`.
    """
    if backbone not in CLAVER_PRESETS:
        raise ValueError(f"Unknown backbone {backbone!r}; expected one of {sorted(CLAVER_PRESETS)}.")
    preset = CLAVER_PRESETS[backbone]
    return ClaverConfig(
        vision_config={**preset["vision"], **vision_kwargs},
        text_config=preset["text"],
        projection_dim=preset["projection_dim"],
    )
