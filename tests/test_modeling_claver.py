import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForVideoClassification, CLIPModel
from transformers.models.clip.modeling_clip import CLIPMLP, CLIPAttention

from claver_hf import ClaverForVideoClassification, ClaverModel, ClaverVisionModel

from .conftest import (
    NUM_FRAMES,
    TOKENS_PER_FRAME,
    random_text,
    random_video,
    tiny_claver_config,
    tiny_clip_config,
)

LABELS = {0: "waving", 1: "jumping", 2: "clapping"}


def clip_text(num_texts: int) -> dict[str, torch.Tensor]:
    """Texts in CLIP's own vocabulary (start 49406, end 49407, the largest id), padded with the end token."""
    ids = torch.full((num_texts, 8), 49407)
    mask = torch.zeros(num_texts, 8, dtype=torch.long)
    for i in range(num_texts):
        ids[i, 0], ids[i, 1 : 3 + i] = 49406, torch.arange(320, 322 + i)
        mask[i, : 4 + i] = 1
    return {"input_ids": ids, "attention_mask": mask}


def classifier(
    num_views: int = 3, view_mask: torch.Tensor | None = None, **config_kwargs
) -> ClaverForVideoClassification:
    config = tiny_claver_config(**config_kwargs)
    config.id2label = LABELS
    model = ClaverForVideoClassification(config)
    text = random_text(num_views * len(LABELS), generator=torch.Generator().manual_seed(1))
    model.set_text_bank(
        text["input_ids"].view(num_views, len(LABELS), -1),
        text["attention_mask"].view(num_views, len(LABELS), -1),
        view_mask=view_mask,
    )
    return model


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    clip = CLIPModel(tiny_clip_config())
    with torch.no_grad():
        clip.logit_scale.fill_(3.0)  # distinguishable from CLAVER's init value
    clip.save_pretrained(folder)
    return folder, clip


# ---------------------------------------------------------------- shapes and outputs


def test_model_outputs_and_shapes():
    model = ClaverModel(tiny_claver_config()).eval()
    text = random_text(5)
    out = model(pixel_values=random_video(2), **text)
    assert out.logits_per_video.shape == (2, 5) and out.logits_per_text.shape == (5, 2)
    assert out.video_embeds.shape == (2, 16) and out.text_embeds.shape == (5, 16)
    assert out.frame_embeds.shape == (2, NUM_FRAMES, 16)
    assert out.vision_model_output.last_hidden_state.shape == (2, NUM_FRAMES * TOKENS_PER_FRAME, 32)
    # Video embedding = mean over frames of the L2-normalised frame embeddings, not re-normalised.
    torch.testing.assert_close(out.frame_embeds.norm(dim=-1), torch.ones(2, NUM_FRAMES))
    torch.testing.assert_close(out.video_embeds, out.frame_embeds.mean(1))
    expected = (
        model.logit_scale.exp()
        * out.video_embeds
        @ F.normalize(model.get_text_features(**text).pooler_output, dim=-1).t()
    )
    torch.testing.assert_close(out.logits_per_video, expected)


def test_contrastive_loss():
    model = ClaverModel(tiny_claver_config())
    out = model(pixel_values=random_video(3), **random_text(3), return_loss=True)
    targets = torch.arange(3)
    expected = (
        F.cross_entropy(out.logits_per_video, targets) + F.cross_entropy(out.logits_per_text, targets)
    ) / 2
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match="as many texts as videos"):
        model(pixel_values=random_video(2), **random_text(3), return_loss=True)


