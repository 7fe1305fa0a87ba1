"""`pipeline("zero-shot-video-classification")`: rank free-form action labels for videos with a CLAVER model.

Every candidate label is described by several text views ([`resolve_label_views`]): the prompt bank's templates
and interpretive prompts when the label is in the bank, the 16 hand templates filled with its name otherwise,
plus any descriptions the caller gives. Labels are scored by [`class_log_probs`], the rule of CLAVER's
classifier: for each text view, softmax over the labels of `logit_scale · <video embedding, normalised text
embedding>`; the probabilities are averaged over the views, then over the test views of the video (clips ×
crops).

Shapes: `B` videos, `N` test views per video, `V` text views per label, `C` labels, `E` embedding size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.pipelines.base import Pipeline

from ..modeling.modeling_claver import ClaverForVideoClassification, ClaverModel
from ..modeling.scoring import class_log_probs
from ..processing.processing_claver import ClaverProcessor
from ..processing.video_processing_claver import _is_single_video
from ..prompts.bank import PromptBank
from ..prompts.label_views import resolve_label_views
from .label_embeddings import LabelViewEmbeddings

TASK = "zero-shot-video-classification"


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

    The text embeddings of the candidate labels are computed once per call, whatever the number of videos; to
    compute them once for many calls, get them from [`label_embeddings`] (and `save` them) and pass them as
    `text_embeddings`.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

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
        candidate_labels: Sequence[str] | None = None,
        *,
        prompt_bank: PromptBank | str | os.PathLike | None = None,
        label_descriptions: Mapping[str, str | Sequence[str]] | None = None,
        text_embeddings: LabelViewEmbeddings | str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Score `candidate_labels` for one video or a list of videos.

        Args:
            videos: a video (path, `(T, H, W, 3)` array or tensor, list of PIL frames), or a list of videos, or a
                `(B, T, H, W, 3)` batch.
            candidate_labels: the labels to rank; with `text_embeddings`, optional (and then the same labels in
                the same order).
            prompt_bank: a [`PromptBank`], a bundled bank name (`"ucf101"`, ...) or a bank file; defaults to the
                processor's bank. Labels found in it use its interpretive prompts.
            label_descriptions: `{label: [sentences]}`, extra text views of some labels.
            text_embeddings: [`LabelViewEmbeddings`] (or the file they were saved to) from an earlier
                [`label_embeddings`] call: the labels and views they were computed for are used without encoding
                any text. Refused if they come from another text tower or tokenizer.
            num_frames, num_clips, num_crops: frames per clip and test views, passed to the video processor;
                probabilities are averaged over the `num_clips × num_crops` views.
            top_k: keep the `top_k` best labels (default: all).
            batch_size: videos per forward pass (with a list of videos).

        Returns:
            For one video, `[{"label", "score"}]` sorted by decreasing score, scores summing to 1 over all labels;
            for several, one such list per video.
        """
        if text_embeddings is None:
            if candidate_labels is None:
                raise ValueError("Give `candidate_labels` (or `text_embeddings` computed for some labels).")
            embeddings = self.label_embeddings(candidate_labels, prompt_bank, label_descriptions)
        else:
            embeddings = self._saved_embeddings(
                text_embeddings, candidate_labels, prompt_bank, label_descriptions
            )
        if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
            videos = list(videos)
        single = _is_single_video(videos)
        outputs = super().__call__([videos] if single else videos, label_embeddings=embeddings, **kwargs)
        return outputs[0] if single else outputs

    def label_embeddings(
        self,
        candidate_labels: Sequence[str],
        prompt_bank: PromptBank | str | os.PathLike | None = None,
        label_descriptions: Mapping[str, str | Sequence[str]] | None = None,
    ) -> LabelViewEmbeddings:
        """The text embeddings of the labels' views, as a call with these arguments computes them; pass them
        (or the file [`LabelViewEmbeddings.save`] writes) as `text_embeddings` to later calls."""
        bank = self.processor.prompt_bank if prompt_bank is None else prompt_bank
        views = resolve_label_views(candidate_labels, bank, label_descriptions)
        return LabelViewEmbeddings.compute(self.claver, self.processor, views)

    def _saved_embeddings(
        self,
        text_embeddings: LabelViewEmbeddings | str | os.PathLike,
        candidate_labels: Sequence[str] | None,
        prompt_bank: PromptBank | str | os.PathLike | None,
        label_descriptions: Mapping[str, str | Sequence[str]] | None,
    ) -> LabelViewEmbeddings:
        """`text_embeddings` loaded, checked against the call's other arguments, this model and this processor,
        and moved to the model's device."""
        if prompt_bank is not None or label_descriptions is not None:
            raise ValueError(
                "`text_embeddings` fix the labels' text views: do not pass `prompt_bank` or `label_descriptions` "
                "with them."
            )
        if not isinstance(text_embeddings, LabelViewEmbeddings):
            text_embeddings = LabelViewEmbeddings.load(text_embeddings)
        if candidate_labels is not None:
            labels = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
            if labels != text_embeddings.labels:
                raise ValueError(
                    f"`text_embeddings` were computed for the labels {text_embeddings.labels}, not "
                    f"`candidate_labels` {labels}: pass the same labels in the same order, or omit them."
                )
        text_embeddings.check(self.claver, self.processor)
        return text_embeddings.to(self.device)

    def _sanitize_parameters(
        self,
        label_embeddings: LabelViewEmbeddings | None = None,
        num_frames: int | None = None,
        num_clips: int | None = None,
        num_crops: int | None = None,
        top_k: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        video_kwargs = {"num_frames": num_frames, "num_clips": num_clips, "num_crops": num_crops}
        preprocess_params = {name: value for name, value in video_kwargs.items() if value is not None}
        forward_params, postprocess_params = {}, {}
        if label_embeddings is not None:
            forward_params["label_embeddings"] = label_embeddings
            postprocess_params["labels"] = label_embeddings.labels
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
        self, model_inputs: dict[str, torch.Tensor], label_embeddings: LabelViewEmbeddings
    ) -> dict[str, torch.Tensor]:
        video_views = model_inputs["video_views"]  # (B, N, T, 3, H, W)
        video_embeds = self.claver.get_video_features(pixel_values=video_views.flatten(0, 1)).pooler_output
        log_probs = class_log_probs(
            video_embeds.unflatten(0, video_views.shape[:2]),  # (B, N, E)
            label_embeddings.text_embeds,
            self.claver.logit_scale.exp(),
            label_embeddings.view_mask,
        )
        return {"scores": log_probs.exp()}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], labels: list[str], top_k: int | None = None
    ) -> list[dict[str, Any]]:
        scores = model_outputs["scores"][0].float().tolist()
        ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: -pair[1])
        return [{"label": label, "score": score} for label, score in ranked[:top_k]]


__all__ = ["TASK", "ZeroShotVideoClassificationPipeline"]
