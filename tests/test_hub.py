"""Model cards and Hub folders, offline: metadata, sections, save -> load -> predict, the card's snippet."""

import re

import pytest
import torch
import yaml
from huggingface_hub import EvalResult, ModelCard
from transformers import AutoModel, AutoProcessor, pipeline

from claver_hf import ClaverForVideoClassification, ClaverModel, ClaverProcessor, hub
from claver_hf.hub import model_card, push_to_hub, save_for_hub
from claver_hf.pipelines import TASK, register_pipelines

from .test_pipelines import LABELS, scores, tiny_clip_text_model, tiny_processor
from .videos import write_video

register_pipelines()  # until `import claver_hf` does it

REPO_ID = "someone/claver-tiny-ucf101"
RESULT = EvalResult(
    task_type="video-classification",
    dataset_type="ucf101",
    dataset_name="UCF-101",
    dataset_split="test",
    metric_type="accuracy",
    metric_name="top-1 accuracy",
    metric_value=12.34,
)


@pytest.fixture(scope="module")
def model():
    return tiny_clip_text_model()


@pytest.fixture(scope="module")
def processor(clip_tokenizer):
    return tiny_processor(clip_tokenizer, num_clips=2, num_crops=3)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp("video") / "clip.mp4", num_frames=24))


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, flags=re.S)
    assert match, "the card must start with a YAML metadata block"
    return yaml.safe_load(match.group(1))


