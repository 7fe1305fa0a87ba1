"""`explain_video`: classify a video among labels and show what the model looked at, in image files.

Written to the output folder:

- `attention.png`: the sampled frames, as the model saw them (resized and centre-cropped), with the heat map of
  [`video_attention_maps`] over each and a caption `position/T  frame <index in the source video>`;
- `attention.gif` (and `attention.mp4` on request): the same overlays, one frame each;
- `words.png`: the best label's prompt with each word shaded by its importance ([`word_importance`]);
- `explain.json`: the label probabilities, the prompt, the word importances, the sampled frame indices and the
  methods used.

Labels are scored as in zero-shot classification with prompt ensembling: the text embedding of a label is the
mean of the normalised embeddings of its views, normalised again; without a prompt bank its only view is the
template `"a video of {display name}."`. Label probabilities are the softmax over labels of
`logit_scale.exp() × similarity`. (A [`ClaverForVideoClassification`] averages the probabilities of its views
instead; with a single view both rules agree.) The prompt explained is the best label's view most similar to
the video, an interpretive prompt when the bank has one that fits better than the templates.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from ..modeling.modeling_claver import ClaverModel
from ..processing.processing_claver import ClaverProcessor
from ..processing.sampling import segment_indices
from ..processing.video_processing_claver import ClaverVideoProcessor
from ..prompts.bank import PromptBank, display_name, load_prompt_bank
from ..video_io.container import probe_video
from .attention import AnyClaverModel, AttentionMethod, video_attention_maps
from .render import attention_tiles, save_gif, save_grid, save_mp4, save_word_importance
from .words import WordMethod, word_scores

logger = logging.get_logger(__name__)

DEFAULT_TEMPLATE = "a video of {}."
TEXT_BATCH_SIZE = 256


@dataclass
class ExplainResult:
    """What [`explain_video`] found and wrote.

    Attributes:
        label: the label with the highest probability.
        scores: probability of each label, in the order given.
        prompt: the text whose words were scored (a view of `label`).
        words: `(word, importance)` pairs of `prompt`.
        maps: `(T, h, w)` heat maps in `[0, 1]` over the patch grid of the sampled frames.
        frame_indices: the `T` sampled frame indices in the source video.
        files: written files by kind (`"attention_png"`, `"attention_gif"`, `"attention_mp4"`, `"words_png"`,
            `"explain_json"`).
    """

    label: str
    scores: dict[str, float]
    prompt: str
    words: list[tuple[str, float]]
    maps: torch.Tensor
    frame_indices: list[int]
    files: dict[str, Path] = field(default_factory=dict)


def _label_views(labels: list[str], prompt_bank: PromptBank | str | os.PathLike | None) -> list[list[str]]:
    if prompt_bank is None:
        return [[DEFAULT_TEMPLATE.format(display_name(label))] for label in labels]
    bank = prompt_bank if isinstance(prompt_bank, PromptBank) else load_prompt_bank(prompt_bank)
    bank = bank.subset(labels)
    return [bank.views(label) for label in labels]


def _text_embeddings(
    model: ClaverModel, processor: ClaverProcessor, texts: list[str], device: torch.device
) -> torch.Tensor:
    """`(N, E)` normalised embeddings of `texts`, encoded `TEXT_BATCH_SIZE` at a time."""
    chunks = []
    for start in range(0, len(texts), TEXT_BATCH_SIZE):
        tokens = processor.tokenize(texts[start : start + TEXT_BATCH_SIZE])
        features = model.get_text_features(
            input_ids=torch.tensor(tokens["input_ids"], device=device),
            attention_mask=torch.tensor(tokens["attention_mask"], device=device),
        ).pooler_output
        chunks.append(features / features.norm(dim=-1, keepdim=True))
    return torch.cat(chunks)


def _source_frame_indices(video: Any, num_frames: int, video_processor: ClaverVideoProcessor) -> list[int]:
    """The frames the video processor samples for evaluation, as indices in the source video."""
    total = probe_video(video).num_frames if isinstance(video, (str, os.PathLike)) else len(video)
    if not video_processor.do_sample_frames:
        return list(range(total))
    return segment_indices(total, num_frames, training=False)


def _display_frames(pixel_values: torch.Tensor, video_processor: ClaverVideoProcessor) -> np.ndarray:
    """`(T, 3, H, W)` model input -> `(T, H, W, 3)` uint8: the frames as the model saw them."""
    frames = pixel_values.detach().float().cpu()
    if video_processor.do_normalize:
        mean = torch.tensor(video_processor.image_mean).view(1, -1, 1, 1)
        std = torch.tensor(video_processor.image_std).view(1, -1, 1, 1)
        frames = frames * std + mean
    if video_processor.do_rescale:
        frames = frames / video_processor.rescale_factor
    return frames.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def explain_video(
    model: AnyClaverModel,
    processor: ClaverProcessor,
    video: Any,
    labels: list[str],
    output_dir: str | os.PathLike,
    *,
    method: AttentionMethod = "kmt",
    prompt_bank: PromptBank | str | os.PathLike | None = None,
    num_frames: int | None = None,
    word_method: WordMethod = "gradient",
    gif: bool = True,
    mp4: bool = False,
) -> ExplainResult:
    """Score `labels` for a video, then write its attention heat maps and the best prompt's word importance.

    See the module docstring for the files and the scoring rule. The model should be in eval mode.

    Args:
        model: a [`ClaverModel`] or a [`ClaverForVideoClassification`].
        processor: a [`ClaverProcessor`] (its video processor samples and crops the frames, its tokenizer
            encodes the prompts).
        video: a video file, or decoded frames in a form [`ClaverVideoProcessor`] accepts (one video).
        labels: candidate labels: keys of `prompt_bank` when given, otherwise any action names.
        output_dir: folder for the files (created if needed; existing files of the same names are replaced).
        method: heat maps from `"kmt"` attention or `"rollout"` (see [`attention_relevance`]).
        prompt_bank: a [`PromptBank`], a bundled bank name or a bank file, whose views of each label are
            ensembled; `None` uses the template `"a video of {label}."`.
        num_frames: frames to sample; defaults to the model's `num_frames`.
        word_method: `"gradient"` (gradient × input) or `"occlusion"` (see [`word_importance`]).
        gif / mp4: also write `attention.gif` / `attention.mp4`.
    """
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"`labels` must be a non-empty list of distinct labels, got {labels}.")
    claver = model.base_model
    if claver.training:
        logger.warning(
            "explain_video: the model is in training mode; call `model.eval()` for deterministic maps."
        )
    param = next(claver.parameters())
    num_frames = num_frames or claver.config.vision_config.num_frames
    video_processor = processor.video_processor
    pixel_values = video_processor(
        video, num_frames=num_frames, num_clips=1, num_crops=1, training=False, return_tensors="pt"
    )["pixel_values"]
    if pixel_values.shape[0] != 1:
        raise ValueError(f"`explain_video` explains one video, got {pixel_values.shape[0]}.")
    pixel_values = pixel_values.to(device=param.device, dtype=param.dtype)

    views = _label_views(labels, prompt_bank)
    with torch.no_grad():
        video_embed = claver.get_video_features(pixel_values=pixel_values).pooler_output[0]  # (E,)
        view_embeds = _text_embeddings(claver, processor, [v for vs in views for v in vs], param.device)
        per_label = view_embeds.split([len(vs) for vs in views])
        label_embeds = torch.stack([e.mean(dim=0) for e in per_label])
        label_embeds = label_embeds / label_embeds.norm(dim=-1, keepdim=True)
        probs = (claver.logit_scale.exp() * label_embeds @ video_embed).softmax(dim=-1).float().cpu()
    best = int(probs.argmax())
    prompt = views[best][int((per_label[best] @ video_embed).argmax())]
    words = word_scores(claver, processor.tokenizer, prompt, video_embed, word_method)
    maps = video_attention_maps(claver, pixel_values, method)
    frame_indices = _source_frame_indices(video, pixel_values.shape[1], video_processor)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {"attention_png": output_dir / "attention.png", "words_png": output_dir / "words.png"}
    count = len(frame_indices)
    captions = [f"{t + 1}/{count}  frame {index}" for t, index in enumerate(frame_indices)]
    tiles = attention_tiles(_display_frames(pixel_values[0], video_processor), maps.numpy(), captions)
    save_grid(tiles, files["attention_png"])
    if gif:
        files["attention_gif"] = output_dir / "attention.gif"
        save_gif(tiles, files["attention_gif"])
    if mp4:
        files["attention_mp4"] = output_dir / "attention.mp4"
        save_mp4(tiles, files["attention_mp4"])
    title = f"{labels[best]} (p = {probs[best]:.2f}): word importance, {word_method}"
    save_word_importance(words, files["words_png"], title=title)

    scores = {label: float(p) for label, p in zip(labels, probs, strict=True)}
    files["explain_json"] = output_dir / "explain.json"
    report = {
        "video": os.fspath(video) if isinstance(video, (str, os.PathLike)) else None,
        "label": labels[best],
        "scores": scores,
        "prompt": prompt,
        "words": [{"word": word, "importance": score} for word, score in words],
        "attention_method": method,
        "word_method": word_method,
        "frame_indices": frame_indices,
        "files": {kind: path.name for kind, path in files.items()},
    }
    files["explain_json"].write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return ExplainResult(
        label=labels[best],
        scores=scores,
        prompt=prompt,
        words=words,
        maps=maps,
        frame_indices=frame_indices,
        files=files,
    )


__all__ = ["DEFAULT_TEMPLATE", "ExplainResult", "explain_video"]
