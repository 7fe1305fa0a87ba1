"""Hugging Face Hub integration: model cards, and saving or pushing a CLAVER model with its processor.

[`model_card`] writes a README with Hub metadata (`library_name: transformers`, tag `claver`), the inference
protocol of the processor, the results measured for this checkpoint (given as `EvalResult`s, which also fill
the card's `model-index`), the paper's published numbers kept in a separate section, and a usage snippet.
[`save_for_hub`] writes model, processor (with its prompt bank) and card to a folder; [`push_to_hub`] uploads
that folder in one commit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCardData
from huggingface_hub.hf_api import CommitInfo

from .configuration.configuration_claver import ClaverConfig
from .configuration.presets import CLAVER_PRESETS
from .modeling.modeling_claver import ClaverForVideoClassification, ClaverModel
from .pipelines.zero_shot_video_classification import TASK as ZERO_SHOT_TASK
from .processing.processing_claver import ClaverProcessor
from .prompts.bank import INTERPRETIVE_FORMS
from .prompts.templates import TEMPLATES

PAPER_REFERENCE = (
    "Yang, Yu, Ni, He and Li, CLAVER (Contrastive Language-Action Video learnER), ICLR 2025, "
    "[arXiv:2502.03549](https://arxiv.org/abs/2502.03549)"
)
# docs/recipe.md#published-results: the authors' numbers for their own (unreleased) models, top-1 %.
PAPER_KINETICS400 = (
    # backbone, frames × resolution, KMTA, KMCTA; 4 clips × 3 crops
    ("B/32", "8×224", 81.5, 81.4),
    ("B/16", "8×224", 84.3, 84.1),
    ("B/16", "16×224", 85.9, 86.0),
    ("L/14", "8×224", 88.1, 87.9),
    ("L/14", "16×336", 88.8, 88.9),
)
PAPER_ZERO_SHOT = {"HMDB-51": 54.1, "UCF-101": 78.6, "Kinetics-600": 73.8}  # B/16, 32 frames, KMTA, K400
PAPER_FEW_SHOT = {"HMDB-51": (58.6, 63.9, 68.0, 72.5), "UCF-101": (89.7, 92.9, 96.1, 98.0)}  # K = 2/4/8/16
DEFAULT_EXAMPLE_LABELS = ("playing guitar", "riding a bike", "juggling balls")
# Placeholder the usage snippet reads a video from.
EXAMPLE_VIDEO = "video.mp4"


def model_card(
    model: ClaverModel | ClaverForVideoClassification,
    processor: ClaverProcessor,
    repo_id: str,
    *,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    eval_results: Sequence[EvalResult] = (),
    evaluation_protocol: str | None = None,
    description: str | None = None,
    training: str | None = None,
    tags: Sequence[str] = (),
    license: str | None = None,
    example_labels: Sequence[str] | None = None,
) -> str:
    """The README (metadata block + Markdown) of a CLAVER checkpoint.

    Args:
        model: the model saved with the card; a [`ClaverForVideoClassification`] gets a classifier card
            (`pipeline("video-classification")`), a [`ClaverModel`] a zero-shot card.
        processor: the processor saved with it: its frames, views and prompt bank are the documented protocol.
        repo_id: where the files live (Hub id or local folder), used in the usage snippet.
        base_model: the checkpoint it was initialised from, e.g. `"openai/clip-vit-base-patch16"`.
        datasets: Hub ids of the training / evaluation datasets.
        eval_results: results measured on this checkpoint, shown in the card and in its `model-index`.
        evaluation_protocol: how those results were measured (split, frames, views, bank), shown with them.
        description: what this checkpoint is, e.g. its training run.
        training: training details.
        tags: extra Hub tags.
        license: a Hub license id.
        example_labels: candidate labels of the zero-shot usage snippet; defaults to the prompt bank's first
            three classes, or generic actions without a bank.
    """
    classifier = isinstance(model, ClaverForVideoClassification)
    bank = processor.prompt_bank
    if example_labels is None:
        example_labels = bank.class_names[:3] if bank is not None else DEFAULT_EXAMPLE_LABELS
    card_tags = ["claver", "video-classification", "action-recognition", "clip"]
    if not classifier:
        card_tags.append(ZERO_SHOT_TASK)
    metrics = list(dict.fromkeys(result.metric_type for result in eval_results))
    data = ModelCardData(
        library_name="transformers",
        # The Hub has no zero-shot video task; zero-shot cards carry it as a tag.
        pipeline_tag="video-classification",
        tags=list(dict.fromkeys([*card_tags, *tags])),
        language="en",
        license=license,
        base_model=base_model,
        datasets=list(datasets) or None,
        metrics=metrics or None,
        model_name=_model_name(repo_id),
        eval_results=list(eval_results) or None,
    )
    sections = [
        f"# {_model_name(repo_id)}",
        _summary(classifier, description),
        _model_details(model, processor, base_model),
        _intended_use(classifier),
        "## How to use\n\n```python\n"
        + (_classifier_snippet(repo_id) if classifier else _zero_shot_snippet(repo_id, example_labels))
        + "```",
        _protocol(model, processor),
        _measured_results(eval_results, evaluation_protocol),
        _paper_results(),
    ]
    if training:
        sections.insert(3, f"## Training\n\n{training.strip()}")
    sections.append(f"## Reference\n\n{PAPER_REFERENCE}.")
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def save_for_hub(
    model: ClaverModel | ClaverForVideoClassification,
    processor: ClaverProcessor,
    folder: str | os.PathLike,
    repo_id: str | None = None,
    **card_fields,
) -> Path:
    """Write the model, the processor (with `prompt_bank.json` when it has a bank) and `README.md` to `folder`.

    `repo_id` (the snippet's source) defaults to `folder`, so the card's snippet runs against the folder itself.
    `card_fields` go to [`model_card`]. Returns the folder.
    """
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    card = model_card(model, processor, repo_id if repo_id is not None else str(folder), **card_fields)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def push_to_hub(
    model: ClaverModel | ClaverForVideoClassification,
    processor: ClaverProcessor,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload CLAVER model",
    **card_fields,
) -> CommitInfo:
    """Create `repo_id` if needed and upload what [`save_for_hub`] writes, in one commit.

    One folder upload rather than `model.push_to_hub` + `processor.push_to_hub` + a README upload: the Hub gets
    exactly the files tested locally, and no intermediate commit has weights without their processor or card.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_for_hub(model, processor, folder, repo_id=repo_id, **card_fields)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)


