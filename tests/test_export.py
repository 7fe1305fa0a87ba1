"""`torch.export` of the towers with dynamic batch size and frame count (or text length): export once, then run
the exported program at other sizes and compare with the eager model."""

import pytest
import torch
from torch.export import Dim, export

from claver_hf import ClaverModel, ClaverVisionModel
from claver_hf.modeling.kronecker import kronecker_mask_cache

from .conftest import NUM_FRAMES, random_text, random_video, tiny_claver_config


class VideoFeatures(torch.nn.Module):
    def __init__(self, model: ClaverModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.get_video_features(pixel_values=pixel_values)
        return features.pooler_output, features.frame_embeds


class TextFeatures(torch.nn.Module):
    def __init__(self, model: ClaverModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


VIDEO_SHAPES = {"pixel_values": {0: Dim("batch"), 1: Dim("frames")}}
# Two batch sizes and two frame counts, neither the ones exported with nor the configured frame count.
RUN_SHAPES = [(1, 3), (3, 6)]


def assert_matches_eager(exported, eager: torch.nn.Module, *inputs: torch.Tensor) -> None:
    with torch.no_grad():
        expected = eager(*inputs)
    for out, ref in zip(exported.module()(*inputs), expected, strict=True):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "mask,implementation", [("kmta", "sdpa"), ("kmcta", "sdpa"), ("kmcta", "eager"), ("spatial", "sdpa")]
)
def test_video_features_export_with_dynamic_batch_and_frames(mask, implementation):
    model = ClaverModel(tiny_claver_config(implementation, kronecker_mask=mask)).eval()
    wrapper = VideoFeatures(model)
    kronecker_mask_cache.clear()
    exported = export(wrapper, (random_video(2, NUM_FRAMES),), dynamic_shapes=VIDEO_SHAPES)
    # Masks built while tracing are graph values: none may be left in the cache for eager calls.
    assert len(kronecker_mask_cache) == 0
    for batch, frames in RUN_SHAPES:
        assert_matches_eager(exported, wrapper, random_video(batch, frames, seed=batch + frames))


def test_vision_model_exports_with_dynamic_batch_and_frames():
    model = ClaverVisionModel(tiny_claver_config(kronecker_mask="kmta").vision_config).eval()
    exported = export(model, (random_video(2, NUM_FRAMES),), dynamic_shapes=VIDEO_SHAPES)
    # At the configured frame count the exported program resamples the temporal embedding to its own length,
    # which eager mode skips: exactly the same.
    for batch, frames in [*RUN_SHAPES, (1, NUM_FRAMES)]:
        video = random_video(batch, frames, seed=batch + frames)
        with torch.no_grad():
            expected = model(video)
        out = exported.module()(video)
        torch.testing.assert_close(out.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=0)


def test_text_features_export_with_dynamic_batch_and_length():
    model = ClaverModel(tiny_claver_config()).eval()
    wrapper = TextFeatures(model)
    text = random_text(3, length=8)
    dims = {0: Dim("texts"), 1: Dim("length", max=16)}  # at most the tiny model's 16 positions
    exported = export(
        wrapper,
        (text["input_ids"], text["attention_mask"]),
        dynamic_shapes={"input_ids": dims, "attention_mask": dims},
    )
    for texts, length in [(2, 6), (5, 12)]:
        text = random_text(texts, length)
        with torch.no_grad():
            expected = wrapper(text["input_ids"], text["attention_mask"])
        out = exported.module()(text["input_ids"], text["attention_mask"])
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_kronecker_layer_matches_eager_without_caching(dynamic):
    """`torch.compile` traces the masks too, as per-frame KMCTA chunks: dynamo keeps the frame count an int, with
    `dynamic=True` the token count is symbolic. (A symbolic frame count is the export tests' case.)"""
    from transformers import CLIPVisionConfig

    from claver_hf.modeling.kronecker import KroneckerEncoderLayer

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4)
    config._attn_implementation = "sdpa"
    layer = KroneckerEncoderLayer(config, "kmcta").eval()
    compiled = torch.compile(layer, backend="eager", dynamic=dynamic, fullgraph=True)
    for frames in (3, 5):
        tokens = torch.randn(2, frames * 5, 32)
        kronecker_mask_cache.clear()
        with torch.no_grad():
            out = compiled(tokens, num_frames=frames)
            assert len(kronecker_mask_cache) == 0
            torch.testing.assert_close(out, layer(tokens, num_frames=frames), atol=1e-5, rtol=0)