def section(card: str, title: str) -> str:
    """The text of the `## title...` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", card, flags=re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def python_block(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


# ---------------------------------------------------------------- card contents


def test_metadata(model, processor):
    card = model_card(
        model,
        processor,
        REPO_ID,
        base_model="openai/clip-vit-base-patch16",
        datasets=["ucf101"],
        eval_results=[RESULT],
        tags=["demo"],
        license="mit",
    )
    data = ModelCard(card).data.to_dict()
    assert data == front_matter(card)  # what the Hub parses is the YAML block
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "video-classification"
    assert {"claver", "zero-shot-video-classification", "demo"} <= set(data["tags"])
    assert data["datasets"] == ["ucf101"] and data["base_model"] == "openai/clip-vit-base-patch16"
    assert data["metrics"] == ["accuracy"] and data["license"] == "mit" and data["language"] == "en"
    (entry,) = data["model-index"]
    assert entry["name"] == "claver-tiny-ucf101"
    assert entry["results"][0]["metrics"][0]["value"] == 12.34
    assert entry["results"][0]["dataset"] == {"name": "UCF-101", "type": "ucf101", "split": "test"}
    # Without measured results there is no model-index nor metrics.
    bare = front_matter(model_card(model, processor, REPO_ID))
    assert "model-index" not in bare and "metrics" not in bare and "base_model" not in bare


def test_sections_keep_measured_and_published_numbers_apart(model, processor):
    card = model_card(
        model, processor, REPO_ID, eval_results=[RESULT], evaluation_protocol="UCF-101 split 1."
    )
    measured = section(card, "Measured results")
    published = section(card, "Published results")
    assert "12.34" in measured and "UCF-101 split 1." in measured and "78.6" not in measured
    assert "12.34" not in published
    assert all(number in published for number in ("84.3", "88.9", "54.1", "78.6", "73.8", "98.0"))
    assert "not measured on this checkpoint" in card
    protocol = section(card, "Inference protocol")
    assert (
        "4 per clip" in protocol and "2 clip(s) × 3 crop(s) = 6" in protocol and "`ucf101` bank" in protocol
    )
    details = section(card, "Model details")
    assert "custom ViT" in details and "`kmta`" in details and "`ucf101` (101 classes)" in details
    assert "No results have been measured" in model_card(model, processor, REPO_ID)
    for heading in ("Intended use", "How to use", "Reference"):
        section(card, heading)


def test_preset_backbones_are_named():
    from claver_hf import preset_config

    assert hub._backbone(preset_config("L/14@336")) == "ViT-L/14@336"


# ---------------------------------------------------------------- save, load, predict


def test_save_load_predict_round_trip(model, processor, video, tmp_path):
    folder = save_for_hub(model, processor, tmp_path / "claver", license="mit")
    names = {path.name for path in folder.iterdir()}
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "prompt_bank.json",
    } <= names
    assert front_matter((folder / "README.md").read_text())["license"] == "mit"

    loaded_model = AutoModel.from_pretrained(folder)
    assert isinstance(loaded_model, ClaverModel)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded_model.state_dict()[name], tensor)
    loaded_processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(loaded_processor, ClaverProcessor)
    assert loaded_processor.prompt_bank.to_dict() == processor.prompt_bank.to_dict()
    assert (loaded_processor.video_processor.num_clips, loaded_processor.video_processor.num_crops) == (2, 3)

    expected = pipeline(TASK, model=model, processor=processor)(video, candidate_labels=LABELS)
    predictions = pipeline(TASK, model=str(folder))(video, candidate_labels=LABELS)
    assert scores(predictions) == pytest.approx(scores(expected), abs=1e-6)


def test_card_snippet_runs(model, processor, video, tmp_path, capsys):
    folder = save_for_hub(model, processor, tmp_path / "claver", repo_id=REPO_ID)
    snippet = python_block((folder / "README.md").read_text())
    assert f'repo_id = "{REPO_ID}"' in snippet and "ApplyEyeMakeup" in snippet
    snippet = snippet.replace(REPO_ID, str(folder)).replace(hub.EXAMPLE_VIDEO, video)
    exec(compile(snippet, "README.md snippet", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("ApplyEyeMakeup") == 2  # pipeline result, then the direct model call


def test_classifier_card_snippet_runs(clip_tokenizer, video, tmp_path, capsys):
    classifier = tiny_clip_text_model(ClaverForVideoClassification, id2label={0: "waving", 1: "clapping"})
    text_processor = tiny_processor(clip_tokenizer)
    bank = text_processor.tokenize(["waving", "a video of waving.", "clapping", "a video of clapping."])
    ids, mask = (
        torch.tensor(bank[key]).view(2, 2, -1).transpose(0, 1) for key in ("input_ids", "attention_mask")
    )
    classifier.set_text_bank(ids.contiguous(), mask.contiguous())  # (views, classes, tokens)
    processor = tiny_processor(clip_tokenizer, None)
    folder = save_for_hub(classifier, processor, tmp_path / "classifier", repo_id=REPO_ID)
    card = (folder / "README.md").read_text()
    assert "zero-shot-video-classification" not in front_matter(card)["tags"]
    assert "2, each with up to 2 text views" in section(card, "Model details")
    snippet = python_block(card).replace(REPO_ID, str(folder)).replace(hub.EXAMPLE_VIDEO, video)
    assert 'pipeline("video-classification"' in snippet
    exec(compile(snippet, "README.md snippet", "exec"), {})
    out = capsys.readouterr().out
    assert "waving" in out and "clapping" in out


def test_push_to_hub_uploads_the_saved_folder(model, processor, monkeypatch):
    """`push_to_hub` creates the repo and uploads save_for_hub's folder in one commit (Hub calls faked)."""
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["create_repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message):
            from pathlib import Path

            files = {path.name: path for path in Path(folder_path).iterdir()}
            calls["upload_folder"] = (repo_id, sorted(files), commit_message)
            calls["readme"] = files["README.md"].read_text()
            return "commit"

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    assert push_to_hub(model, processor, REPO_ID, private=True, token="t", datasets=["ucf101"]) == "commit"
    assert calls["token"] == "t" and calls["create_repo"] == (REPO_ID, True, True)
    repo_id, files, _ = calls["upload_folder"]
    assert repo_id == REPO_ID and {"README.md", "model.safetensors", "prompt_bank.json"} <= set(files)
    assert f'repo_id = "{REPO_ID}"' in calls["readme"] and front_matter(calls["readme"])["datasets"] == [
        "ucf101"
    ]