def test_recorded_hidden_states_and_attentions():
    model = ClaverVisionModel(tiny_claver_config("eager").vision_config).eval()
    out = model(
        random_video(2),
        output_hidden_states=True,
        output_attentions=True,
        output_temporal_hidden_states=True,
        output_temporal_attentions=True,
    )
    n = NUM_FRAMES * TOKENS_PER_FRAME
    assert len(out.hidden_states) == 4 and out.hidden_states[0].shape == (
        2 * NUM_FRAMES,
        TOKENS_PER_FRAME,
        32,
    )
    assert len(out.attentions) == 3 and out.attentions[0].shape == (
        2 * NUM_FRAMES,
        4,
        TOKENS_PER_FRAME,
        TOKENS_PER_FRAME,
    )
    assert len(out.temporal_hidden_states) == 1 and out.temporal_hidden_states[0].shape == (2, n, 32)
    assert len(out.temporal_attentions) == 1 and out.temporal_attentions[0].shape == (2, 4, n, n)
    torch.testing.assert_close(out.temporal_hidden_states[-1], out.last_hidden_state)
    assert model(random_video(1)).temporal_attentions is None


@pytest.mark.parametrize("frames", [1, 2, 6, 9])
def test_frame_count_other_than_num_frames(frames):
    model = ClaverModel(tiny_claver_config()).eval()
    out = model(pixel_values=random_video(2, frames=frames), **random_text(2))
    assert out.frame_embeds.shape == (2, frames, 16)
    assert torch.isfinite(out.logits_per_video).all()


def test_temporal_embedding_interpolation():
    embedding = ClaverVisionModel(tiny_claver_config().vision_config).temporal_embedding
    zeros = torch.zeros(1, NUM_FRAMES, 2, 32)
    torch.testing.assert_close(embedding(zeros)[0, :, 0], embedding.embedding[0])
    stretched = embedding(torch.zeros(1, 2 * NUM_FRAMES, 2, 32))[0, :, 0]
    expected = F.interpolate(
        embedding.embedding.transpose(1, 2), size=2 * NUM_FRAMES, mode="linear"
    ).transpose(1, 2)
    torch.testing.assert_close(stretched, expected[0])


def test_resized_temporal_embedding_equals_running_at_the_new_length():
    model = ClaverModel(tiny_claver_config()).eval()
    video = random_video(2, frames=2 * NUM_FRAMES)
    before = model.get_video_features(video).pooler_output
    model.vision_model.resize_temporal_embedding(2 * NUM_FRAMES)
    assert model.vision_model.temporal_embedding.embedding.shape == (1, 2 * NUM_FRAMES, 32)
    assert model.config.vision_config.num_frames == 2 * NUM_FRAMES
    torch.testing.assert_close(model.get_video_features(video).pooler_output, before)
    with pytest.raises(ValueError, match="positive number of frames"):
        model.vision_model.resize_temporal_embedding(0)


def test_resized_position_embeddings_equal_interpolating_them_on_the_fly(tmp_path):
    model = ClaverModel(tiny_claver_config()).eval()
    video = random_video(1, size=48)
    on_the_fly = model.get_video_features(video, interpolate_pos_encoding=True).pooler_output
    model.vision_model.resize_position_embeddings(48)
    assert model.config.vision_config.image_size == 48
    assert model.vision_model.embeddings.position_embedding.weight.shape == (10, 32)
    torch.testing.assert_close(model.get_video_features(video).pooler_output, on_the_fly)
    model.save_pretrained(tmp_path)
    reloaded = ClaverModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded.get_video_features(video).pooler_output, on_the_fly)
    for size in (40, 8):
        with pytest.raises(ValueError, match="must be a positive multiple of 16"):
            model.vision_model.resize_position_embeddings(size)


def test_video_model_without_temporal_embedding_is_blind_to_frame_order():
    model = ClaverModel(tiny_claver_config(use_temporal_embedding=False)).eval()
    video, perm = random_video(2), torch.tensor([3, 1, 0, 2])
    out, out_perm = model.get_video_features(video), model.get_video_features(video[:, perm])
    torch.testing.assert_close(out_perm.frame_embeds, out.frame_embeds[:, perm], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_perm.pooler_output, out.pooler_output, atol=1e-5, rtol=0)
    # The temporal embedding is what makes KMTA order-aware.
    ordered = ClaverModel(tiny_claver_config()).eval()
    assert not torch.allclose(
        ordered.get_video_features(video).pooler_output,
        ordered.get_video_features(video[:, perm]).pooler_output,
    )


