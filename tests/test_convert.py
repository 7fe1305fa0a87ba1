"""Conversion of reference CLAVER checkpoints and OpenAI CLIP state dicts (tiny random weights, built here)."""

import json

import pytest
import torch
from transformers import AutoModelForVideoClassification

import claver_hf  # noqa: F401  (registers the Auto classes)
from claver_hf import ClaverForVideoClassification, ClaverModel
from claver_hf.convert import (
    convert_openai_clip,
    convert_openai_clip_state_dict,
    convert_reference_checkpoint,
    convert_reference_state_dict,
)

from .conftest import random_video
from .reference_claver import encode_text, encode_video, random_reference_state_dict

HEADS = 4
HEAD_DIM = 32 // HEADS  # the tiny widths are 32; the reference code's 64 would give no head at all
FRAMES = 4
VOCAB = 64


class TrainingConfig:
    """Stands for a non-tensor object in a checkpoint (the reference code saves its config object)."""


def reference_text(num_texts: int = 3, length: int = 16) -> dict[str, torch.Tensor]:
    """`bos tokens... eos pad...` with eos the highest id, as in CLIP's vocabulary."""
    ids = torch.full((num_texts, length), VOCAB - 1)
    mask = torch.zeros(num_texts, length, dtype=torch.long)
    for i in range(num_texts):
        n = 4 + 3 * i
        ids[i, 0] = VOCAB - 2
        ids[i, 1 : n - 1] = torch.randint(1, VOCAB - 2, (n - 2,))
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def reference_sd() -> dict[str, torch.Tensor]:
    return random_reference_state_dict(num_frames=FRAMES)


@pytest.fixture(scope="module")
def clip_sd(reference_sd) -> dict[str, torch.Tensor]:
    return {k: v for k, v in reference_sd.items() if "temporal" not in k and "transformer_t" not in k}


