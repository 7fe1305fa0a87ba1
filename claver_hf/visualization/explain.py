"""`explain_video`: classify a video among labels and show what the model looked at, in image files.

Written to the output folder:

- `attention.png`: the sampled frames, as the model saw them (resized and centre-cropped), with the heat map of
  [`video_attention_maps`] over each and a caption `position/T  frame <index in the source video>`;
- `attention.gif` (and `attention.mp4` on request): the same overlays, one frame each;
- `words.png`: the best label's prompt with each word shaded by its importance ([`word_importance`]);
- `explain.json`: the label probabilities, the prompt, the word importances, the sampled frame indices and the
  methods used.

Labels are scored exactly as by the zero-shot pipeline and `claver-hf classify` (one test view): each label's
text views come from [`resolve_label_views`] (the prompt bank's templates and interpretive prompts, or the 16
hand templates for a label not in the bank), and [`class_log_probs`] averages the class probabilities of every
text view. The prompt explained is the best label's view most similar to the video, an interpretive prompt when
the bank has one that fits better than the templates.
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

from ..modeling.scoring import class_log_probs
from ..pipelines.label_embeddings import LabelViewEmbeddings
from ..processing.processing_claver import ClaverProcessor
from ..processing.sampling import segment_indices
from ..processing.video_processing_claver import ClaverVideoProcessor
from ..prompts.bank import PromptBank
from ..prompts.label_views import resolve_label_views
from ..video_io.container import probe_video
from .attention import AnyClaverModel, AttentionMethod, video_attention_maps
from .render import attention_tiles, save_gif, save_grid, save_mp4, save_word_importance
from .words import WordMethod, word_scores

logger = logging.get_logger(__name__)


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
        labels: candidate labels: class or display names of the prompt bank, or any action names.
        output_dir: folder for the files (created if needed; existing files of the same names are replaced).
        method: heat maps from `"kmt"` attention or `"rollout"` (see [`attention_relevance`]).
        prompt_bank: a [`PromptBank`], a bundled bank name or a bank file; defaults to the processor's bank.
        num_frames: frames to sample; defaults to the model's `num_frames`.
        word_method: `"gradient"` (gradient × input) or `"occlusion"` (see [`word_importance`]).
        gif / mp4: also write `attention.gif` / `attention.mp4`.
    """
    bank = processor.prompt_bank if prompt_bank is None else prompt_bank
    label_views = resolve_label_views(labels, bank)
    labels = label_views.labels
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

    with torch.no_grad():
        video_embed = claver.get_video_features(pixel_values=pixel_values).pooler_output  # (1, E)
        embeddings = LabelViewEmbeddings.compute(claver, processor, label_views)
        log_probs = class_log_probs(
            video_embed, embeddings.text_embeds, claver.logit_scale.exp(), embeddings.view_mask
        )
    probs = log_probs[0].exp().float().cpu()
    best = int(probs.argmax())
    views = label_views.views[best]
    video_embed = video_embed[0]
    prompt = views[int((embeddings.text_embeds[: len(views), best] @ video_embed).argmax())]
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


__all__ = ["ExplainResult", "explain_video"]