def test_mean_pooling_baseline_has_no_temporal_parts():
    model = ClaverVisionModel(
        tiny_claver_config(kmt_num_hidden_layers=0, use_temporal_embedding=False).vision_config
    )
    assert model.temporal_embedding is None and len(model.temporal_encoder.layers) == 0
    assert not any("temporal" in name for name, _ in model.named_parameters())
    assert model(random_video(1)).pooler_output.shape == (1, NUM_FRAMES, 32)


@pytest.mark.parametrize(
    "pixel_values,message",
    [
        (torch.randn(NUM_FRAMES, 3, 32, 32), r"got a 4-D tensor of shape \(4, 3, 32, 32\)"),
        (torch.randn(1, NUM_FRAMES, 1, 32, 32), "must have 3 channels in dimension 2"),
        (torch.randn(1, NUM_FRAMES, 3, 48, 48), "must be 32x32 for this model, got 48x48"),
        (torch.randn(0, NUM_FRAMES, 3, 32, 32), "at least one video of at least one frame"),
        (torch.randn(1, 0, 3, 32, 32), "at least one video of at least one frame"),
    ],
)
def test_bad_pixel_values(pixel_values, message):
    model = ClaverModel(tiny_claver_config())
    with pytest.raises(ValueError, match=message):
        model.get_video_features(pixel_values)


