"""`pipeline("zero-shot-video-classification")` with a tiny CLAVER model and CLIP's real tokenizer."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from claver_hf import (
    ClaverConfig,
    ClaverForVideoClassification,
    ClaverModel,
    ClaverProcessor,
    ClaverVideoProcessor,
)
from claver_hf.cli import main
from claver_hf.modeling.scoring import view_averaged_log_probs
from claver_hf.pipelines import (
    TASK,
    LabelViewEmbeddings,
    ZeroShotVideoClassificationPipeline,
    register_pipelines,
)
from claver_hf.prompts import TEMPLATES, PromptBankError, display_name, load_prompt_bank, resolve_label_views
from claver_hf.training.metrics import predict_multiview
from claver_hf.visualization import explain_video

from .conftest import NUM_FRAMES, TINY_TEXT, TINY_VISION
from .videos import write_video

register_pipelines()  # until `import claver_hf` does it (see test_import_registers_the_task)

LABELS = ["ApplyEyeMakeup", "applying lipstick", "juggling fire"]  # class name, display name, not in the bank


def tiny_clip_text_model(model_class=ClaverModel, **config_kwargs):
    """A tiny CLAVER whose text tower reads CLIP's real token ids (49,408 tokens, 77 positions)."""
    text = {
        **TINY_TEXT,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
    }
    config = ClaverConfig(
        vision_config={**TINY_VISION, "num_frames": NUM_FRAMES},
        text_config=text,
        projection_dim=16,
        **config_kwargs,
    )
    torch.manual_seed(0)
    return model_class(config).eval()


def tiny_processor(tokenizer, prompt_bank="ucf101", **video_kwargs) -> ClaverProcessor:
    video_processor = ClaverVideoProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        num_frames=NUM_FRAMES,
        **video_kwargs,
    )
    return ClaverProcessor(video_processor=video_processor, tokenizer=tokenizer, prompt_bank=prompt_bank)


def stripes(index: int, width: int, height: int) -> np.ndarray:
    """Moving vertical stripes: a second video unlike `index_pattern`'s."""
    columns = (np.arange(width) + 3 * index) % 16 < 8
    return np.broadcast_to(
        np.where(columns, 230, 20).astype(np.uint8)[None, :, None], (height, width, 3)
    ).copy()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return (
        str(write_video(folder / "a.mp4", num_frames=24)),
        str(write_video(folder / "b.mp4", num_frames=40, size=(48, 64), pattern=stripes)),
    )


@pytest.fixture(scope="module")
def model():
    return tiny_clip_text_model()


@pytest.fixture(scope="module")
def processor(clip_tokenizer):
    return tiny_processor(clip_tokenizer)


@pytest.fixture(scope="module")
def classify(model, processor):
    return pipeline(TASK, model=model, processor=processor)


def scores(predictions: list[dict]) -> dict[str, float]:
    return {p["label"]: p["score"] for p in predictions}


def spy(monkeypatch, obj, name: str) -> list:
    """Record the arguments of every call of `obj.name`."""
    calls, original = [], getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


# ---------------------------------------------------------------- results


def test_scores_are_probabilities_sorted(classify, videos):
    predictions = classify(videos[0], candidate_labels=LABELS)
    assert sorted(p["label"] for p in predictions) == sorted(LABELS)
    values = [p["score"] for p in predictions]
    assert values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1.0, abs=1e-5)
    assert len(set(values)) == 3
    top = classify(videos[0], candidate_labels=LABELS, top_k=2)
    assert [p["label"] for p in top] == [p["label"] for p in predictions[:2]]


def test_batch_of_videos_encodes_the_labels_once(classify, model, videos, monkeypatch):
    singles = [classify(video, candidate_labels=LABELS) for video in videos]
    text_calls = spy(monkeypatch, model, "get_text_features")
    batch = classify(list(videos), candidate_labels=LABELS)
    assert len(text_calls) == 1  # one text pass for the whole list
    assert [scores(p) for p in batch] == [pytest.approx(scores(p), abs=1e-6) for p in singles]
    assert scores(batch[0]) != pytest.approx(scores(batch[1]), abs=1e-4)  # different videos, different scores
    batched = classify(list(videos), candidate_labels=LABELS, batch_size=2)
    assert [scores(p) for p in batched] == [pytest.approx(scores(p), abs=1e-5) for p in singles]


