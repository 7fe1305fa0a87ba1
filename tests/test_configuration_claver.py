import json

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

from claver_hf import CLAVER_PRESETS, ClaverConfig, ClaverModel, ClaverVisionConfig, preset_config

from .conftest import tiny_clip_config


def test_defaults():
    config = ClaverConfig()
    vision = config.vision_config
    assert isinstance(vision, ClaverVisionConfig)
    assert (vision.num_frames, vision.kronecker_mask, vision.kmt_num_hidden_layers) == (8, "kmta", 4)
    assert config.num_frames == 8
    assert ClaverVisionConfig(num_hidden_layers=24).kmt_num_hidden_layers == 8
    assert ClaverVisionConfig(num_hidden_layers=24, kmt_num_hidden_layers=2).kmt_num_hidden_layers == 2


def test_json_round_trip(tmp_path):
    config = ClaverConfig(
        vision_config={
            "patch_size": 16,
            "num_frames": 16,
            "kronecker_mask": "kmcta",
            "kmt_num_hidden_layers": 2,
        },
        num_text_views_per_step=3,
        id2label={0: "run", 1: "jump"},
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "claver"
    assert saved["vision_config"]["kronecker_mask"] == "kmcta"
    loaded = ClaverConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert isinstance(loaded.vision_config, ClaverVisionConfig)
    assert loaded.id2label == {0: "run", 1: "jump"}
    assert type(AutoConfig.from_pretrained(tmp_path)) is ClaverConfig
    assert ClaverConfig.from_dict(json.loads(config.to_json_string())).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"kronecker_mask": "temporal"}, "`kronecker_mask` must be one of"),
        ({"num_frames": 0}, "`num_frames` must be a positive"),
        ({"kmt_num_hidden_layers": -1}, "`kmt_num_hidden_layers` must be >= 0"),
        ({"image_size": 224, "patch_size": 15}, "must be a multiple of `patch_size`"),
        ({"hidden_size": 100, "num_attention_heads": 12}, "not a multiple of the number of attention heads"),
    ],
)
def test_invalid_vision_values(kwargs, message):
    with pytest.raises(StrictDataclassError, match=message):
        ClaverVisionConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_text_views_per_step": 0}, "num_text_views_per_step"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"vision_config": {"kronecker_mask": "nope"}}, "kronecker_mask"),
    ],
)
def test_invalid_values(kwargs, message):
    with pytest.raises(StrictDataclassError, match=message):
        ClaverConfig(**kwargs)


def test_from_clip_config_keeps_towers():
    clip = tiny_clip_config()
    config = ClaverConfig.from_clip_config(
        clip, num_frames=6, kronecker_mask="kmcta", id2label={0: "a", 1: "b"}
    )
    assert config.vision_config.num_frames == 6 and config.vision_config.kronecker_mask == "kmcta"
    assert config.vision_config.hidden_size == clip.vision_config.hidden_size
    assert config.text_config.eos_token_id == clip.text_config.eos_token_id
    assert config.projection_dim == clip.projection_dim
    assert config.id2label == {0: "a", 1: "b"}


@pytest.mark.parametrize(
    "backbone,params_m",
    # CLIP's parameter count plus the KMT blocks (4 x 7.1M for ViT-B, 8 x 12.6M for ViT-L).
    [("B/32", 179.7), ("B/16", 178.0), ("L/14", 528.4), ("L/14@336", 528.7)],
)
def test_presets(backbone, params_m):
    config = preset_config(backbone, num_frames=16)
    assert config.vision_config.num_frames == 16
    with torch.device("meta"):
        model = ClaverModel(config)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=0.1)


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown backbone 'H/14'"):
        preset_config("H/14")
    assert set(CLAVER_PRESETS) == {"B/32", "B/16", "L/14", "L/14@336"}


def test_measured_cost_matches_hand_count():
    """B/16, 8 frames: ~140 GMACs of CLIP towers plus ~60 GMACs in 4 KMT blocks (docs/recipe.md#published-results), counted as FLOPs."""
    from claver_hf.modeling.cost import measure_cost

    cost = measure_cost(preset_config("B/16"), num_frames=8)
    assert cost.parameters == 177_978_369
    assert cost.temporal_parameters == 4 * 7_087_872 + 8 * 768
    assert 190e9 < cost.video_flops / 2 < 210e9
    assert 55e9 < cost.temporal_flops / 2 < 65e9
    kmcta = measure_cost(preset_config("B/16", kronecker_mask="kmcta"), num_frames=8)
    assert kmcta.temporal_flops < cost.temporal_flops  # KMCTA skips the blocked key ranges