def test_other_resolution_with_interpolated_positions():
    model = ClaverModel(tiny_claver_config()).eval()
    out = model.get_video_features(random_video(1, size=48), interpolate_pos_encoding=True)
    assert out.last_hidden_state.shape == (1, NUM_FRAMES * 10, 32)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = classifier()
    model.train()
    video, labels = random_video(2), torch.tensor([0, 2])

    def grads():
        torch.manual_seed(123)  # same text views sampled in both runs
        model.zero_grad()
        model(pixel_values=video, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and len(plain) > 0
    assert any("temporal_encoder" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


# ---------------------------------------------------------------- CLIP parity and weights


def test_text_features_equal_clip(clip_folder):
    folder, clip = clip_folder
    model = ClaverModel.from_clip_pretrained(folder, num_frames=NUM_FRAMES).eval()
    text = random_text(4)
    torch.testing.assert_close(
        model.get_text_features(**text).pooler_output, clip.eval().get_text_features(**text).pooler_output
    )


def test_per_frame_path_equals_clip_vision_model(clip_folder):
    folder, clip = clip_folder
    model = ClaverModel.from_clip_pretrained(folder, num_frames=NUM_FRAMES).eval()
    video = random_video(2)
    ours = model.vision_model(video, output_hidden_states=True).hidden_states
    theirs = clip.eval().vision_model(video.flatten(0, 1), output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("model_class", [ClaverModel, ClaverForVideoClassification])
def test_loading_a_clip_checkpoint(clip_folder, model_class):
    folder, clip = clip_folder
    model, info = model_class.from_clip_pretrained(
        folder, num_frames=NUM_FRAMES, kronecker_mask="kmcta", output_loading_info=True
    )
    prefix = "claver." if model_class is ClaverForVideoClassification else ""
    state = model.state_dict()
    for key, tensor in clip.state_dict().items():
        assert torch.equal(state[prefix + key], tensor), key  # bit-identical
    new_keys = set(state) - {prefix + k for k in clip.state_dict()}
    # The classifier's empty text bank is expected to be missing and is not reported.
    assert set(info["missing_keys"]) == {k for k in new_keys if not k.startswith("text_bank")}
    assert all("temporal" in k or k.startswith("text_bank") for k in new_keys)
    assert any("temporal_encoder" in k for k in new_keys) and info["unexpected_keys"] == set()
    assert model.config.vision_config.kronecker_mask == "kmcta"
    for name, param in model.named_parameters():
        # Finite and of sane size: meta-device init leaves uninitialised memory (e.g. 1e22) where it is missed.
        assert torch.isfinite(param).all() and param.abs().max() < 100, name
    embedding = model.get_parameter(prefix + "vision_model.temporal_embedding.embedding")
    assert 0.01 < embedding.std() < 0.03  # trunc-normal(0.02), not uninitialised memory


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_zero_init_temporal_computes_clips_zero_shot_scores(clip_repository, attn_implementation):
    """With `zero_init_temporal`, a CLAVER made from CLIP weights scores a video as CLIP scores its frames, averaged
    over time (mean of the normalised frame embeddings), on the Hub-shaped miniature CLIP."""
    clip = CLIPModel.from_pretrained(clip_repository, attn_implementation=attn_implementation).eval()
    model = ClaverModel.from_clip_pretrained(
        clip_repository, zero_init_temporal=True, attn_implementation=attn_implementation
    ).eval()
    for layer in model.vision_model.temporal_encoder.layers:
        assert not layer.self_attn.out_proj.weight.any() and not layer.mlp.fc2.bias.any()
    assert not model.vision_model.temporal_embedding.embedding.any()
    video, text = random_video(2, frames=NUM_FRAMES), clip_text(4)
    with torch.no_grad():
        frames = F.normalize(clip.get_image_features(pixel_values=video.flatten(0, 1)).pooler_output, dim=-1)
        texts = F.normalize(clip.get_text_features(**text).pooler_output, dim=-1)
        expected = clip.logit_scale.exp() * frames.view(2, NUM_FRAMES, -1).mean(1) @ texts.t()
        ours = model(pixel_values=video, **text).logits_per_video
        paper_init = ClaverModel.from_clip_pretrained(
            clip_repository, attn_implementation=attn_implementation
        )
        randomly_started = paper_init.eval()(pixel_values=video, **text).logits_per_video
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(randomly_started, expected, atol=1e-3)


def test_plain_from_pretrained_on_a_clip_checkpoint(clip_folder):
    folder, clip = clip_folder
    model = ClaverModel.from_pretrained(folder)
    assert torch.equal(model.logit_scale, clip.logit_scale)
    assert model.config.vision_config.num_frames == 8


def test_fresh_model_initialisation():
    config = tiny_claver_config()
    model = ClaverModel(config)
    assert model.logit_scale.item() == pytest.approx(config.logit_scale_init_value)
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), name
        assert param.abs().max() < 10, name


def test_embedding_initialisation_scales():
    default = ClaverVisionModel(tiny_claver_config().vision_config)
    assert 0.01 < default.temporal_embedding.embedding.std() < 0.03
    assert 0.01 < default.embeddings.position_embedding.weight.std() < 0.03  # CLIP's initializer_range
    vision = tiny_claver_config(temporal_initializer_range=1.0, position_initializer_range=1.0).vision_config
    model = ClaverVisionModel(vision)
    assert 0.6 < model.temporal_embedding.embedding.std() < 1.3  # truncated at two standard deviations
    assert 0.7 < model.embeddings.position_embedding.weight.std() < 1.3
    assert 0.01 < model.embeddings.patch_embedding.weight.std() < 0.03  # still CLIP's initializer_range


def _clip_init_stds(module: torch.nn.Module) -> dict[str, float]:
    """CLIP's init of an attention or MLP block (transformers' `CLIPPreTrainedModel._init_weights`)."""
    config = module.config
    width, depth = config.hidden_size, config.num_hidden_layers
    inner = width**-0.5 * (2 * depth) ** -0.5
    if isinstance(module, CLIPAttention):
        return {"q_proj": inner, "k_proj": inner, "v_proj": inner, "out_proj": width**-0.5}
    return {"fc1": (2 * width) ** -0.5, "fc2": inner}


@pytest.mark.parametrize("source", ["config", "clip"])
def test_encoder_blocks_follow_clips_initialisation(source, clip_folder):
    """Spatial, KMT and text blocks get CLIP's attention / MLP init, not the generic 0.02 of a Linear:
    transformers skips modules without parameters of their own when it initialises models defined outside it."""
    torch.manual_seed(0)
    if source == "config":
        model = ClaverModel(tiny_claver_config(hidden_size=64, kmt_num_hidden_layers=2))
        blocks = model.modules()
    else:  # loaded CLIP weights stay; only the new KMT blocks are initialised
        model = ClaverModel.from_clip_pretrained(clip_folder[0])
        blocks = model.vision_model.temporal_encoder.modules()
    checked = 0
    for module in blocks:
        if isinstance(module, (CLIPAttention, CLIPMLP)):
            for name, std in _clip_init_stds(module).items():
                weight = getattr(module, name).weight
                assert weight.std().item() == pytest.approx(std, rel=0.2), (type(module).__name__, name)
                checked += 1
    assert checked >= 6


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("model_class", [ClaverVisionModel, ClaverModel, ClaverForVideoClassification])
def test_save_load_round_trip(tmp_path, model_class):
    if model_class is ClaverForVideoClassification:
        model = classifier()
        inputs = {"pixel_values": random_video(2)}
    elif model_class is ClaverModel:
        model = ClaverModel(tiny_claver_config())
        inputs = {"pixel_values": random_video(2), **random_text(3)}
    else:
        model = ClaverVisionModel(tiny_claver_config().vision_config)
        inputs = {"pixel_values": random_video(2)}
    model.eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert set(load_file(tmp_path / "model.safetensors")) == set(model.state_dict())
    loaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    loaded.eval()
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    for a, b in zip(model(**inputs).to_tuple(), loaded(**inputs).to_tuple(), strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b)


def test_auto_classes(tmp_path):
    classifier().save_pretrained(tmp_path / "cls")
    ClaverModel(tiny_claver_config()).save_pretrained(tmp_path / "base")
    assert type(AutoModel.from_pretrained(tmp_path / "base")) is ClaverModel
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path / "cls").eval()
    assert type(loaded) is ClaverForVideoClassification and loaded.config.id2label == LABELS
    # Classifies from video alone: the text bank travelled inside the checkpoint.
    assert loaded(pixel_values=random_video(1)).logits.shape == (1, 3)
    base_from_head = ClaverModel.from_pretrained(tmp_path / "cls")
    assert torch.equal(base_from_head.logit_scale, loaded.claver.logit_scale)


# ---------------------------------------------------------------- classification


def test_eval_logits_are_log_of_view_averaged_probabilities():
    model = classifier(num_views=3).eval()
    video = random_video(2)
    out = model(pixel_values=video, labels=torch.tensor([1, 2]))
    video_embeds = model.claver.get_video_features(video).pooler_output
    text = F.normalize(
        model.claver.get_text_features(
            input_ids=model.text_bank.input_ids.flatten(0, 1),
            attention_mask=model.text_bank.attention_mask.flatten(0, 1),
        ).pooler_output,
        dim=-1,
    ).view(3, 3, -1)
    per_view = (model.claver.logit_scale.exp() * torch.einsum("be,vce->bvc", video_embeds, text)).softmax(-1)
    torch.testing.assert_close(out.logits.softmax(-1), per_view.mean(1))
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(2))
    torch.testing.assert_close(out.loss, -per_view.mean(1)[[0, 1], [1, 2]].log().mean())


