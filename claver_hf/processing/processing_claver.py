"""ClaverProcessor: CLIP's tokenizer and ClaverVideoProcessor behind one call."""

# No `from __future__ import annotations`: transformers reads the modality types of `ClaverProcessorKwargs` from
# its annotations, which must then be classes, not strings.

import os
from typing import Any

import torch
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.utils import logging

from .._compat import merge_processor_kwargs, optional_cached_file
from ..prompts.bank import INTERPRETIVE_FORMS, PromptBank, load_prompt_bank
from ..remote_code import save_remote_code
from .video_processing_claver import ClaverVideoProcessorKwargs

logger = logging.get_logger(__name__)


class ClaverProcessorKwargs(ProcessingKwargs, total=False):
    videos_kwargs: ClaverVideoProcessorKwargs


class ClaverProcessor(ProcessorMixin):
    r"""
    Wraps a CLIP tokenizer, a [`ClaverVideoProcessor`] and optionally a prompt bank.

    `processor(text=..., videos=...)` returns `input_ids` / `attention_mask` and `pixel_values` (`video_index`
    too for multi-view evaluation), as tensors unless `return_tensors` says otherwise. Keyword arguments go to
    the tokenizer or the video processor, whichever takes them, as in every transformers processor (or pass
    `text_kwargs={...}` / `videos_kwargs={...}`). Texts are padded to the longest and cut to `max_text_length`
    tokens, CLIP's context, keeping the end token, with a warning the first time a text is cut; `padding`,
    `truncation` and `max_length` change that per call.

    With a prompt bank, [`text_bank`] tokenises every class's views (templates + interpretive prompts) into the
    `(views, classes, tokens)` tensors that [`ClaverForVideoClassification.set_text_bank`] stores. The bank is
    saved as `prompt_bank.json` beside the processor files and travels with `save_pretrained` /
    `from_pretrained`.

    Args:
        video_processor ([`ClaverVideoProcessor`]): frames -> `pixel_values`.
        tokenizer ([`~transformers.CLIPTokenizer`]): text -> token ids.
        prompt_bank (`PromptBank`, `str` or path, *optional*): a bank, a bundled bank name (`"ucf101"`, ...) or a
            bank file.
        max_text_length (`int`, defaults to 77): longest tokenised text, end token included.
    """

    prompt_bank_file = "prompt_bank.json"
    valid_processor_kwargs = ClaverProcessorKwargs
    videos_kwargs = {"return_tensors": "pt"}

    def __init__(
        self,
        video_processor=None,
        tokenizer=None,
        prompt_bank: PromptBank | str | os.PathLike | None = None,
        max_text_length: int = 77,
        **kwargs,
    ):
        self.max_text_length = max_text_length
        self._warned_truncation = False
        self.prompt_bank = (
            prompt_bank
            if prompt_bank is None or isinstance(prompt_bank, PromptBank)
            else load_prompt_bank(prompt_bank)
        )
        super().__init__(video_processor, tokenizer, **kwargs)

    @property
    def text_kwargs(self) -> dict[str, Any]:
        # The tokenizer's defaults (lowest priority in `ProcessorMixin._merge_kwargs`): CLIP's text tower has
        # `max_text_length` positions, and the model takes rectangular batches.
        return {
            "padding": True,
            "truncation": True,
            "max_length": self.max_text_length,
            "return_tensors": "pt",
        }

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Any = None,
        **kwargs: Unpack[ClaverProcessorKwargs],
    ) -> BatchFeature:
        if text is None and videos is None:
            raise ValueError("ClaverProcessor needs `text`, `videos`, or both.")
        # One text is a batch of one: the model takes `(batch, tokens)` ids.
        texts = [text] if isinstance(text, str) else text
        outputs = super().__call__(text=texts, videos=videos, **kwargs)
        if texts is not None:
            self._warn_if_truncated(texts, outputs, kwargs)
        return outputs

    def _warn_if_truncated(self, texts: list[str], outputs: BatchFeature, kwargs: dict[str, Any]) -> None:
        """Warn, the first time only, that texts were cut. Only texts as long as the limit can have been cut, so
        only those are tokenised again, whole."""
        if self._warned_truncation:
            return
        merged = merge_processor_kwargs(self, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text_kwargs = merged["text_kwargs"]
        max_length = text_kwargs.get("max_length")
        if not text_kwargs.get("truncation") or max_length is None or "attention_mask" not in outputs:
            return
        mask = outputs["attention_mask"]
        lengths = mask.sum(-1).tolist() if hasattr(mask, "sum") else [sum(row) for row in mask]
        at_limit = [text for text, length in zip(texts, lengths, strict=True) if length == max_length]
        if not at_limit:
            return
        add_special_tokens = text_kwargs.get("add_special_tokens", True)
        whole = self.tokenizer(at_limit, add_special_tokens=add_special_tokens, truncation=False)["input_ids"]
        too_long = [text for text, ids in zip(at_limit, whole, strict=True) if len(ids) > max_length]
        if too_long:
            logger.warning(
                f"{len(too_long)} text(s) are longer than {max_length} tokens and were truncated, e.g. "
                f"{too_long[0][:80]!r}. (This warning is shown once.)"
            )
            self._warned_truncation = True

    def tokenize(self, text: str | list[str]) -> dict[str, list[list[int]]]:
        """Token ids and attention masks as lists, padded to the longest text and cut to `max_text_length` tokens.

        A cut text keeps its end token (CLIP pools the end token's state); the first cut logs a warning.
        """
        return dict(self(text=text, return_tensors=None))

    def text_bank(
        self, labels: list[str] | None = None, forms: tuple[str, ...] = INTERPRETIVE_FORMS
    ) -> dict[str, torch.Tensor]:
        """Tokenised views of `labels` (default: every class of the prompt bank), for `set_text_bank`.

        Returns `input_ids` and `attention_mask` `(V, C, S)` and `view_mask` `(V, C)`, where `V` is the largest
        number of views of a class. A class with fewer views leaves its extra slots empty (`view_mask` False):
        no prompt is repeated to fill them; the model handles the gaps (see `ClaverForVideoClassification`).
        """
        if self.prompt_bank is None:
            raise ValueError(
                "This processor has no prompt bank: pass `prompt_bank=` (a bundled name or a file)."
            )
        bank = self.prompt_bank if labels is None else self.prompt_bank.subset(labels)
        return self.tokenize_views([bank.views(name, forms) for name in bank.class_names])

    def tokenize_views(self, views: list[list[str]]) -> dict[str, torch.Tensor]:
        """Tokenise the text views of each class into a view-major grid.

        Args:
            views: for each class, its texts.

        Returns:
            `input_ids`, `attention_mask` `(V, C, S)` and `view_mask` `(V, C)`, `V` the largest number of views of
            a class; class `c`'s views fill rows `0 .. len(views[c]) - 1` of column `c`, the rest are masked.
        """
        encoded = self.tokenize([text for class_views in views for text in class_views])
        ids = torch.tensor(encoded["input_ids"])
        mask = torch.tensor(encoded["attention_mask"])
        view_index = torch.tensor([v for class_views in views for v in range(len(class_views))])
        class_index = torch.tensor([c for c, class_views in enumerate(views) for _ in class_views])
        shape = (max(len(class_views) for class_views in views), len(views))
        input_ids = ids.new_zeros(*shape, ids.shape[1])
        attention_mask = torch.zeros_like(input_ids)
        view_mask = torch.zeros(shape, dtype=torch.bool)
        input_ids[view_index, class_index] = ids
        attention_mask[view_index, class_index] = mask
        view_mask[view_index, class_index] = True
        return {"input_ids": input_ids, "attention_mask": attention_mask, "view_mask": view_mask}

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("prompt_bank", None)  # saved as its own file, see save_pretrained
        return output

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        # Source files and `auto_map`s (this class's, and the video processor's in its nested settings): the
        # folder then loads with `trust_remote_code=True` without claver-hf installed.
        save_remote_code(self, {"AutoProcessor": ClaverProcessor}, save_directory)
        self.video_processor._save_remote_code(save_directory)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.prompt_bank is not None:
            self.prompt_bank.save(os.path.join(save_directory, self.prompt_bank_file))
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        processor = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        bank_file = optional_cached_file(
            pretrained_model_name_or_path,
            cls.prompt_bank_file,
            **{
                k: v for k, v in kwargs.items() if k in ("cache_dir", "revision", "token", "local_files_only")
            },
        )
        if bank_file is not None:
            processor.prompt_bank = load_prompt_bank(bank_file)
        return processor

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


__all__ = ["ClaverProcessor"]
