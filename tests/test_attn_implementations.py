"""Which attention kernels the CLAVER models accept: the KMT blocks pass 4-D masks that only `eager`, `sdpa` and
`flex_attention` apply; any other kernel must be refused with an error that names it and what is supported."""

import contextlib

import pytest
import torch

from claver_hf import ClaverForVideoClassification, ClaverModel, ClaverVisionModel
from claver_hf.modeling.kronecker import KroneckerEncoderLayer

from .conftest import random_text, random_video, tiny_claver_config

UNSUPPORTED = ["flash_attention_2", "flash_attention_3", "paged|eager"]
REFUSED = r"cannot use attn_implementation='{}'.*one of 'eager', 'sdpa', 'flex_attention'"


def refused(implementation: str) -> str:
    return REFUSED.format(implementation.replace("|", r"\|"))


@pytest.mark.parametrize("implementation", UNSUPPORTED)
@pytest.mark.parametrize("cls", [ClaverModel, ClaverForVideoClassification])
def test_from_config_refuses_kernels_that_cannot_take_the_masks(cls, implementation):
    with pytest.raises(ValueError, match=f"{cls.__name__} " + refused(implementation)):
        cls._from_config(tiny_claver_config(), attn_implementation=implementation)


def test_vision_model_refuses_flash_attention_without_a_text_tower_hint():
    with pytest.raises(ValueError, match="ClaverVisionModel " + refused("flash_attention_2")) as error:
        ClaverVisionModel._from_config(
            tiny_claver_config().vision_config, attn_implementation="flash_attention_2"
        )
    assert "text_config" not in str(error.value)


@pytest.mark.parametrize("cls", [ClaverModel, ClaverVisionModel])
def test_from_pretrained_refuses_flash_attention(tmp_path, cls):
    config = tiny_claver_config()
    cls(config if cls is ClaverModel else config.vision_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=refused("flash_attention_2")):
        cls.from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_set_attn_implementation_refuses_flash_attention_and_keeps_the_current_one():
    model = ClaverModel(tiny_claver_config("sdpa"))
    with pytest.raises(ValueError, match="ClaverModel " + refused("flash_attention_2")):
        model.set_attn_implementation("flash_attention_2")
    with pytest.raises(ValueError, match="ClaverVisionModel " + refused("flash_attention_3")):
        model.set_attn_implementation({"vision_config": "flash_attention_3"})
    assert model.config.vision_config._attn_implementation == "sdpa"
    assert model.config.text_config._attn_implementation == "sdpa"


def test_only_the_text_tower_may_ask_for_flash_attention():
    # The request gets past CLAVER's check to CLIP's own, which needs the flash-attn package (absent here).
    with contextlib.suppress(ImportError):
        model = ClaverModel._from_config(
            tiny_claver_config(),
            attn_implementation={"text_config": "flash_attention_2", "vision_config": "sdpa"},
        )
        assert model.config.text_config._attn_implementation == "flash_attention_2"
        assert model.config.vision_config._attn_implementation == "sdpa"


def test_flags_do_not_claim_flash_attention_or_external_backends():
    for cls in (ClaverModel, ClaverVisionModel, ClaverForVideoClassification):
        assert not cls._supports_flash_attn and not cls.is_backend_compatible()
        assert cls._supports_sdpa and cls._supports_flex_attn
    # The text tower is CLIP's, unchanged.
    text_model = ClaverModel(tiny_claver_config()).text_model
    assert text_model._supports_flash_attn


def test_kronecker_layer_refuses_an_unsupported_kernel():
    config = tiny_claver_config("flash_attention_2").vision_config
    layer = KroneckerEncoderLayer(config, "kmta")
    with pytest.raises(ValueError, match="KroneckerMaskAttention " + refused("flash_attention_2")):
        layer(torch.randn(1, 2 * 5, 32), num_frames=2)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("mask", ["kmta", "kmcta"])
def test_eager_and_sdpa_give_the_same_scores(implementation, mask):
    video, text = random_video(), random_text(3)
    reference = ClaverModel(tiny_claver_config("sdpa", kronecker_mask=mask)).eval()
    config = tiny_claver_config(kronecker_mask=mask)
    model = ClaverModel._from_config(config, attn_implementation=implementation).eval()
    model.load_state_dict(reference.state_dict())
    assert model.config.vision_config._attn_implementation == implementation
    assert reference.config.vision_config._attn_implementation == "sdpa"
    with torch.no_grad():
        expected = reference(pixel_values=video, **text).logits_per_video
        torch.testing.assert_close(
            model(pixel_values=video, **text).logits_per_video, expected, atol=1e-5, rtol=0
        )


def test_supported_kernels_can_be_switched_to():
    model = ClaverModel(tiny_claver_config("sdpa"))
    for implementation in ("eager", "flex_attention", "sdpa"):
        model.set_attn_implementation(implementation)
        assert model.config.vision_config._attn_implementation == implementation
        assert model.config.text_config._attn_implementation == implementation