def test_uneven_views_fill_missing_logits_with_the_class_mean():
    view_mask = torch.tensor([[True, True, True], [True, False, True], [True, False, False]])
    model = classifier(num_views=3, view_mask=view_mask).eval()
    video = random_video(2)
    out = model(pixel_values=video)
    video_embeds = model.claver.get_video_features(video).pooler_output
    text = model.bank_text_features()
    logits = model.claver.logit_scale.exp() * torch.einsum("be,vce->bvc", video_embeds, text)
    logits[:, 1, 1] = logits[:, 0, 1]  # class 1 has only view 0
    logits[:, 2, 1] = logits[:, 0, 1]
    logits[:, 2, 2] = logits[:, :2, 2].mean(1)  # class 2 has views 0 and 1
    torch.testing.assert_close(out.logits.softmax(-1), logits.softmax(-1).mean(1))


def test_test_views_average_the_probabilities_of_each_view():
    model = classifier(num_views=3).eval()
    views = random_video(6).unflatten(0, (2, 3))  # 2 videos, 3 test views each
    with torch.no_grad():
        per_view = model(pixel_values=views.flatten(0, 1)).logits.softmax(-1).view(2, 3, -1)
        out = model(pixel_values=views, labels=torch.tensor([0, 2]))
    assert out.video_embeds.shape == (2, 3, 16)
    torch.testing.assert_close(out.logits.exp(), per_view.mean(1))
    torch.testing.assert_close(out.loss, -per_view.mean(1)[[0, 1], [0, 2]].log().mean())
    with pytest.raises(ValueError, match="are for evaluation"):
        model.train()(pixel_values=views)


