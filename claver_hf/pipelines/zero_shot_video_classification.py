"""`pipeline("zero-shot-video-classification")`: rank free-form action labels for videos with a CLAVER model.

Every candidate label is described by several text views (SPEC §3): its interpretive prompts and the bank's
templates when the label is in a prompt bank, the 16 hand templates filled with its name otherwise, plus any
descriptions the caller gives. For each view, the video is scored against all labels (softmax over labels of
`logit_scale · <video embedding, normalised text embedding>`); the probabilities are averaged over the views,
then over the test views of the video (clips × crops).

Shapes: `B` videos, `N` test views per video, `V` text views per label, `C` labels, `E` embedding size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.pipelines.base import Pipeline

from ..modeling.modeling_claver import ClaverForVideoClassification, ClaverModel
from ..modeling.scoring import view_averaged_log_probs
from ..processing.processing_claver import ClaverProcessor
from ..processing.video_processing_claver import _is_single_video
from ..prompts.bank import PromptBank, display_name, load_prompt_bank, normalize_sentence
from ..prompts.templates import TEMPLATES

TASK = "zero-shot-video-classification"


@dataclass
class CandidateLabelTexts:
    """The text views of one call's candidate labels.

    Attributes:
        labels: the candidate labels as given, in order.
        views: for each label, its text views.
        bank_classes: for each label, the prompt-bank class it matched, or `None` (templates only).
        text_embeds: `(V, C, E)` normalised embeddings of the views, computed once per call by the pipeline.
        view_mask: `(V, C)`, `False` where label `c` has no view `v` (labels have different numbers of views).
    """

    labels: list[str]
    views: list[list[str]]
    bank_classes: list[str | None]
    text_embeds: torch.Tensor | None = None
    view_mask: torch.Tensor | None = None


def candidate_label_texts(
    candidate_labels: Sequence[str],
    prompt_bank: PromptBank | None = None,
    label_descriptions: Mapping[str, str | Sequence[str]] | None = None,
) -> CandidateLabelTexts:
    """The text views of each candidate label.

    A label found in `prompt_bank` (by class name, or by display name, ignoring case and punctuation) takes the
    bank's views of that class: its templates filled with the class's display name, then its interpretive
    prompts. Any other label takes [`TEMPLATES`] filled with `display_name(label)`. Sentences in
    `label_descriptions[label]` are appended as extra views.
    """
    labels = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
    if not labels:
        raise ValueError("`candidate_labels` is empty: give at least one label.")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"`candidate_labels` repeats {duplicates}.")
    descriptions = dict(label_descriptions or {})
    unknown = [label for label in descriptions if label not in labels]
    if unknown:
        raise ValueError(f"`label_descriptions` has entries for {unknown}, which are not candidate labels.")

    lookup = _bank_lookup(prompt_bank) if prompt_bank is not None else {}
    views, bank_classes = [], []
    for label in labels:
        bank_class = label if prompt_bank is not None and label in prompt_bank.classes else None
        bank_class = bank_class or lookup.get(normalize_sentence(label))
        label_views = (
            prompt_bank.views(bank_class)
            if bank_class is not None
            else [template.format(display_name(label)) for template in TEMPLATES]
        )
        extra = descriptions.get(label, [])
        extra = [extra] if isinstance(extra, str) else list(extra)
        if not all(isinstance(text, str) and text.strip() for text in extra):
            raise ValueError(f"`label_descriptions[{label!r}]` must be non-empty sentences, got {extra!r}.")
        views.append(label_views + [text.strip() for text in extra])
        bank_classes.append(bank_class)
    return CandidateLabelTexts(labels, views, bank_classes)


def _bank_lookup(prompt_bank: PromptBank) -> dict[str, str]:
    """Normalised class names and display names -> class name (the first class wins a shared key)."""
    lookup: dict[str, str] = {}
    for name, entry in prompt_bank.classes.items():
        for key in (name, display_name(name), entry.display_name):
            lookup.setdefault(normalize_sentence(key), name)
    return lookup


class ZeroShotVideoClassificationPipeline(Pipeline):
    """Zero-shot video classification with a CLAVER model ([`ClaverModel`] or [`ClaverForVideoClassification`]'s
    backbone) and a [`ClaverProcessor`].

    Example:

    ```py
    >>> import claver_hf  # registers the task
    >>> from transformers import pipeline

    >>> classifier = pipeline("zero-shot-video-classification", model="path/or/repo")
    >>> classifier("video.mp4", candidate_labels=["ApplyEyeMakeup", "playing guitar"], num_clips=4, num_crops=3)
    [{'label': 'playing guitar', 'score': 0.93}, {'label': 'ApplyEyeMakeup', 'score': 0.07}]
    ```

    The text features of the candidate labels are computed once per call, whatever the number of videos.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    # Texts encoded per forward pass of the text tower.
    text_batch_size = 256

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(self.processor, ClaverProcessor):
            raise TypeError(
                f"{TASK} needs a ClaverProcessor (tokenizer + video processor), got {type(self.processor).__name__}."
            )
        self.check_model_type([ClaverModel.__name__, ClaverForVideoClassification.__name__])

    @property
    def claver(self) -> ClaverModel:
        """The dual encoder: the model itself, or the backbone of a classifier."""
        return self.model.claver if isinstance(self.model, ClaverForVideoClassification) else self.model

    def __call__(
        self,
        videos: Any,
        candidate_labels: Sequence[str],
        *,
        prompt_bank: PromptBank | str | os.PathLike | None = None,
        label_descriptions: Mapping[str, str | Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Score `candidate_labels` for one video or a list of videos.

        Args:
            videos: a video (path, `(T, H, W, 3)` array or tensor, list of PIL frames), or a list of videos, or a
                `(B, T, H, W, 3)` batch.
            candidate_labels: the labels to rank.
            prompt_bank: a [`PromptBank`], a bundled bank name (`"ucf101"`, ...) or a bank file; defaults to the
                processor's bank. Labels found in it use its interpretive prompts.
            label_descriptions: `{label: [sentences]}`, extra text views of some labels.
            num_frames, num_clips, num_crops: frames per clip and test views, passed to the video processor;
                probabilities are averaged over the `num_clips × num_crops` views.
            top_k: keep the `top_k` best labels (default: all).
            batch_size: videos per forward pass (with a list of videos).

        Returns:
            For one video, `[{"label", "score"}]` sorted by decreasing score, scores summing to 1 over all labels;
            for several, one such list per video.
        """
        bank = self.processor.prompt_bank if prompt_bank is None else prompt_bank
        if bank is not None and not isinstance(bank, PromptBank):
            bank = load_prompt_bank(bank)
        texts = candidate_label_texts(candidate_labels, bank, label_descriptions)
        if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
            videos = list(videos)
        single = _is_single_video(videos)
        outputs = super().__call__([videos] if single else videos, candidate_texts=texts, **kwargs)
        return outputs[0] if single else outputs

    def _sanitize_parameters(
        self,
        candidate_texts: CandidateLabelTexts | None = None,
        num_frames: int | None = None,
        num_clips: int | None = None,
        num_crops: int | None = None,
        top_k: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        video_kwargs = {"num_frames": num_frames, "num_clips": num_clips, "num_crops": num_crops}
        preprocess_params = {name: value for name, value in video_kwargs.items() if value is not None}
        forward_params, postprocess_params = {}, {}
        if candidate_texts is not None:
            forward_params["candidate_texts"] = candidate_texts
            postprocess_params["labels"] = candidate_texts.labels
        if top_k is not None:
            postprocess_params["top_k"] = top_k
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, video: Any, **video_kwargs: Any) -> dict[str, torch.Tensor]:
        """One video -> `video_views` `(1, N, T, 3, H, W)`, its `N` test views.

        Not called `pixel_values`: with `batch_size > 1`, transformers' collation of a `pixel_values` key needs a
        feature extractor, while any other key of equally shaped items is stacked into `(B, N, T, 3, H, W)`.
        """
        pixel_values = self.processor.video_processor(video, return_tensors="pt", **video_kwargs)[
            "pixel_values"
        ]
        return {"video_views": pixel_values.to(self.dtype)[None]}

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], candidate_texts: CandidateLabelTexts
    ) -> dict[str, torch.Tensor]:
        video_views = model_inputs["video_views"]  # (B, N, T, 3, H, W)
        batch_size, num_test_views = video_views.shape[:2]
        video_embeds = self.claver.get_video_features(pixel_values=video_views.flatten(0, 1)).pooler_output
        text_embeds, view_mask = self._text_features(candidate_texts)
        view_logits = self.claver.logit_scale.exp() * torch.einsum(
            "be,vce->bvc", video_embeds, text_embeds.to(video_embeds.dtype)
        )
        probs = view_averaged_log_probs(view_logits, view_mask).exp()  # (B·N, C)
        return {"scores": probs.view(batch_size, num_test_views, -1).mean(dim=1)}

    def _text_features(self, texts: CandidateLabelTexts) -> tuple[torch.Tensor, torch.Tensor]:
        """`(V, C, E)` normalised view embeddings and the `(V, C)` view mask, stored on `texts` the first time."""
        if texts.text_embeds is None:
            grid = self.processor.tokenize_views(texts.views)
            texts.text_embeds = self.claver.encode_texts(
                grid["input_ids"].to(self.device),
                grid["attention_mask"].to(self.device),
                self.text_batch_size,
            )
            texts.view_mask = grid["view_mask"].to(self.device)
        return texts.text_embeds, texts.view_mask

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], labels: list[str], top_k: int | None = None
    ) -> list[dict[str, Any]]:
        scores = model_outputs["scores"][0].float().tolist()
        ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: -pair[1])
        return [{"label": label, "score": score} for label, score in ranked[:top_k]]


__all__ = [
    "TASK",
    "CandidateLabelTexts",
    "ZeroShotVideoClassificationPipeline",
    "candidate_label_texts",
]
