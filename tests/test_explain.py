import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from claver_hf import ClaverForVideoClassification, ClaverModel, ClaverProcessor, ClaverVideoProcessor
from claver_hf.prompts import TEMPLATES, ClassPrompts, PromptBank
from claver_hf.visualization import (
    attention_relevance,
    eager_attention,
    explain_video,
    jet,
    video_attention_maps,
    word_importance,
)
from claver_hf.visualization.render import FONT_SIZE, MIN_TILE_SIZE

from .conftest import NUM_FRAMES, random_video, tiny_claver_config
from .videos import write_video

GRID = 2  # tiny config: 32 px frames, 16 px patches


def clip_text_config(config):
    """The tiny config with a text tower that reads CLIP's real token ids."""
    text = config.text_config
    text.vocab_size, text.max_position_embeddings = 49408, 77
    text.bos_token_id, text.eos_token_id, text.pad_token_id = 49406, 49407, 49407
    return config


def tiny_model(**vision_kwargs) -> ClaverModel:
    return ClaverModel(clip_text_config(tiny_claver_config(kmt_num_hidden_layers=2, **vision_kwargs))).eval()


def implementations(model: ClaverModel) -> tuple[str, str, str]:
    config = model.config
    return (
        config._attn_implementation,
        config.vision_config._attn_implementation,
        config.text_config._attn_implementation,
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_model(kronecker_mask="kmta")


@pytest.fixture(scope="module")
def causal_model():
    torch.manual_seed(0)
    return tiny_model(kronecker_mask="kmcta")


@pytest.fixture
def processor(clip_tokenizer):
    video_processor = ClaverVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return ClaverProcessor(video_processor=video_processor, tokenizer=clip_tokenizer)


# ---------------------------------------------------------------- attention maps


def test_eager_attention_is_restored_even_after_an_error(model):
    before = implementations(model)
    assert before == ("sdpa", "sdpa", "sdpa")
    with eager_attention(model):
        assert implementations(model) == ("eager", "eager", "eager")
    assert implementations(model) == before
    with pytest.raises(ValueError, match="one video"):
        video_attention_maps(model, random_video(batch=2))
    with pytest.raises(RuntimeError), eager_attention(model.vision_model):
        raise RuntimeError
    assert implementations(model) == before


@pytest.mark.parametrize("method", ["kmt", "rollout"])
def test_maps_shapes_range_and_restored_implementation(model, method):
    video = random_video(batch=1)
    maps = video_attention_maps(model, video, method)
    assert maps.shape == (NUM_FRAMES, GRID, GRID) and maps.dtype == torch.float32
    assert maps.min() == 0 and maps.max() == pytest.approx(1.0)
    assert implementations(model) == ("sdpa", "sdpa", "sdpa")

    relevance = attention_relevance(model, video, method)
    assert relevance.shape == (NUM_FRAMES, NUM_FRAMES, GRID, GRID)
    # Each class token spends at most all of its attention on patches (the rest goes to class tokens).
    assert (relevance.sum(dim=(1, 2, 3)) <= 1 + 1e-5).all()
    # A classifier explains through its CLAVER model; other frame sizes give other patch grids.
    classifier = as_classifier(model)
    torch.testing.assert_close(video_attention_maps(classifier, video, method), maps)
    wide = video_attention_maps(
        model, random_video(1, size=48)[..., :32, :], method, interpolate_pos_encoding=True
    )
    assert wide.shape == (NUM_FRAMES, 2, 3)


def as_classifier(model: ClaverModel) -> ClaverForVideoClassification:
    classifier = ClaverForVideoClassification(model.config).eval()
    classifier.claver = model
    return classifier


def test_kmta_class_tokens_skip_their_own_frame_in_kmt_attention(model):
    relevance = attention_relevance(model, random_video(batch=1), "kmt")
    own = relevance.diagonal(dim1=0, dim2=1)  # (h, w, T)
    assert own.abs().max() == 0
    off_diagonal = relevance.sum(dim=(2, 3)) + torch.eye(NUM_FRAMES)
    assert (off_diagonal > 0).all()


@pytest.mark.parametrize("method", ["kmt", "rollout"])
def test_kmcta_maps_are_causal(causal_model, model, method):
    video = random_video(batch=1)
    changed = video.clone()
    changed[:, 1:] = random_video(batch=1, seed=1)[:, 1:]  # every frame after frame 0

    relevance = attention_relevance(causal_model, video, method)
    first = 0 if method == "kmt" else 1  # KMT attention never reaches the query's own patches
    future = torch.ones(NUM_FRAMES, NUM_FRAMES).triu(first).bool()
    assert relevance[future].abs().max() == 0 and relevance[~future].abs().max() > 0

    # What frame 0's class token looks at depends on frame 0 only; later frames' maps do change.
    after = attention_relevance(causal_model, changed, method)
    torch.testing.assert_close(after[0], relevance[0])
    assert not torch.allclose(after[1:], relevance[1:])
    torch.testing.assert_close(
        video_attention_maps(causal_model, changed, method, query_frame=0),
        video_attention_maps(causal_model, video, method, query_frame=0),
    )
    # Under KMTA the same change reaches frame 0's class token.
    assert not torch.allclose(
        attention_relevance(model, changed, method)[0], attention_relevance(model, video, method)[0]
    )


def test_rollout_equals_the_dense_product_of_all_layers(model):
    video = random_video(batch=1)
    with eager_attention(model), torch.no_grad():
        out = model.vision_model(video, output_attentions=True, output_temporal_attentions=True)
    L, T = GRID * GRID + 1, NUM_FRAMES

    def residual(a):
        a = (a.mean(dim=-3) + torch.eye(a.shape[-1])) / 2
        return a / a.sum(-1, keepdim=True)

    dense = torch.eye(T * L)
    for a in out.temporal_attentions:
        dense = residual(a[0]) @ dense
    per_frame = torch.eye(L).expand(T, L, L)
    for a in out.attentions:
        per_frame = residual(a) @ per_frame
    dense = dense @ torch.block_diag(*per_frame)
    expected = dense[torch.arange(T) * L].view(T, T, L)[..., 1:].reshape(T, T, GRID, GRID)
    torch.testing.assert_close(attention_relevance(model, video, "rollout"), expected)


def test_unknown_method_and_query_frame(model):
    with pytest.raises(ValueError, match="Unknown attention method"):
        video_attention_maps(model, random_video(1), "gradcam")
    with pytest.raises(ValueError, match="out of range"):
        video_attention_maps(model, random_video(1), query_frame=NUM_FRAMES)


def test_jet_colour_map():
    colours = jet(np.array([0.0, 0.5, 1.0, 2.0]))
    assert colours.dtype == np.uint8 and colours.shape == (4, 3)
    assert colours[0].argmax() == 2 and colours[1].argmax() == 1 and colours[2].argmax() == 0
    assert (colours[3] == colours[2]).all()  # clipped


# ---------------------------------------------------------------- words


@pytest.mark.parametrize("method", ["gradient", "occlusion"])
def test_word_importance_maps_bpe_pieces_back_to_words(model, processor, clip_tokenizer, method):
    text = "A person is Strumming the guitar."
    assert clip_tokenizer.tokenize(text)[3:5] == ["stru", "mming</w>"]  # one word, two pieces
    words = word_importance(model, processor, text, random_video(1), method=method)
    assert [w for w, _ in words] == ["A", "person", "is", "Strumming", "the", "guitar", "."]
    assert all(np.isfinite(score) for _, score in words) and any(score != 0 for _, score in words)
    assert word_importance(model, clip_tokenizer, text, random_video(1), method=method) == words


def test_occlusion_is_the_similarity_drop_without_the_word(model, clip_tokenizer):
    video = random_video(1)
    with torch.no_grad():
        video_embed = model.get_video_features(video).pooler_output[0]

    @torch.no_grad()
    def similarity(text):
        ids = torch.tensor([clip_tokenizer(text)["input_ids"]])
        embed = model.get_text_features(input_ids=ids).pooler_output[0]
        return float(embed @ video_embed / embed.norm())

    words = dict(word_importance(model, clip_tokenizer, "jumping over a fence", video, method="occlusion"))
    assert words["over"] == pytest.approx(
        similarity("jumping over a fence") - similarity("jumping a fence"), abs=1e-5
    )


def test_gradient_importance_leaves_weights_untouched(model, clip_tokenizer):
    model.requires_grad_(False)
    try:
        words = word_importance(model, clip_tokenizer, "waving hands", random_video(1))
    finally:
        model.requires_grad_(True)
    assert [w for w, _ in words] == ["waving", "hands"]
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- explain_video


def test_explain_video_writes_images_animation_and_report(tmp_path, model, processor):
    path = write_video(tmp_path / "clip.mp4", num_frames=20, size=(64, 48))
    labels = ["playing guitar", "jumping"]
    result = explain_video(model, processor, path, labels, tmp_path / "out", mp4=True)

    assert set(result.files) == {
        "attention_png",
        "attention_gif",
        "attention_mp4",
        "words_png",
        "explain_json",
    }
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in result.files.values())
    assert result.frame_indices == [2, 7, 12, 17]  # segment centres of 20 frames
    assert result.maps.shape == (NUM_FRAMES, GRID, GRID)
    assert result.label == max(result.scores, key=result.scores.get)
    assert sum(result.scores.values()) == pytest.approx(1.0)
    # Without a prompt bank a label's views are the 16 hand templates, as in the zero-shot pipeline.
    assert result.prompt in [template.format(result.label) for template in TEMPLATES]

    tile = (MIN_TILE_SIZE, MIN_TILE_SIZE + FONT_SIZE + 8)  # 32 px frames enlarged, caption strip on top
    with Image.open(result.files["attention_png"]) as image:
        assert image.format == "PNG" and image.size == (4 * tile[0] + 5 * 4, tile[1] + 2 * 4)
    with Image.open(result.files["attention_gif"]) as image:
        assert image.format == "GIF" and image.n_frames == NUM_FRAMES and image.size == tile
    with av.open(str(result.files["attention_mp4"])) as container:
        assert sum(1 for _ in container.decode(video=0)) == NUM_FRAMES
    with Image.open(result.files["words_png"]) as image:
        assert image.format == "PNG" and image.width == 720

    report = json.loads(result.files["explain_json"].read_text())
    assert report["label"] == result.label and report["scores"] == result.scores
    assert report["video"] == str(path) and report["frame_indices"] == [2, 7, 12, 17]
    assert report["attention_method"] == "kmt" and report["word_method"] == "gradient"
    assert [w["word"] for w in report["words"]] == [word for word, _ in result.words]
    assert set(result.label.split()) <= {word for word, _ in result.words}
    assert report["files"]["attention_gif"] == "attention.gif"
    assert implementations(model) == ("sdpa", "sdpa", "sdpa")