def test_training_loss_averages_over_sampled_views():
    model = classifier(num_views=1).train()  # one view: sampling is deterministic
    video, labels = random_video(2), torch.tensor([0, 2])
    out = model(pixel_values=video, labels=labels)
    assert out.logits.shape == (2, 3)
    model.eval()
    with torch.no_grad():
        eval_logits = model(pixel_values=video).logits
    torch.testing.assert_close(out.loss, F.cross_entropy(eval_logits, labels))
    torch.testing.assert_close(out.logits, eval_logits)


def test_training_samples_only_existing_views():
    view_mask = torch.tensor([[True, True, True], [True, False, True], [False, False, True]])
    model = classifier(num_views=3, view_mask=view_mask)
    views, classes = model.text_bank.sample_views(200)
    ids = model.text_bank.input_ids[views, classes]
    assert ids.shape == (200, 3, model.text_bank.max_length)
    for c in range(3):
        allowed = model.text_bank.input_ids[view_mask[:, c], c]
        assert all((allowed == row).all(-1).any() for row in ids[:, c])
    # Class 0 has views 0 and 1: both get drawn.
    assert len({tuple(row.tolist()) for row in ids[:, 0]}) == 2


def test_soft_labels_and_label_smoothing():
    model = classifier(num_views=1).train()
    model.config.label_smoothing = 0.1
    video = random_video(2)
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])
    out = model(pixel_values=video, labels=soft)
    expected = F.cross_entropy(
        out.logits, soft, label_smoothing=0.1
    )  # one view: logits are that view's log-probs
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()


@pytest.mark.parametrize(
    "labels,message",
    [
        (torch.tensor([0, 3]), r"class indices in \[0, 2\], got values in \[0, 3\]"),
        (torch.tensor([-1, 0]), r"class indices in \[0, 2\]"),
        (torch.tensor([0]), "1 rows for a batch of 2"),
        (torch.ones(2, 4) / 4, r"Soft `labels` must have shape \(batch, num_classes\)"),
    ],
)
def test_bad_labels(labels, message):
    model = classifier()
    with pytest.raises(ValueError, match=message):
        model(pixel_values=random_video(2), labels=labels)


