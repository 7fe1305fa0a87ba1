"""The path users take, run with the README's own commands (only paths swapped): a CLIP checkpoint laid out like
`openai/clip-vit-base-patch16` on the Hub -> the fine-tuning command -> a folder that reloads through the Auto
classes and classifies in `pipeline("video-classification")`, the zero-shot pipeline and `claver-hf classify`;
then the same starting from the CLAVER checkpoint this produced, and from OpenAI CLIP weights converted with
`claver-hf convert`."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForVideoClassification, AutoProcessor, pipeline

import claver_hf  # noqa: F401  (registers CLAVER with the Auto classes and the pipeline registry)

from .hub_repository import REPOSITORY_FILES
from .reference_claver import random_reference_state_dict
from .videos import write_video

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CLAVER_HF = Path(sys.executable).parent / "claver-hf"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
CLASSES = ("PlayingGuitar", "Surfing")  # UCF-101 classes, as the README's command uses the ucf101 bank
# "a video of a person {}." with PlayingGuitar's display name, through CLIP's BPE (OpenAI's ids).
KNOWN_PROMPT = "a video of a person playing the guitar."
KNOWN_IDS = [49406, 320, 1455, 539, 320, 2533, 1629, 518, 5084, 269, 49407]


def readme_command(program: str) -> list[str]:
    """The README's shell command that runs `program`, continuation lines joined, as an argument list."""
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        command = block.replace("\\\n", " ")
        for line in command.splitlines():
            if program in line:
                return shlex.split(line)
    raise AssertionError(f"The README has no bash command running {program}.")


def readme_table_command(name: str) -> list[str]:
    """The `claver-hf` command of the README's command table whose first words are `name`."""
    for row in re.findall(r"^\| `(claver-hf [^`]*)`", README, flags=re.M):
        if row.startswith(name):
            return row.replace("\\|", "|").split()
    raise AssertionError(f"The README's command table has no {name!r}.")


def swap(words: list[str], replacements: dict[str, str]) -> list[str]:
    """`words` with whole words replaced; every word to replace must be there (the README changed otherwise)."""
    missing = set(replacements) - set(words)
    assert not missing, f"{missing} not in the README's command {' '.join(words)}"
    return [replacements.get(word, word) for word in words]


