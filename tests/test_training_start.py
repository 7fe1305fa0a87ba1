"""Where a run starts (`claver_hf.training.start`, through `prepare_run`): the tokenizer, clip shape and config of
a CLIP checkpoint, a CLAVER checkpoint or a fresh model; overrides are applied or refused with a clear error,
never ignored."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from claver_hf import ClaverForVideoClassification
from claver_hf.processing.tokenization import clip_tokenizer
from claver_hf.training import ClaverTrainingArguments, DataTrainingArguments, ModelArguments, prepare_run

from .conftest import write_dataset
from .test_training import TINY

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)


def plan_for(dataset, tmp_path, model=None, **data_fields):
    model = model or ModelArguments()
    data = DataTrainingArguments(dataset_dir=str(dataset), **data_fields)
    training = ClaverTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    return prepare_run(model, data, training)


@pytest.fixture
def clip_without_tokenizer(clip_repository, tmp_path):
    folder = tmp_path / "clip-weights-only"
    shutil.copytree(clip_repository, folder)
    for name in TOKENIZER_FILES:
        (folder / name).unlink()
    return folder


@pytest.fixture(scope="module")
def claver_checkpoint(clip_repository, tmp_path_factory):
    """A CLAVER classifier saved with its processor, as a fine-tuning run leaves it (8 frames, 32 pixels)."""
    folder = tmp_path_factory.mktemp("claver")
    plan = prepare_run(
        ModelArguments(model_name_or_path=str(clip_repository)),
        DataTrainingArguments(dataset_dir=str(write_dataset(tmp_path_factory.mktemp("data") / "data"))),
        ClaverTrainingArguments(output_dir=str(folder / "run"), report_to="none"),
    )
    plan.model.save_pretrained(folder)
    plan.processor.save_pretrained(folder)
    return folder


def test_a_clip_checkpoint_brings_its_tokenizer_frame_size_and_normalisation(
    clip_repository, dataset_dir, tmp_path
):
    config = json.loads((clip_repository / "preprocessor_config.json").read_text())
    plan = plan_for(dataset_dir, tmp_path, ModelArguments(model_name_or_path=str(clip_repository)))
    tokenizer = plan.processor.tokenizer
    assert len(tokenizer) == 49408 and tokenizer("a video of")["input_ids"] == [49406, 320, 1455, 539, 49407]
    vision = plan.model.config.vision_config
    assert (vision.num_frames, vision.image_size, vision.patch_size) == (8, 32, 16)
    video_processor = plan.processor.video_processor
    assert video_processor.crop_size["height"] == 32 and video_processor.num_frames == 8
    assert list(video_processor.image_mean) == config["image_mean"]
    assert plan.model.text_bank.input_ids[0, 0, 0] == 49406


def test_a_clip_checkpoint_with_other_normalisation_keeps_it(clip_repository, dataset_dir, tmp_path):
    folder = tmp_path / "clip"
    shutil.copytree(clip_repository, folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["image_mean"], config["image_std"] = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    video_processor = plan_for(
        dataset_dir, tmp_path, ModelArguments(model_name_or_path=str(folder))
    ).processor.video_processor
    assert list(video_processor.image_mean) == [0.5] * 3 and list(video_processor.image_std) == [0.25] * 3


def test_a_checkpoint_without_tokenizer_needs_one(clip_without_tokenizer, dataset_dir, tmp_path):
    model = ModelArguments(model_name_or_path=str(clip_without_tokenizer))
    with pytest.raises(
        ValueError, match="has no tokenizer, and its text tower must be fed .* --tokenizer_name_or_path"
    ):
        plan_for(dataset_dir, tmp_path, model)
    model.tokenizer_name_or_path = "clip"
    assert len(plan_for(dataset_dir, tmp_path, model).processor.tokenizer) == 49408
    model.tokenizer_name_or_path = str(tmp_path)  # a folder without a tokenizer
    with pytest.raises(ValueError, match="has no tokenizer"):
        plan_for(dataset_dir, tmp_path, model)


def test_word_level_is_only_for_fresh_models(clip_repository, dataset_dir, tmp_path, caplog):
    model = ModelArguments(model_name_or_path=str(clip_repository), tokenizer_name_or_path="word-level")
    with pytest.raises(ValueError, match="builds a new vocabulary, for models trained from scratch"):
        plan_for(dataset_dir, tmp_path, model)
    fresh = ModelArguments(config_overrides=TINY)
    with caplog.at_level(logging.WARNING, logger="claver_hf.training.start"):
        plan = plan_for(dataset_dir, tmp_path, fresh, num_frames=4, image_size=32)
    assert "using a word-level tokenizer" in caplog.text
    assert plan.model.config.text_config.vocab_size == len(plan.processor.tokenizer) < 100
    caplog.clear()
    fresh.tokenizer_name_or_path = "word-level"
    with caplog.at_level(logging.WARNING, logger="claver_hf.training.start"):
        plan_for(dataset_dir, tmp_path, fresh, num_frames=4, image_size=32)
    assert "word-level" not in caplog.text
    fresh.tokenizer_name_or_path = "clip"
    plan = plan_for(dataset_dir, tmp_path, fresh, num_frames=4, image_size=32)
    assert plan.model.config.text_config.vocab_size == 49408
    assert plan.model.config.text_config.eos_token_id == 49407


def save_fresh_model(dataset, tmp_path, name, tokenizer):
    """A fresh tiny classifier and its processor saved as a checkpoint."""
    model = ModelArguments(config_overrides=TINY, tokenizer_name_or_path=tokenizer)
    plan = plan_for(dataset, tmp_path, model, num_frames=4, image_size=32)
    plan.model.save_pretrained(tmp_path / name)
    plan.processor.save_pretrained(tmp_path / name)
    return tmp_path / name


def test_a_tokenizer_that_does_not_fit_the_text_tower_is_refused(claver_checkpoint, dataset_dir, tmp_path):
    words = save_fresh_model(dataset_dir, tmp_path, "words", "word-level")
    with_clip = save_fresh_model(dataset_dir, tmp_path, "with-clip", "clip")
    cases = [
        (claver_checkpoint, words, "legacy eos_token_id 2.* expects OpenAI's tokenizer, 49408 tokens"),
        (
            with_clip,
            words,
            r"pools at token id 49407 \(text_config.eos_token_id\) but the tokenizer ends texts with",
        ),
        (
            words,
            "clip",
            r"has 49408 tokens but the text tower of .* embeds \d+: it is not that model's tokenizer",
        ),
    ]
    for checkpoint, tokenizer, message in cases:
        model = ModelArguments(model_name_or_path=str(checkpoint), tokenizer_name_or_path=str(tokenizer))
        with pytest.raises(ValueError, match=message):
            plan_for(dataset_dir, tmp_path, model)
    # Each checkpoint with its own tokenizer is fine.
    for checkpoint in (claver_checkpoint, words, with_clip):
        plan_for(dataset_dir, tmp_path, ModelArguments(model_name_or_path=str(checkpoint)))


def test_frame_count_and_size_overrides_are_applied_to_a_claver_checkpoint(
    claver_checkpoint, dataset_dir, tmp_path
):
    saved = ClaverForVideoClassification.from_pretrained(claver_checkpoint)
    assert saved.config.vision_config.num_frames == 8
    model = ModelArguments(model_name_or_path=str(claver_checkpoint))
    plan = plan_for(dataset_dir, tmp_path, model, num_frames=4, image_size=48)
    vision_model = plan.model.claver.vision_model
    assert (vision_model.config.num_frames, vision_model.config.image_size) == (4, 48)
    assert vision_model.temporal_embedding.embedding.shape == (1, 4, 32)
    assert vision_model.embeddings.position_embedding.weight.shape == (10, 32)
    assert plan.processor.video_processor.num_frames == 4
    assert plan.processor.video_processor.crop_size["height"] == 48
    # Resampled exactly as the forward pass does for a clip of another length or size.
    video = torch.randn(1, 4, 3, 48, 48)
    with torch.no_grad():
        expected = saved.claver.get_video_features(video, interpolate_pos_encoding=True).pooler_output
        torch.testing.assert_close(plan.model.claver.get_video_features(video).pooler_output, expected)
    with pytest.raises(ValueError, match="must be a positive multiple of 16"):
        plan_for(dataset_dir, tmp_path, model, image_size=40)


def test_config_overrides_of_a_checkpoint(clip_repository, claver_checkpoint, dataset_dir, tmp_path, caplog):
    model = ModelArguments(model_name_or_path=str(claver_checkpoint), kronecker_mask="kmcta")
    with caplog.at_level(logging.WARNING, logger="claver_hf.training.start"):
        plan = plan_for(dataset_dir, tmp_path, model)
    assert plan.model.config.vision_config.kronecker_mask == "kmcta"
    assert all(
        layer.self_attn.mask_type == "kmcta"
        for layer in plan.model.claver.vision_model.temporal_encoder.layers
    )
    assert "trained with the kmta mask" in caplog.text

    model.kronecker_mask = "kmtaa"
    with pytest.raises(ValueError, match="`kronecker_mask` must be one of"):
        plan_for(dataset_dir, tmp_path, model)
    model.kronecker_mask = None
    model.config_overrides = json.dumps({"vision_config": {"hidden_size": 64}})
    with pytest.raises(ValueError, match=r"would change the shape of .* weight\(s\) of .*vision_model"):
        plan_for(dataset_dir, tmp_path, model)
    model.config_overrides = json.dumps({"vision_config": {"num_frames": 4}})
    with pytest.raises(
        ValueError, match="--num_frames 8 and --config_overrides vision_config.num_frames 4 disagree"
    ):
        plan_for(dataset_dir, tmp_path, model, num_frames=8)

    # A CLIP start may shape CLAVER's new temporal parts, not CLIP's weights.
    clip = ModelArguments(
        model_name_or_path=str(clip_repository),
        config_overrides=json.dumps(
            {"vision_config": {"kmt_num_hidden_layers": 2, "zero_init_temporal": True}}
        ),
    )
    plan = plan_for(dataset_dir, tmp_path, clip)
    layers = plan.model.claver.vision_model.temporal_encoder.layers
    assert len(layers) == 2 and not layers[1].mlp.fc2.weight.any()
    clip.config_overrides = json.dumps({"text_config": {"num_hidden_layers": 1}})
    with pytest.raises(ValueError, match="text_model.encoder.layers.1"):
        plan_for(dataset_dir, tmp_path, clip)


@pytest.mark.skipif(torch.accelerator.is_available(), reason="with an accelerator use_cpu is not implied")
def test_training_arguments_run_on_the_cpu_without_an_accelerator(tmp_path):
    arguments = ClaverTrainingArguments(output_dir=str(tmp_path), bf16=True, report_to="none")
    assert arguments.use_cpu and arguments.bf16 and arguments.device.type == "cpu"


def test_bundled_clip_tokenizer_is_openais():
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert tokenizer("a video of a person playing guitar")["input_ids"] == [
        49406, 320, 1455, 539, 320, 2533, 1629, 5084, 49407,
    ]  # fmt: skip
