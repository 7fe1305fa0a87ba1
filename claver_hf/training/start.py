"""Where a fine-tuning run starts: a CLIP checkpoint, a CLAVER checkpoint or a fresh model.

A checkpoint brings its tokenizer, its clip shape (frames, frame size) and its pixel normalisation; what the run
asks for on top is applied (frames and frame size by resampling the embeddings, config fields that keep the
weights' shapes) or refused with an error naming the argument, never ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoImageProcessor, CLIPConfig, PreTrainedTokenizerBase
from transformers.utils import IMAGE_PROCESSOR_NAME, PROCESSOR_NAME, VIDEO_PROCESSOR_NAME

from .._compat import optional_cached_file
from ..configuration.configuration_claver import ClaverConfig
from ..modeling.modeling_claver import ClaverForVideoClassification, ClaverModel
from ..processing.tokenization import (
    CLIP_TOKENIZER,
    WORD_LEVEL_TOKENIZER,
    has_tokenizer,
    load_tokenizer,
    word_level_tokenizer,
)
from ..processing.video_processing_claver import ClaverVideoProcessor

logger = logging.getLogger(__name__)
# A fresh model's clip shape when nothing else sets it (CLIP's frame size, the paper's 8 frames).
DEFAULT_NUM_FRAMES = 8
DEFAULT_IMAGE_SIZE = 224


@dataclass
class Checkpoint:
    """The checkpoint a run starts from: its name or path and its config (CLAVER's or CLIP's)."""

    path: str
    config: ClaverConfig | CLIPConfig

    @classmethod
    def load(cls, path: str) -> Checkpoint:
        config = AutoConfig.from_pretrained(path)
        if not isinstance(config, (ClaverConfig, CLIPConfig)):
            raise ValueError(
                f"--model_name_or_path {path} is neither a CLAVER nor a CLIP checkpoint (model type {config.model_type!r})."
            )
        return cls(path, config)

    @property
    def is_claver(self) -> bool:
        return isinstance(self.config, ClaverConfig)

    def as_claver_config(self) -> ClaverConfig:
        """The checkpoint's architecture as a CLAVER config (a CLIP one gains the default temporal parts)."""
        return self.config if self.is_claver else ClaverConfig.from_clip_config(self.config)

    def normalisation(self) -> dict[str, Any]:
        """The pixel mean and std of the checkpoint's own processor (CLAVER's video processor, or CLIP's image
        processor), as `ClaverVideoProcessor` arguments; nothing when it has none (CLIP's values are the
        default)."""
        if self.is_claver:
            files, load = (PROCESSOR_NAME, VIDEO_PROCESSOR_NAME), ClaverVideoProcessor.from_pretrained
        else:
            files, load = (IMAGE_PROCESSOR_NAME, PROCESSOR_NAME), AutoImageProcessor.from_pretrained
        if not any(optional_cached_file(self.path, f) for f in files):
            return {}
        processor = load(self.path)
        return {"image_mean": list(processor.image_mean), "image_std": list(processor.image_std)}


@dataclass
class ConfigOverrides:
    """`--config_overrides` split by sub-config, with `--kronecker_mask` folded in."""

    vision: dict[str, Any]
    text: dict[str, Any]
    top: dict[str, Any]

    @classmethod
    def parse(cls, config_overrides: str | None, kronecker_mask: str | None) -> ConfigOverrides:
        overrides = json.loads(config_overrides) if config_overrides else {}
        if not isinstance(overrides, dict):
            raise ValueError(f"--config_overrides must be a JSON object, got {config_overrides!r}.")
        vision = dict(overrides.pop("vision_config", {}))
        if kronecker_mask:
            vision["kronecker_mask"] = kronecker_mask
        return cls(vision, dict(overrides.pop("text_config", {})), overrides)


def clip_shape(
    num_frames: int | None, image_size: int | None, checkpoint: Checkpoint | None, overrides: ConfigOverrides
) -> tuple[int, int]:
    """Frames per clip and frame size: given (as `--num_frames` / `--image_size` or in `--config_overrides`, not
    both differently), else the checkpoint's, else the defaults. Removes them from `overrides`: the model is
    loaded at the checkpoint's shape and resampled to these."""
    resolved = []
    for name, given, default in (
        ("num_frames", num_frames, DEFAULT_NUM_FRAMES),
        ("image_size", image_size, DEFAULT_IMAGE_SIZE),
    ):
        in_overrides = overrides.vision.pop(name, None)
        if given is not None and in_overrides is not None and given != in_overrides:
            raise ValueError(
                f"--{name} {given} and --config_overrides vision_config.{name} {in_overrides} disagree; give one."
            )
        value = given if given is not None else in_overrides
        if value is None and checkpoint is not None:
            value = getattr(checkpoint.config.vision_config, name, None)  # a CLIP config has no num_frames
        resolved.append(default if value is None else value)
    return resolved[0], resolved[1]


