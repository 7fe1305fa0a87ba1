"""ClaverProcessor: CLIP's tokenizer and ClaverVideoProcessor behind one call."""

from __future__ import annotations

from typing import Any

from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

logger = logging.get_logger(__name__)


class ClaverProcessor(ProcessorMixin):
    r"""
    Wraps a CLIP tokenizer and a [`ClaverVideoProcessor`].

    `processor(text=..., videos=..., return_tensors="pt")` returns `input_ids` / `attention_mask` (padded, and
    truncated to `max_text_length` tokens, CLIP's context, with a warning the first time a text is cut) and
    `pixel_values` (`video_index` too for multi-view evaluation). Video keyword arguments (`training`,
    `num_frames`, `num_clips`, `num_crops`, ...) go to the video processor.

    Args:
        video_processor ([`ClaverVideoProcessor`]): frames -> `pixel_values`.
        tokenizer ([`~transformers.CLIPTokenizer`]): text -> token ids.
        max_text_length (`int`, defaults to 77): longest tokenised text, end token included.
    """

    def __init__(self, video_processor=None, tokenizer=None, max_text_length: int = 77, **kwargs):
        self.max_text_length = max_text_length
        self._warned_truncation = False
        super().__init__(video_processor, tokenizer, **kwargs)

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Any = None,
        return_tensors: str | None = "pt",
        **video_kwargs: Any,
    ) -> BatchFeature:
        if text is None and videos is None:
            raise ValueError("ClaverProcessor needs `text`, `videos`, or both.")
        data: dict[str, Any] = {}
        if text is not None:
            data.update(self.tokenize(text))
        if videos is not None:
            data.update(self.video_processor(videos, **video_kwargs))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def tokenize(self, text: str | list[str]) -> dict[str, list[list[int]]]:
        """Token ids and attention masks, padded to the longest text and cut to `max_text_length` tokens.

        A cut text keeps its end token (CLIP pools the end token's state); the first cut logs a warning.
        """
        texts = [text] if isinstance(text, str) else list(text)
        encoded = self.tokenizer(texts, truncation=False, padding=False)["input_ids"]
        too_long = [t for t, ids in zip(texts, encoded, strict=True) if len(ids) > self.max_text_length]
        if too_long and not self._warned_truncation:
            logger.warning(
                f"{len(too_long)} text(s) are longer than {self.max_text_length} tokens and were truncated, e.g. "
                f"{too_long[0][:80]!r}. (This warning is shown once.)"
            )
            self._warned_truncation = True
        end = self.tokenizer.eos_token_id
        encoded = [
            ids if len(ids) <= self.max_text_length else ids[: self.max_text_length - 1] + [end]
            for ids in encoded
        ]
        length = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else end
        return {
            "input_ids": [ids + [pad] * (length - len(ids)) for ids in encoded],
            "attention_mask": [[1] * len(ids) + [0] * (length - len(ids)) for ids in encoded],
        }

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


__all__ = ["ClaverProcessor"]