def test_array_inputs(classify, videos):
    frames = np.stack([np.full((32, 40, 3), 10 * t, dtype=np.uint8) for t in range(8)])
    single = classify(frames, candidate_labels=LABELS)
    assert isinstance(single[0], dict)
    batch = classify(np.stack([frames, frames[::-1]]), candidate_labels=LABELS)  # (B, T, H, W, 3)
    assert len(batch) == 2 and scores(batch[0]) == pytest.approx(scores(single), abs=1e-6)
    from PIL import Image

    as_images = classify([Image.fromarray(frame) for frame in frames], candidate_labels=LABELS)  # one video
    assert scores(as_images) == pytest.approx(scores(single), abs=1e-6)


# ---------------------------------------------------------------- text views


def test_bank_prompts_for_labels_in_the_bank(classify, processor, videos, monkeypatch, clip_tokenizer):
    bank = processor.prompt_bank
    tokenized = spy(monkeypatch, processor, "tokenize")
    with_bank = classify(videos[0], candidate_labels=LABELS)
    texts = tokenized[0][0][0]
    assert texts == [
        *bank.views("ApplyEyeMakeup"),  # matched by class name
        *bank.views("ApplyLipstick"),  # matched by display name
        *(template.format("juggling fire") for template in TEMPLATES),  # not in the bank: templates
    ]
    assert resolve_label_views(LABELS, bank).bank_classes == ["ApplyEyeMakeup", "ApplyLipstick", None]
    assert resolve_label_views(["Apply Eye-Makeup"], bank).bank_classes == ["ApplyEyeMakeup"]

    templates_only = pipeline(TASK, model=classify.model, processor=tiny_processor(clip_tokenizer, None))
    without_bank = templates_only(videos[0], candidate_labels=LABELS)
    assert scores(with_bank) != pytest.approx(scores(without_bank), abs=1e-4)
    # The processor's bank can also come with the call, by bundled name or by file.
    assert scores(templates_only(videos[0], candidate_labels=LABELS, prompt_bank="ucf101")) == pytest.approx(
        scores(with_bank), abs=1e-6
    )


def test_template_labels_use_display_names():
    views = resolve_label_views(["PlayingGuitar", "shoot_bow"]).views
    assert views[0][1] == "a video of playing guitar." and views[1][0] == display_name("shoot_bow")
    assert all(len(v) == len(TEMPLATES) for v in views)


def test_label_descriptions_add_views(classify, videos, monkeypatch):
    plain = classify(videos[0], candidate_labels=LABELS)
    description = "A performer throws and catches burning torches."
    tokenized = spy(monkeypatch, classify.processor, "tokenize")
    described = classify(
        videos[0], candidate_labels=LABELS, label_descriptions={"juggling fire": [description]}
    )
    assert tokenized[0][0][0][-1] == description
    assert scores(described) != pytest.approx(scores(plain), abs=1e-4)
    with pytest.raises(ValueError, match="not candidate labels"):
        classify(videos[0], candidate_labels=LABELS, label_descriptions={"swimming": ["In water."]})


def test_prompt_bank_file_and_unknown_bank(classify, videos, tmp_path):
    custom = unequal_bank()
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(custom))
    texts = resolve_label_views(["wave"], load_prompt_bank(path)).views[0]
    assert texts[-1] == "Saying goodbye with a raised hand."
    assert len(classify(videos[0], candidate_labels=["wave", "jump"], prompt_bank=str(path))) == 2
    with pytest.raises(PromptBankError, match="No prompt bank 'kinetics9000': not a bundled bank"):
        classify(videos[0], candidate_labels=LABELS, prompt_bank="kinetics9000")


def test_bad_labels(classify, videos):
    with pytest.raises(ValueError, match="empty"):
        classify(videos[0], candidate_labels=[])
    with pytest.raises(ValueError, match="repeats"):
        classify(videos[0], candidate_labels=["jump", "run", "jump"])


# ---------------------------------------------------------------- views and scoring


def test_multi_view_averages_over_clips_and_crops(classify, model, videos, monkeypatch):
    single = classify(videos[1], candidate_labels=LABELS)
    video_calls = spy(monkeypatch, model, "get_video_features")
    multi = classify(videos[1], candidate_labels=LABELS, num_clips=2, num_crops=3)
    assert video_calls[0][1]["pixel_values"].shape == (6, NUM_FRAMES, 3, 32, 32)
    assert sum(scores(multi).values()) == pytest.approx(1.0, abs=1e-5)
    assert scores(multi) != scores(
        single
    )  # the average over views is checked in test_matches_the_classifier...
    # Two videos of six views each, batched: every video still gets its own average.
    separate = [classify(v, candidate_labels=LABELS, num_clips=2, num_crops=3) for v in videos]
    batched = classify(list(videos), candidate_labels=LABELS, num_clips=2, num_crops=3, batch_size=2)
    assert [scores(p) for p in batched] == [pytest.approx(scores(p), abs=1e-5) for p in separate]