def choose_tokenizer(
    name: str | None, checkpoint: Checkpoint | None, texts: list[str]
) -> PreTrainedTokenizerBase:
    """The tokenizer the text tower is fed by: `name` (`--tokenizer_name_or_path`), else the checkpoint's own; a
    word-level one over the words of `texts` only for a fresh model, whose text tower learns its ids from
    scratch."""
    if name == WORD_LEVEL_TOKENIZER or (name is None and checkpoint is None):
        if checkpoint is not None:
            raise ValueError(
                f"--tokenizer_name_or_path {WORD_LEVEL_TOKENIZER} builds a new vocabulary, for models trained from "
                f"scratch; the text tower of {checkpoint.path} was trained on its own tokenizer's ids."
            )
        if name is None:
            logger.warning(
                "A fresh model and no --tokenizer_name_or_path: using a word-level tokenizer built from the prompt "
                f"bank's words. Pass --tokenizer_name_or_path {WORD_LEVEL_TOKENIZER} to choose it explicitly, or "
                f"{CLIP_TOKENIZER} for CLIP's BPE tokenizer."
            )
        return word_level_tokenizer(texts)
    if name is not None:
        return load_tokenizer(name)
    if not has_tokenizer(checkpoint.path):
        raise ValueError(
            f"{checkpoint.path} has no tokenizer, and its text tower must be fed the ids of the tokenizer it was "
            f"trained with: pass --tokenizer_name_or_path (a folder or Hub id, or {CLIP_TOKENIZER!r} for CLIP's "
            "BPE tokenizer, bundled with claver-hf, which every OpenAI CLIP model uses)."
        )
    return load_tokenizer(checkpoint.path)


def _parameter_shapes(config: ClaverConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = ClaverModel(config)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def _refuse_reshaping(checkpoint: Checkpoint, base: ClaverConfig, config: ClaverConfig) -> None:
    """Raise when `config` (the checkpoint's with `--config_overrides`) would change or drop a weight of the
    checkpoint (for a CLIP checkpoint, every weight but CLAVER's temporal ones)."""
    before, after = _parameter_shapes(base), _parameter_shapes(config)
    if not checkpoint.is_claver:
        before = {
            name: shape for name, shape in before.items() if not name.startswith("vision_model.temporal_")
        }
    changed = [
        f"{name} {shape} -> {after.get(name, 'absent')}"
        for name, shape in before.items()
        if after.get(name) != shape
    ]
    if changed:
        raise ValueError(
            f"--config_overrides would change the shape of {len(changed)} weight(s) of {checkpoint.path}, e.g. "
            f"{'; '.join(changed[:3])}. With a checkpoint, override only fields that keep its weights (frames and "
            "frame size have their own arguments)."
        )


def _config(fields: dict[str, Any]) -> ClaverConfig:
    """`ClaverConfig.from_dict(fields)`, its validation errors as `ValueError`s that name the arguments."""
    try:
        return ClaverConfig.from_dict(fields)
    except StrictDataclassError as error:
        raise ValueError(f"--config_overrides / --kronecker_mask: {error.__cause__ or error}") from error


def _merge(base: ClaverConfig, overrides: ConfigOverrides, **fields: Any) -> ClaverConfig:
    data = base.to_dict()
    data["vision_config"] = {**data["vision_config"], **overrides.vision}
    data["text_config"] = {**data["text_config"], **overrides.text}
    return _config({**data, **overrides.top, **fields})


def build_classifier(
    checkpoint: Checkpoint | None,
    overrides: ConfigOverrides,
    num_frames: int,
    image_size: int,
    tokenizer: PreTrainedTokenizerBase,
    id2label: dict[int, str],
    label_smoothing: float,
) -> ClaverForVideoClassification:
    """A classifier with an empty text bank: fresh (its text tower sized for `tokenizer`), or loaded from the
    checkpoint with `overrides` and resampled to `num_frames` frames of `image_size` pixels."""
    if checkpoint is None:
        text = {
            **overrides.text,
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        vision = {**overrides.vision, "num_frames": num_frames, "image_size": image_size}
        return ClaverForVideoClassification(
            _config({
                "vision_config": vision, "text_config": text, **overrides.top,
                "id2label": id2label, "label_smoothing": label_smoothing,
            })
        )  # fmt: skip

    base = checkpoint.as_claver_config()
    # A CLAVER classifier's stored text bank keeps the checkpoint's classes until `set_text_bank` replaces it.
    labels = {} if checkpoint.is_claver else {"id2label": id2label}
    config = _merge(base, overrides, label_smoothing=label_smoothing, **labels)
    _refuse_reshaping(checkpoint, base, config)
    trained_mask = base.vision_config.kronecker_mask
    if checkpoint.is_claver and config.vision_config.kronecker_mask != trained_mask:
        logger.warning(
            f"{checkpoint.path} was trained with the {trained_mask} mask; its KMT blocks now run with "
            f"{config.vision_config.kronecker_mask}."
        )
    model = ClaverForVideoClassification.from_pretrained(checkpoint.path, config=config)
    vision_model = model.claver.vision_model
    if num_frames != config.vision_config.num_frames:
        logger.info(
            f"Temporal embedding resampled from {config.vision_config.num_frames} to {num_frames} frames."
        )
        vision_model.resize_temporal_embedding(num_frames)
    if image_size != config.vision_config.image_size:
        logger.info(
            f"Position embeddings resampled from {config.vision_config.image_size} to {image_size} pixels."
        )
        vision_model.resize_position_embeddings(image_size)
    return model