def _model_name(repo_id: str) -> str:
    return Path(repo_id.rstrip("/")).name


def _summary(classifier: bool, description: str | None) -> str:
    kind = (
        "a video action classifier over a fixed set of classes, whose class texts are stored with the weights"
        if classifier
        else "a video-text dual encoder for zero-shot action recognition over any labels"
    )
    text = (
        f"A [CLAVER](https://arxiv.org/abs/2502.03549) model, {kind}. CLAVER adapts CLIP to video on both "
        "branches: a Kronecker-mask temporal transformer over all frames' tokens on the vision side, and "
        "interpretive prompts (action decomposition, body parts, synonyms) next to hand templates on the text "
        "side. Implemented with claver-hf on top of 🤗 Transformers."
    )
    return text + (f"\n\n{description.strip()}" if description else "")


def _backbone(config: ClaverConfig) -> str:
    vision = config.vision_config
    for name, preset in CLAVER_PRESETS.items():
        spec = preset["vision"]
        if (vision.hidden_size, vision.patch_size, vision.image_size, vision.num_hidden_layers) == (
            spec["hidden_size"],
            spec["patch_size"],
            spec["image_size"],
            spec["num_hidden_layers"],
        ):
            return f"ViT-{name}"
    return (
        f"custom ViT (width {vision.hidden_size}, patch {vision.patch_size}, {vision.image_size} px, "
        f"{vision.num_hidden_layers} layers)"
    )


def _model_details(
    model: ClaverModel | ClaverForVideoClassification, processor: ClaverProcessor, base_model: str | None
) -> str:
    config = model.config
    vision = config.vision_config
    rows = [
        ("Architecture", type(model).__name__),
        ("Image encoder", _backbone(config)),
        (
            "Temporal encoder",
            f"{vision.kmt_num_hidden_layers} Kronecker-mask transformer block(s), mask `{vision.kronecker_mask}`"
            + (", learned temporal embedding" if vision.use_temporal_embedding else ""),
        ),
        ("Frames per clip (config)", str(vision.num_frames)),
        ("Embedding size", str(config.projection_dim)),
    ]
    if base_model:
        rows.append(("Initialised from", f"`{base_model}`"))
    if isinstance(model, ClaverForVideoClassification):
        rows.append(
            (
                "Classes",
                f"{model.num_classes}, each with up to {config.text_bank_num_views} text views in the stored bank",
            )
        )
    bank = processor.prompt_bank
    rows.append(("Prompt bank", f"`{bank.dataset}` ({len(bank.classes)} classes)" if bank else "none"))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"## Model details\n\n| | |\n|---|---|\n{table}"


def _intended_use(classifier: bool) -> str:
    use = (
        "Recognising which of the model's classes (`config.id2label`) a short video clip shows."
        if classifier
        else "Ranking free-form action labels for short video clips (zero-shot), and video-text retrieval "
        "by comparing embeddings. Labels found in the prompt bank are described by its interpretive prompts; "
        "others by hand templates, to which `label_descriptions` can add sentences."
    )
    return (
        f"## Intended use\n\n{use} Research on action recognition is the intended setting.\n\n"
        "Limitations: texts are English and cut at 77 tokens (CLIP's context); a clip is a fixed number of frames "
        "sampled uniformly over the whole video, so long videos with several actions are summarised; accuracy "
        "outside the training distribution is not measured here; CLIP's biases carry over. Not intended for "
        "identifying or surveilling people."
    )