def unequal_bank() -> dict:
    """Three classes with 1, 2 and 3 sentences per form: different numbers of text views."""
    sentences = {
        "wave": ["Saying goodbye with a raised hand."],
        "jump": ["Both feet leave the ground.", "The body springs upward."],
        "clap": ["Palms strike together.", "Hands meet in front of the chest.", "A sharp sound of hands."],
    }
    return {
        "format_version": 1,
        "dataset": "tiny",
        "templates": ["{}", "a video of {}."],
        "classes": {
            name: {
                "display_name": f"{name}ing",
                **{form: s for form in ("decomposition", "body_parts", "synonyms")},
            }
            for name, s in sentences.items()
        },
    }


@pytest.mark.parametrize("num_clips,num_crops", [(1, 1), (2, 3)])
def test_pipeline_classify_explain_and_evaluation_report_the_same_scores(
    clip_tokenizer, videos, tmp_path, capsys, num_clips, num_crops
):
    """One scoring rule: the pipeline, `claver-hf classify`, `claver-hf explain` (one test view) and the evaluation
    of a ClaverForVideoClassification holding the same views (its forward pass and the multi-view test) agree,
    also when labels have different numbers of views."""
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(unequal_bank()))
    processor = tiny_processor(clip_tokenizer, str(path))
    labels = ["wave", "jump", "clap"]
    classifier = tiny_clip_text_model(ClaverForVideoClassification, id2label=dict(enumerate(labels)))
    bank = processor.text_bank()
    assert not bool(bank["view_mask"].all())
    classifier.set_text_bank(**bank)
    video, views = videos[1], {"num_clips": num_clips, "num_crops": num_crops}

    pixel_values = processor(videos=video, **views)["pixel_values"]  # (N, T, 3, H, W)
    with torch.no_grad():
        evaluation = classifier(pixel_values=pixel_values[None]).logits.exp()[0].tolist()
    multi_view_test, _ = predict_multiview(
        classifier, [{"pixel_values": pixel_values, "labels": 0}], progress=False
    )
    reported = {"classifier's multi-view test": dict(zip(labels, multi_view_test[0].tolist(), strict=True))}
    for model in (classifier, classifier.claver):  # a classifier's backbone, or the bare dual encoder
        predictions = pipeline(TASK, model=model, processor=processor)(
            video, candidate_labels=labels, **views
        )
        reported[f"pipeline ({type(model).__name__})"] = scores(predictions)

    classifier.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    command = ["classify", video, "--model", str(tmp_path / "model"), "--labels", ",".join(labels), "--json"]
    assert main([*command, "--num-clips", str(num_clips), "--num-crops", str(num_crops)]) == 0
    reported["classify"] = scores(json.loads(capsys.readouterr().out)[video])
    if num_clips * num_crops == 1:
        reported["explain"] = explain_video(classifier, processor, video, labels, tmp_path / "explain").scores

    for name, reported_scores in reported.items():
        assert [reported_scores[label] for label in labels] == pytest.approx(evaluation, abs=1e-6), name


# ---------------------------------------------------------------- saved text embeddings


def test_saved_text_embeddings_are_reused_without_the_text_tower(
    classify, model, videos, tmp_path, monkeypatch
):
    embeddings = classify.label_embeddings(LABELS)
    embeddings.save(tmp_path / "labels.safetensors")
    loaded = LabelViewEmbeddings.load(tmp_path / "labels.safetensors")
    assert loaded.labels == LABELS and loaded.views == embeddings.views
    assert torch.equal(loaded.text_embeds, embeddings.text_embeds)
    assert torch.equal(loaded.view_mask, embeddings.view_mask)
    expected = classify(list(videos), candidate_labels=LABELS)

    text_calls = spy(monkeypatch, model, "get_text_features")
    for saved in (embeddings, loaded, tmp_path / "labels.safetensors", str(tmp_path / "labels.safetensors")):
        assert classify(list(videos), text_embeddings=saved) == expected
    assert (
        classify(videos[0], candidate_labels=LABELS, text_embeddings=embeddings, top_k=1) == expected[0][:1]
    )
    assert text_calls == []