@pytest.mark.parametrize("mask_type", ["kmta", "kmcta"])
def test_reference_checkpoint_matches_reference_forward(tmp_path, reference_sd, mask_type):
    path = tmp_path / "claver.pth"
    torch.save({"model": reference_sd, "epoch": 30, "max_accuracy": 0.5}, path)
    out = convert_reference_checkpoint(path, tmp_path / "hf", kronecker_mask=mask_type, head_dim=HEAD_DIM)
    assert sorted(p.name for p in out.iterdir()) == [
        "_compat.py",
        "config.json",
        "configuration_claver.py",
        "kronecker.py",
        "model.safetensors",
        "modeling_claver.py",
        "remote_code.py",
        "scoring.py",
        "text_bank.py",
    ]

    model = ClaverModel.from_pretrained(out).eval()
    vision, text = model.config.vision_config, model.config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (32, 3, HEADS)
    assert (vision.patch_size, vision.image_size, vision.intermediate_size) == (16, 32, 128)
    assert (vision.num_frames, vision.kmt_num_hidden_layers, vision.kronecker_mask) == (FRAMES, 1, mask_type)
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size, text.max_position_embeddings) == (
        32,
        2,
        VOCAB,
        16,
    )
    assert (text.bos_token_id, text.eos_token_id, model.config.projection_dim) == (VOCAB - 2, VOCAB - 1, 16)

    video = random_video(2, FRAMES)
    texts = reference_text()
    with torch.no_grad():
        video_features = model.get_video_features(pixel_values=video)
        text_features = model.get_text_features(**texts).pooler_output
        expected_video, expected_frames = encode_video(reference_sd, video, HEADS, mask_type)
        expected_text = encode_text(reference_sd, texts["input_ids"], HEADS)
    torch.testing.assert_close(video_features.frame_embeds, expected_frames, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(video_features.pooler_output, expected_video, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(text_features, expected_text, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.logit_scale.detach(), reference_sd["logit_scale"])


def test_kmta_and_kmcta_conversions_differ(reference_sd):
    """The mask is the caller's, not the weights': the two conversions share tensors but not outputs."""
    video = random_video(1, FRAMES)
    embeds = []
    for mask_type in ("kmta", "kmcta"):
        config, weights = convert_reference_state_dict(reference_sd, mask_type, head_dim=HEAD_DIM)
        model = ClaverModel(config).eval()
        model.load_state_dict(weights)
        with torch.no_grad():
            embeds.append(model.get_video_features(pixel_values=video).pooler_output)
    assert not torch.allclose(*embeds, atol=1e-4)


def test_unused_and_missing_keys_are_named(reference_sd):
    extra = {**reference_sd, "visual.prompts_generator.alpha": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"not used.*visual\.prompts_generator\.alpha"):
        convert_reference_state_dict(extra, head_dim=HEAD_DIM)
    missing = {k: v for k, v in reference_sd.items() if k != "visual.transformer.resblocks.1.ln_2.bias"}
    with pytest.raises(ValueError, match=r"missing.*visual\.transformer\.resblocks\.1\.ln_2\.bias"):
        convert_reference_state_dict(missing, head_dim=HEAD_DIM)


def test_shape_mismatch_names_key_and_shapes(reference_sd):
    broken = {
        **reference_sd,
        "transformer.resblocks.1.attn.in_proj_weight": torch.zeros(96, 31),
        "visual.proj": torch.zeros(32, 8),  # the text projection says 16
    }
    with pytest.raises(ValueError) as error:
        convert_reference_state_dict(broken, head_dim=HEAD_DIM)
    message = str(error.value)
    assert "transformer.resblocks.1.attn.in_proj_weight: expected shape (96, 32), found (96, 31)" in message
    assert "visual.proj: expected shape (32, 16), found (32, 8)" in message


def test_non_tensor_objects_are_refused(tmp_path, reference_sd):
    path = tmp_path / "claver.pth"
    torch.save({"model": reference_sd, "config": TrainingConfig()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        convert_reference_checkpoint(path, tmp_path / "hf", head_dim=HEAD_DIM)
    assert not (tmp_path / "hf").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_archives_are_refused(tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ValueError, match="TorchScript"):
        convert_openai_clip(path, tmp_path / "hf")


def test_each_converter_rejects_the_other_format(reference_sd, clip_sd):
    with pytest.raises(ValueError, match="convert_openai_clip"):
        convert_reference_state_dict(clip_sd, head_dim=HEAD_DIM)
    with pytest.raises(ValueError, match="convert_reference_checkpoint"):
        convert_openai_clip_state_dict(reference_sd, head_dim=HEAD_DIM)


def test_openai_clip_conversion_keeps_clip_and_initialises_temporal_parts(tmp_path, reference_sd, clip_sd):
    path = tmp_path / "clip.pth"
    # OpenAI's TorchScript state dicts also carry these sizes.
    metadata = {
        "input_resolution": torch.tensor(32),
        "context_length": torch.tensor(16),
        "vocab_size": torch.tensor(VOCAB),
    }
    torch.save({**clip_sd, **metadata}, path)
    out = convert_openai_clip(
        path, tmp_path / "hf", num_frames=FRAMES, kronecker_mask="kmcta", head_dim=HEAD_DIM
    )
    model = ClaverModel.from_pretrained(out).eval()
    vision = model.config.vision_config
    assert (vision.num_frames, vision.kmt_num_hidden_layers, vision.kronecker_mask) == (FRAMES, 1, "kmcta")

    # CLIP tensors are the input's, checked here without the converter's key rules.
    layer = model.vision_model.encoder.layers[2]
    in_proj = clip_sd["visual.transformer.resblocks.2.attn.in_proj_weight"]
    torch.testing.assert_close(layer.self_attn.q_proj.weight.detach(), in_proj[:32], rtol=0, atol=0)
    torch.testing.assert_close(layer.self_attn.v_proj.weight.detach(), in_proj[64:], rtol=0, atol=0)
    torch.testing.assert_close(
        model.visual_projection.weight.detach(), clip_sd["visual.proj"].t(), rtol=0, atol=0
    )
    torch.testing.assert_close(
        model.vision_model.embeddings.patch_embedding.weight.detach(),
        clip_sd["visual.conv1.weight"],
        rtol=0,
        atol=0,
    )
    texts = reference_text()
    with torch.no_grad():
        torch.testing.assert_close(
            model.get_text_features(**texts).pooler_output,
            encode_text(clip_sd, texts["input_ids"], HEADS),
            atol=1e-5,
            rtol=1e-5,
        )
    # ... and so is every tensor the converter produced.
    _, weights = convert_openai_clip_state_dict(clip_sd, num_frames=FRAMES, head_dim=HEAD_DIM)
    state = model.state_dict()
    for key, tensor in weights.items():
        torch.testing.assert_close(state[key], tensor, rtol=0, atol=0, msg=key)

    temporal = {k: v for k, v in state.items() if k.startswith("vision_model.temporal_")}
    assert temporal and set(temporal).isdisjoint(weights)
    assert all(torch.isfinite(v).all() for v in temporal.values())
    assert temporal["vision_model.temporal_embedding.embedding"].std() > 0
    with torch.no_grad():
        assert torch.isfinite(
            model.get_video_features(pixel_values=random_video(1, FRAMES)).pooler_output
        ).all()


def test_openai_size_entries_must_match(clip_sd):
    with pytest.raises(ValueError, match="context_length"):
        convert_openai_clip_state_dict({**clip_sd, "context_length": 77}, head_dim=HEAD_DIM)


def test_classification_folder_loads_with_auto_class(tmp_path, reference_sd):
    path = tmp_path / "claver.pth"
    torch.save({"model": reference_sd}, path)
    labels = {0: "waving", 1: "jumping", 2: "clapping"}
    out = convert_reference_checkpoint(
        path, tmp_path / "hf", id2label=labels, classification=True, head_dim=HEAD_DIM
    )
    assert json.loads((out / "config.json").read_text())["architectures"] == ["ClaverForVideoClassification"]
    model = AutoModelForVideoClassification.from_pretrained(out).eval()
    assert isinstance(model, ClaverForVideoClassification)
    assert model.config.id2label == labels and model.config.label2id["jumping"] == 1

    video = random_video(1, FRAMES)
    with torch.no_grad():
        embeds = model.claver.get_video_features(pixel_values=video).pooler_output
    torch.testing.assert_close(embeds, encode_video(reference_sd, video, HEADS)[0], atol=1e-5, rtol=1e-5)


def test_command_line(tmp_path, reference_sd, clip_sd, capsys):
    from claver_hf.cli import main

    torch.save({"model": reference_sd}, tmp_path / "claver.pth")
    torch.save(clip_sd, tmp_path / "clip.pt")
    (tmp_path / "labels.csv").write_text("id,name\n0,waving\n1,jumping\n")
    args = ["--head-dim", str(HEAD_DIM), "--kronecker-mask", "kmcta"]
    assert main(["convert", "reference", str(tmp_path / "claver.pth"), str(tmp_path / "ref"), *args]) == 0
    assert ClaverModel.from_pretrained(tmp_path / "ref").config.vision_config.kronecker_mask == "kmcta"
    labels = ["--labels", str(tmp_path / "labels.csv")]
    assert (
        main(["convert", "openai-clip", str(tmp_path / "clip.pt"), str(tmp_path / "clip"), *args, *labels])
        == 0
    )
    assert ClaverForVideoClassification.from_pretrained(tmp_path / "clip").config.id2label == {
        0: "waving",
        1: "jumping",
    }
    assert "wrote" in capsys.readouterr().out
    assert main(["convert", "reference", str(tmp_path / "missing.pth"), str(tmp_path / "x")]) == 2
    assert "claver-hf: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "convert",
                "reference",
                str(tmp_path / "claver.pth"),
                str(tmp_path / "y"),
                "--kronecker-mask",
                "kmtaa",
            ]
        )
    assert exit_.value.code == 2 and "invalid choice: 'kmtaa'" in capsys.readouterr().err