def _zero_shot_snippet(repo_id: str, labels: Sequence[str]) -> str:
    return f"""\
import claver_hf  # registers CLAVER with transformers' Auto classes and pipelines
import torch
from claver_hf.prompts import display_name
from transformers import AutoModel, AutoProcessor, pipeline

repo_id = {json.dumps(repo_id)}
video = {json.dumps(EXAMPLE_VIDEO)}  # a video file, or frames as a (T, H, W, 3) uint8 array
labels = {json.dumps(list(labels))}

classifier = pipeline("{ZERO_SHOT_TASK}", model=repo_id)
print(classifier(video, candidate_labels=labels))

# Or with one text per label, without prompt averaging:
processor = AutoProcessor.from_pretrained(repo_id)
model = AutoModel.from_pretrained(repo_id).eval()
inputs = processor(text=[f"a video of {{display_name(label)}}." for label in labels], videos=video)
with torch.no_grad():
    probs = model(**inputs).logits_per_video.softmax(dim=-1)[0]
print(dict(zip(labels, probs.tolist())))
"""


def _classifier_snippet(repo_id: str) -> str:
    return f"""\
import claver_hf  # registers CLAVER with transformers' Auto classes and pipelines
import torch
from transformers import AutoModelForVideoClassification, AutoProcessor, pipeline

repo_id = {json.dumps(repo_id)}
video = {json.dumps(EXAMPLE_VIDEO)}  # a video file, or frames as a (T, H, W, 3) uint8 array

classifier = pipeline("video-classification", model=repo_id)
print(classifier(video, top_k=5))

processor = AutoProcessor.from_pretrained(repo_id)
model = AutoModelForVideoClassification.from_pretrained(repo_id).eval()
with torch.no_grad():
    probs = model(**processor(videos=video)).logits.softmax(dim=-1)[0]
print(model.config.id2label[int(probs.argmax())], float(probs.max()))
"""


def _protocol(model: ClaverModel | ClaverForVideoClassification, processor: ClaverProcessor) -> str:
    video = processor.video_processor
    views = video.num_clips * video.num_crops
    bank = processor.prompt_bank
    if isinstance(model, ClaverForVideoClassification):
        texts = "the text bank stored in the weights (templates and interpretive prompts of each class)"
    elif bank is not None:
        texts = (
            f"for labels in the `{bank.dataset}` bank, its {len(bank.templates)} templates and its "
            f"{', '.join(INTERPRETIVE_FORMS)} prompts; for other labels, the {len(TEMPLATES)} hand templates"
        )
    else:
        texts = f"the {len(TEMPLATES)} hand templates per label (no prompt bank saved)"
    return (
        "## Inference protocol\n\n"
        f"- Frames: {video.num_frames} per clip, the centre frame of each of {video.num_frames} equal segments "
        "(TSN sampling).\n"
        f"- Views: {video.num_clips} clip(s) × {video.num_crops} crop(s) = {views} per video, short side "
        f"{video.size['shortest_edge']} px, {video.crop_size['height']} px crops (processor defaults; "
        "`num_clips` / `num_crops` override them per call; the paper tests with 4 × 3).\n"
        f"- Text views: {texts}.\n"
        "- Scoring: for every text view, softmax over the labels of `logit_scale · <video embedding, text "
        "embedding>`; probabilities averaged over the text views of each label (a label with fewer views "
        "fills the gaps with its mean logit), then over the video's views."
    )


def _measured_results(eval_results: Sequence[EvalResult], protocol: str | None) -> str:
    header = "## Measured results (this checkpoint)\n\n"
    if not eval_results:
        return header + "No results have been measured for this checkpoint yet."
    rows = "\n".join(
        f"| {r.dataset_name} | {r.dataset_split or ''} | {r.task_type} | {r.metric_name or r.metric_type} "
        f"| {r.metric_value} |"
        for r in eval_results
    )
    table = f"| Dataset | Split | Task | Metric | Value |\n|---|---|---|---|---|\n{rows}"
    return header + table + (f"\n\nProtocol: {protocol.strip()}" if protocol else "")


def _paper_results() -> str:
    kinetics = "\n".join(
        f"| {backbone} | {frames} | {kmta} | {kmcta} |" for backbone, frames, kmta, kmcta in PAPER_KINETICS400
    )
    zero_shot = " / ".join(f"{name} {value}" for name, value in PAPER_ZERO_SHOT.items())
    few_shot = "\n".join(
        f"| {name} | " + " | ".join(str(v) for v in values) + " |" for name, values in PAPER_FEW_SHOT.items()
    )
    return (
        "## Published results (from the paper, not measured on this checkpoint)\n\n"
        "The authors' numbers for their own models, quoted for reference; they are not results of this "
        "checkpoint and were not reproduced here. Top-1 accuracy (%).\n\n"
        "Kinetics-400, 4 clips × 3 crops:\n\n"
        f"| Backbone | Frames × size | KMTA | KMCTA |\n|---|---|---|---|\n{kinetics}\n\n"
        f"Zero-shot (B/16, 32 frames, trained on Kinetics-400, KMTA): {zero_shot}.\n\n"
        "Few-shot (B/16, 32 frames), K shots per class:\n\n"
        f"| Dataset | K=2 | K=4 | K=8 | K=16 |\n|---|---|---|---|---|\n{few_shot}"
    )


__all__ = ["model_card", "push_to_hub", "save_for_hub"]