def test_explain_video_with_prompt_bank(tmp_path, causal_model, processor):
    sentences = {
        "decomposition": ["The person lifts a bow and draws the string back."],
        "body_parts": ["Arms pull, shoulders tense."],
        "synonyms": ["archery, shooting arrows"],
    }
    bank = PromptBank(
        "tiny",
        ["{}", "a video of {}."],
        {"ShootBow": ClassPrompts("shoot bow", sentences), "Wave": ClassPrompts("wave", sentences)},
    )
    video = np.random.default_rng(0).integers(0, 256, (10, 40, 40, 3), dtype=np.uint8)
    result = explain_video(
        causal_model,
        processor,
        video,
        ["Wave", "ShootBow"],
        tmp_path,
        method="rollout",
        prompt_bank=bank,
        word_method="occlusion",
        gif=False,
    )
    assert list(result.scores) == ["Wave", "ShootBow"]
    assert result.prompt in bank.views(result.label)
    assert "attention_gif" not in result.files and not (tmp_path / "attention.gif").exists()
    report = json.loads((tmp_path / "explain.json").read_text())
    assert report["video"] is None and report["frame_indices"] == [1, 3, 6, 8]
    assert report["attention_method"] == "rollout" and report["word_method"] == "occlusion"
    with pytest.raises(ValueError, match="distinct"):
        explain_video(causal_model, processor, video, ["Wave", "Wave"], tmp_path)


def test_command_line(tmp_path, model, processor, capsys):
    from claver_hf.cli import main

    from .videos import write_video

    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    video = write_video(tmp_path / "clip.mp4", num_frames=20)
    status = main(
        ["explain", str(video), "--model", str(tmp_path / "model"), "--labels", "waving,clapping",
         "--output-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert status == 0
    assert "best label:" in capsys.readouterr().out
    assert (tmp_path / "out" / "attention.png").exists() and (tmp_path / "out" / "words.png").exists()
    assert (
        main(
            [
                "explain",
                str(video),
                "--model",
                str(tmp_path / "model"),
                "--labels",
                "solo",
                "--output-dir",
                "x",
            ]
        )
        == 2
    )
    assert "at least two" in capsys.readouterr().err