def test_missing_text_bank():
    config = tiny_claver_config()
    config.id2label = LABELS
    model = ClaverForVideoClassification(config).eval()
    with pytest.raises(ValueError, match="no complete text bank"):
        model(pixel_values=random_video(1))
    with pytest.raises(ValueError, match="pass `id2label`"):
        model.set_text_bank(torch.ones(2, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Classes \[1\] have no text view"):
        model.set_text_bank(
            torch.ones(2, 3, 4, dtype=torch.long), view_mask=torch.tensor([[1, 0, 1], [1, 0, 1]])
        )


class _CountCalls:
    def __init__(self, module):
        self.count = 0
        module.register_forward_hook(self)

    def __call__(self, *args):
        self.count += 1


def test_text_feature_cache_is_used_and_invalidated():
    model = classifier().eval()
    calls = _CountCalls(model.claver.text_model)
    video = random_video(1)
    with torch.no_grad():
        first = model(pixel_values=video).logits
        second = model(pixel_values=video).logits
        assert calls.count == 1 and torch.equal(first, second)
        assert not model.training  # the cache never switches modes

        model.claver.text_projection.weight.mul_(2.0)  # in-place weight change (optimizer-like)
        model(pixel_values=video)
        assert calls.count == 2

        model.load_state_dict(model.state_dict())
        model(pixel_values=video)
        assert calls.count == 3

        text = random_text(6, generator=torch.Generator().manual_seed(5))
        model.set_text_bank(text["input_ids"].view(2, 3, -1), text["attention_mask"].view(2, 3, -1))
        changed = model(pixel_values=video).logits
        assert calls.count == 4 and not torch.allclose(changed, first)

    # With gradients on (or in training) features are always recomputed, never cached.
    model(pixel_values=video)
    model(pixel_values=video)
    assert calls.count == 6


def test_text_feature_cache_dies_with_fused_optimizer_steps():
    """Fused AdamW (Trainer's default optimizer) updates weights without bumping their version counters: an
    evaluation after training steps must still see the new text tower."""
    model = classifier().eval()
    video, labels = random_video(2), torch.tensor([0, 1])
    with torch.no_grad():
        model(pixel_values=video)  # caches the bank's features
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    model.train()
    model(pixel_values=video, labels=labels).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        cached = model(pixel_values=video).logits
        model.text_bank.invalidate()
        fresh = model(pixel_values=video).logits
    torch.testing.assert_close(cached, fresh)


def test_trainer_contract():
    assert ClaverForVideoClassification.accepts_loss_kwargs is False
    model = classifier()
    assert model.main_input_name == "pixel_values"
    assert model.config.num_frames == NUM_FRAMES


def test_trains_with_trainer_and_gradient_accumulation(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = classifier()
    examples = [{"pixel_values": random_video(1, seed=i)[0], "labels": i % 3} for i in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=1e-3,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    before = model.claver.vision_model.temporal_embedding.embedding.detach().clone()
    result = Trainer(model=model, args=args, train_dataset=examples).train()
    assert result.global_step == 2 and 0 < result.training_loss < 10
    assert not torch.equal(before, model.claver.vision_model.temporal_embedding.embedding)


def test_text_bank_is_encoded_in_batches():
    model = classifier(num_views=3).eval()
    with torch.no_grad():
        whole = model.bank_text_features().clone()
        model.text_encoding_batch_size = 2
        model.text_bank.invalidate()
        calls = _CountCalls(model.claver.text_model)
        torch.testing.assert_close(model.bank_text_features(), whole)
    assert calls.count == 5  # 9 texts, 2 at a time


def test_frozen_text_encoder_reuses_cached_features():
    model = classifier(num_views=3).train()
    for parameter in [*model.claver.text_model.parameters(), model.claver.text_projection.weight]:
        parameter.requires_grad = False
    calls = _CountCalls(model.claver.text_model)
    video, labels = random_video(2), torch.tensor([0, 1])
    for _ in range(3):
        model(pixel_values=video, labels=labels).loss.backward()
    assert calls.count == 1  # the whole bank once, then picked from the cache at every step
    assert model.claver.vision_model.temporal_embedding.embedding.grad is not None


def test_training_encodes_only_the_sampled_views():
    model = classifier(num_views=3, num_text_views_per_step=2).train()
    model.config.num_text_views_per_step = 2
    encoded = []
    original = model.claver.get_text_features

    def spy(input_ids, attention_mask=None, **kwargs):
        encoded.append(input_ids.shape[0])
        return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    model.claver.get_text_features = spy
    model(pixel_values=random_video(2), labels=torch.tensor([0, 1]))
    assert encoded == [2 * 3]  # K views x C classes, not the 3 x 3 of the whole bank
