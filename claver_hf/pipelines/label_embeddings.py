"""The text embeddings of labels' views, computed once and saved for reuse by the zero-shot pipeline and
`claver-hf classify` (encoding a whole bank, e.g. 31 views × 400 classes, costs more than scoring a video).

A saved file (safetensors) holds the `(V, C, E)` embeddings and the `(V, C)` view mask, and in its metadata the
labels, their text views and two fingerprints: of the text tower's weights, and of the views' tokens. Before
use, both are computed again for the model and processor at hand; any difference is refused, so the embeddings
are never those of another model, tokenizer or set of views.

Shapes: `V` text views per label at most, `C` labels, `E` embedding size.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..modeling.modeling_claver import ClaverModel
from ..processing.processing_claver import ClaverProcessor
from ..prompts.label_views import LabelViews

FORMAT = "claver_hf.label_view_embeddings/1"
# Texts encoded per forward pass of the text tower.
TEXT_BATCH_SIZE = 256


def text_tower_fingerprint(model: ClaverModel) -> str:
    """SHA-256 of the shapes, dtypes and values of every weight the text embeddings depend on."""
    digest = hashlib.sha256()
    for parameter in model.text_parameters():
        tensor = parameter.detach().contiguous().cpu()
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _tokens_fingerprint(grid: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a tokenised view grid (`input_ids`, `attention_mask`, `view_mask`)."""
    digest = hashlib.sha256()
    for name in ("input_ids", "attention_mask", "view_mask"):
        tensor = grid[name].to(torch.long).contiguous().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class LabelViewEmbeddings:
    """Normalised text embeddings of every view of some labels.

    Attributes:
        labels: the labels, in order.
        views: for each label, its text views.
        text_embeds: `(V, C, E)` normalised embedding of view `v` of label `c`.
        view_mask: `(V, C)`, `False` where label `c` has no view `v`.
        text_tower: fingerprint of the text tower that computed them ([`text_tower_fingerprint`]).
        tokens: fingerprint of the views' tokens.
    """

    labels: list[str]
    views: list[list[str]]
    text_embeds: torch.Tensor
    view_mask: torch.Tensor
    text_tower: str
    tokens: str

    @classmethod
    @torch.no_grad()
    def compute(
        cls, model: ClaverModel, processor: ClaverProcessor, label_views: LabelViews
    ) -> LabelViewEmbeddings:
        """Tokenise the views with `processor` and encode them with `model`'s text tower, on its device."""
        grid = processor.tokenize_views(label_views.views)
        device = model.logit_scale.device
        text_embeds = model.encode_texts(
            grid["input_ids"].to(device), grid["attention_mask"].to(device), TEXT_BATCH_SIZE
        )
        return cls(
            labels=list(label_views.labels),
            views=[list(views) for views in label_views.views],
            text_embeds=text_embeds,
            view_mask=grid["view_mask"].to(device),
            text_tower=text_tower_fingerprint(model),
            tokens=_tokens_fingerprint(grid),
        )

    def check(self, model: ClaverModel, processor: ClaverProcessor) -> None:
        """Raise `ValueError` unless these are the embeddings `model` and `processor` would compute for
        `views`."""
        if text_tower_fingerprint(model) != self.text_tower:
            raise ValueError(
                "These text embeddings were computed by another text tower than this model's (the weights' "
                "fingerprints differ): compute them again with this model."
            )
        if _tokens_fingerprint(processor.tokenize_views(self.views)) != self.tokens:
            raise ValueError(
                "These text embeddings were computed from other tokens than this processor gives for their views "
                "(another tokenizer or maximum text length): compute them again with this processor."
            )

    def to(self, device: torch.device | str) -> LabelViewEmbeddings:
        """The same embeddings with their tensors on `device`."""
        return LabelViewEmbeddings(
            self.labels,
            self.views,
            self.text_embeds.to(device),
            self.view_mask.to(device),
            self.text_tower,
            self.tokens,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file: the tensors, and the labels, views and fingerprints as metadata."""
        metadata = {
            "format": FORMAT,
            "labels": json.dumps(self.labels, ensure_ascii=False),
            "views": json.dumps(self.views, ensure_ascii=False),
            "text_tower": self.text_tower,
            "tokens": self.tokens,
        }
        tensors = {"text_embeds": self.text_embeds.contiguous(), "view_mask": self.view_mask.contiguous()}
        save_file(tensors, os.fspath(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelViewEmbeddings:
        """Read a file written by [`save`] (tensors on the CPU)."""
        with safe_open(os.fspath(path), framework="pt") as file:
            metadata = file.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise ValueError(
                    f"{path} is not a file of label view embeddings (format {metadata.get('format')!r}, expected "
                    f"{FORMAT!r})."
                )
            # Copied to storage of their own: the file's tensors may start at any byte, and on a misaligned start
            # the CPU's vector kernels round the last bits of the scores differently from the computed embeddings.
            text_embeds = file.get_tensor("text_embeds").clone()
            view_mask = file.get_tensor("view_mask").clone()
        labels, views = json.loads(metadata["labels"]), json.loads(metadata["views"])
        return cls(labels, views, text_embeds, view_mask, metadata["text_tower"], metadata["tokens"])


__all__ = ["LabelViewEmbeddings", "text_tower_fingerprint"]