def test_saved_text_embeddings_of_other_labels_models_or_tokens_are_refused(
    classify, model, processor, videos, tmp_path, clip_tokenizer
):
    path = tmp_path / "labels.safetensors"
    classify.label_embeddings(LABELS).save(path)
    with pytest.raises(
        ValueError, match=r"computed for the labels \['ApplyEyeMakeup'.*not `candidate_labels`"
    ):
        classify(videos[0], candidate_labels=LABELS[::-1], text_embeddings=path)
    with pytest.raises(ValueError, match="do not pass `prompt_bank` or `label_descriptions`"):
        classify(videos[0], text_embeddings=path, prompt_bank="ucf101")
    with pytest.raises(ValueError, match="Give `candidate_labels`"):
        classify(videos[0])

    other_model = tiny_clip_text_model()
    with torch.no_grad():
        other_model.text_projection.weight.mul_(1.01)
    with pytest.raises(ValueError, match="computed by another text tower than this model's"):
        pipeline(TASK, model=other_model, processor=processor)(videos[0], text_embeddings=path)
    # Another vision tower does not matter: only the text side is fingerprinted.
    other_vision = tiny_clip_text_model()
    with torch.no_grad():
        other_vision.visual_projection.weight.mul_(1.01)
    pipeline(TASK, model=other_vision, processor=processor)(videos[0], text_embeddings=path)

    short = ClaverProcessor(
        video_processor=processor.video_processor,
        tokenizer=clip_tokenizer,
        prompt_bank="ucf101",
        max_text_length=8,
    )
    with pytest.raises(ValueError, match="other tokens than this processor gives"):
        pipeline(TASK, model=model, processor=short)(videos[0], text_embeddings=path)

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="is not a file of label view embeddings"):
        classify(videos[0], text_embeddings=tmp_path / "other.safetensors")


def test_classify_command_saves_and_reuses_text_embeddings(
    model, processor, videos, tmp_path, capsys, monkeypatch
):
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    command = ["classify", *videos, "--model", str(tmp_path / "model"), "--json"]
    path = str(tmp_path / "labels.safetensors")
    text_calls = spy(monkeypatch, ClaverModel, "get_text_features")
    assert main([*command, "--labels", ",".join(LABELS), "--save-text-embeddings", path]) == 0
    computed = json.loads(capsys.readouterr().out)
    assert LabelViewEmbeddings.load(path).labels == LABELS
    assert text_calls

    text_calls.clear()
    assert main([*command, "--text-embeddings", path]) == 0
    assert json.loads(capsys.readouterr().out) == computed
    assert main([*command, "--labels", ",".join(LABELS), "--text-embeddings", path]) == 0
    assert json.loads(capsys.readouterr().out) == computed
    assert text_calls == []
    assert main([*command, "--labels", "a,b", "--text-embeddings", path]) == 2
    assert "were computed for the labels" in capsys.readouterr().err
    assert main(command) == 2
    assert "needs --labels, --bank or --text-embeddings" in capsys.readouterr().err


def test_view_averaged_log_probs_fills_missing_views_with_the_class_mean():
    logits = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]])  # (B=1, V=2, C=2)
    mask = torch.tensor([[True, True], [True, False]])
    filled = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]])  # class 1 lacks view 1: its mean logit over views is 2
    expected = filled.softmax(-1).mean(1).log()
    torch.testing.assert_close(view_averaged_log_probs(logits, mask), expected)


# ---------------------------------------------------------------- registration


def test_registration_is_idempotent(monkeypatch):
    calls = spy(monkeypatch, PIPELINE_REGISTRY, "register_pipeline")
    register_pipelines()
    assert calls == []
    entry = PIPELINE_REGISTRY.supported_tasks[TASK]
    assert entry["impl"] is ZeroShotVideoClassificationPipeline and entry["pt"] == (ClaverModel,)
    assert entry["type"] == "multimodal"


def test_pipeline_loads_from_a_folder(model, processor, classify, videos, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = pipeline(TASK, model=str(tmp_path))
    assert isinstance(loaded, ZeroShotVideoClassificationPipeline) and isinstance(loaded.model, ClaverModel)
    assert loaded.processor.prompt_bank.dataset == "ucf101"
    expected = classify(videos[0], candidate_labels=LABELS)
    assert scores(loaded(videos[0], candidate_labels=LABELS)) == pytest.approx(scores(expected), abs=1e-6)


def test_import_registers_the_task():
    code = (
        "import claver_hf\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        f"assert {TASK!r} in PIPELINE_REGISTRY.get_supported_tasks()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