def run(words: list[str]) -> subprocess.CompletedProcess:
    program = {"python": sys.executable, "claver-hf": str(CLAVER_HF)}.get(words[0], words[0])
    result = subprocess.run(
        [program, *words[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{' '.join(words)}\n{result.stderr[-4000:]}"
    return result


def fine_tune(model: Path | str, dataset: Path, output: Path) -> Path:
    """The README's fine-tuning command, with the checkpoint, dataset and output paths swapped."""
    command = readme_command("examples/run_video_classification.py")
    run(
        swap(
            command,
            {
                "openai/clip-vit-base-patch16": str(model),
                "data/ucf101": str(dataset),
                "outputs/claver-b16-ucf101": str(output),
            },
        )
    )
    return output


def readme_zero_shot(model: Path, video: Path) -> list[dict]:
    """The README's quick-start zero-shot snippet, with the model and video swapped; its last expression's value."""
    block = next(b for b in re.findall(r"```py\n(.*?)```", README, flags=re.S) if "zero-shot-video" in b)
    block = block.replace('"path/or/hub-id-of-a-claver-checkpoint"', repr(str(model)))
    block = block.replace('"video.mp4"', repr(str(video)))
    tree = ast.parse(block)
    last = tree.body.pop()
    assert isinstance(last, ast.Expr), "the snippet should end with the classification call"
    namespace: dict = {}
    exec(compile(tree, "README quick start", "exec"), namespace)
    return eval(compile(ast.Expression(last.value), "README quick start", "eval"), namespace)


@pytest.fixture(scope="module")
def ucf_dataset(tmp_path_factory) -> Path:
    """Two UCF-101 classes in the folder layout the README's `--dataset_dir data/ucf101` expects."""
    root = tmp_path_factory.mktemp("data") / "ucf101"
    for split, count in (("train", 2), ("validation", 1), ("test", 1)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                write_video(root / split / name / f"{i}.mp4", num_frames=24 + 8 * label + i, size=(48, 40))
    return root


def check_fine_tuned(output: Path, video: Path) -> None:
    """What a user does with the fine-tuned folder, each way the README shows."""
    assert {"config.json", "model.safetensors", "tokenizer.json", "prompt_bank.json", "results.json"} <= {
        p.name for p in output.iterdir()
    }
    model = AutoModelForVideoClassification.from_pretrained(output).eval()
    processor = AutoProcessor.from_pretrained(output)
    assert model.config.id2label == dict(enumerate(CLASSES))
    assert (model.config.vision_config.num_frames, model.config.vision_config.image_size) == (8, 32)

    # CLIP's BPE ids, start and end tokens included, reach the text tower.
    assert processor.tokenizer(KNOWN_PROMPT)["input_ids"] == KNOWN_IDS
    received = []
    hook = model.claver.text_model.register_forward_pre_hook(
        lambda module, args, kwargs: received.extend(kwargs["input_ids"].tolist()), with_kwargs=True
    )
    with torch.no_grad():
        logits = model(**processor(videos=str(video))).logits
    hook.remove()
    assert logits.shape == (1, len(CLASSES))
    assert [ids[: len(KNOWN_IDS)] for ids in received].count(KNOWN_IDS) == 1

    ranked = pipeline("video-classification", model=str(output))(str(video))
    assert sorted(entry["label"] for entry in ranked) == sorted(CLASSES)
    assert sum(entry["score"] for entry in ranked) == pytest.approx(1.0, abs=1e-4)

    zero_shot = readme_zero_shot(output, video)
    assert {entry["label"] for entry in zero_shot} == {"playing guitar", "juggling balls", "surfing water"}

    classify = readme_table_command("claver-hf classify")
    classify = swap(
        classify, {"VIDEO...": str(video), "PATH": str(output), "a,b,c": "playing guitar,surfing"}
    )
    classify = [word for word in classify if word not in ("|", "--bank", "NAME", "[--json]")] + ["--json"]
    scores = json.loads(run(classify).stdout)[str(video)]
    assert {entry["label"] for entry in scores} == {"playing guitar", "surfing"}


def test_the_miniature_repository_is_shaped_like_the_hub_one(clip_repository):
    assert sorted(p.name for p in clip_repository.iterdir()) == sorted(REPOSITORY_FILES)
    config = json.loads((clip_repository / "config.json").read_text())
    assert config["text_config"]["eos_token_id"] == 2 and config["text_config_dict"] is None
    # The slow-tokenizer files alone (vocab.json + merges.txt, what older clients read) give the same ids.
    from transformers import CLIPTokenizer

    slow = CLIPTokenizer(
        vocab=json.loads((clip_repository / "vocab.json").read_text()),
        merges=[
            tuple(line.split()) for line in (clip_repository / "merges.txt").read_text().splitlines()[1:]
        ],
    )
    assert slow(KNOWN_PROMPT)["input_ids"] == KNOWN_IDS


def test_fine_tune_from_clip_then_from_the_claver_checkpoint(clip_repository, ucf_dataset, tmp_path):
    video = ucf_dataset / "test" / "Surfing" / "0.mp4"
    from_clip = fine_tune(clip_repository, ucf_dataset, tmp_path / "from-clip")
    check_fine_tuned(from_clip, video)
    results = json.loads((from_clip / "results.json").read_text())
    assert results["train"]["epoch"] == 80 and results["validation"]["eval_num_samples"] == 2

    from_claver = fine_tune(from_clip, ucf_dataset, tmp_path / "from-claver")
    check_fine_tuned(from_claver, video)
    before = AutoModelForVideoClassification.from_pretrained(from_clip).state_dict()
    after = AutoModelForVideoClassification.from_pretrained(from_claver).state_dict()
    assert not torch.equal(
        before["claver.visual_projection.weight"], after["claver.visual_projection.weight"]
    )


def test_fine_tune_from_converted_openai_weights(ucf_dataset, tmp_path):
    openai = random_reference_state_dict(num_frames=0, kmt_layers=0, vocab_size=49408, context_length=77)
    torch.save(openai, tmp_path / "ViT-tiny.pt")
    convert = swap(
        readme_table_command("claver-hf convert"),
        {"reference|openai-clip": "openai-clip", "CHECKPOINT": str(tmp_path / "ViT-tiny.pt"),
         "OUT": str(tmp_path / "converted")},
    )  # fmt: skip
    run([*convert, "--head-dim", "8"])  # the tiny width of 32 has no 64-wide heads
    assert (tmp_path / "converted" / "tokenizer.json").is_file()
    check_fine_tuned(
        fine_tune(tmp_path / "converted", ucf_dataset, tmp_path / "fine-tuned"),
        video=ucf_dataset / "test" / "PlayingGuitar" / "0.mp4",
    )
