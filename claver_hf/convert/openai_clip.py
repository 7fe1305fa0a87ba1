"""Start a CLAVER from OpenAI CLIP weights (the `clip` package's ViT models, OpenAI's key names).

CLIP's tensors are mapped as in [`claver_hf.convert.reference`] (the reference code kept OpenAI's names); the
temporal embedding and the KMT blocks, which CLIP lacks, keep the fresh initialisation of the model's
`_init_weights`, as in the paper's recipe (docs/video-encoder.md, step 3).

OpenAI distributes its models as TorchScript archives (`ViT-B-16.pt`). Loading one executes TorchScript code,
which `torch.load(weights_only=True)` refuses and this module does not do: pass a state dict, saved in an
environment where you trust the archive:

```python
>>> import torch
>>> state_dict = torch.jit.load("ViT-B-16.pt", map_location="cpu").state_dict()  # doctest: +SKIP
>>> torch.save(state_dict, "ViT-B-16-state_dict.pth")  # doctest: +SKIP
>>> from claver_hf.convert import convert_openai_clip
>>> convert_openai_clip("ViT-B-16-state_dict.pth", "claver-b16-from-clip", num_frames=8)  # doctest: +SKIP
PosixPath('claver-b16-from-clip')
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..configuration import ClaverConfig
from ..modeling.kronecker import KroneckerMaskType
from .reference import (
    DEFAULT_HEAD_DIM,
    TEMPORAL_BLOCKS_PREFIX,
    TEMPORAL_EMBEDDING_KEY,
    StateDict,
    clip_key_rules,
    convert_with_rules,
    infer_clip_architecture,
    load_state_dict_file,
    save_converted,
    temporal_key_rules,
)


def _openai_metadata(config: ClaverConfig) -> dict[str, int]:
    """Sizes OpenAI's TorchScript models keep in their state dict (OpenAI's `build_model` drops them)."""
    return {
        "input_resolution": config.vision_config.image_size,
        "context_length": config.text_config.max_position_embeddings,
        "vocab_size": config.text_config.vocab_size,
    }


def convert_openai_clip_state_dict(
    state_dict: Mapping[str, torch.Tensor | int],
    *,
    num_frames: int = 8,
    kronecker_mask: KroneckerMaskType = "kmta",
    kmt_num_hidden_layers: int | None = None,
    head_dim: int = DEFAULT_HEAD_DIM,
) -> tuple[ClaverConfig, StateDict]:
    """Config and CLIP part of a [`ClaverModel`] state dict from an OpenAI CLIP ViT state dict.

    Args:
        state_dict: OpenAI CLIP's state dict; the size entries of TorchScript models (`input_resolution`,
            `context_length`, `vocab_size`) are checked against the weights and dropped.
        num_frames: frames the new temporal embedding is made for.
        kronecker_mask: mask of the new KMT blocks.
        kmt_num_hidden_layers: number of new KMT blocks; defaults to vision layers // 3 (docs/video-encoder.md, step 3).
        head_dim: width per attention head (64 in OpenAI CLIP).

    Returns:
        `(config, weights)`; `weights` holds every [`ClaverModel`] tensor except the temporal ones.
    """
    if TEMPORAL_EMBEDDING_KEY in state_dict or any(
        key.startswith(f"{TEMPORAL_BLOCKS_PREFIX}.") for key in state_dict
    ):
        raise ValueError(
            "The state dict has CLAVER's temporal parts: it is a reference CLAVER state dict, convert it with "
            "`convert_reference_checkpoint` / `convert_reference_state_dict`."
        )
    state_dict = dict(state_dict)
    metadata_keys = ("input_resolution", "context_length", "vocab_size")
    metadata = {key: int(state_dict.pop(key)) for key in metadata_keys if key in state_dict}
    architecture = infer_clip_architecture(state_dict, head_dim)
    architecture["vision_config"].update(
        num_frames=num_frames, kronecker_mask=kronecker_mask, kmt_num_hidden_layers=kmt_num_hidden_layers
    )
    config = ClaverConfig(**architecture)
    expected = _openai_metadata(config)
    wrong = {key: (value, expected[key]) for key, value in metadata.items() if value != expected[key]}
    if wrong:
        raise ValueError(f"Size entries disagree with the weights ((stored, from the weights)): {wrong}.")
    return config, convert_with_rules(state_dict, clip_key_rules(config), config)


def convert_openai_clip(
    path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
    output_dir: str | os.PathLike,
    *,
    num_frames: int = 8,
    kronecker_mask: KroneckerMaskType = "kmta",
    kmt_num_hidden_layers: int | None = None,
    id2label: dict[int, str] | None = None,
    classification: bool = False,
    head_dim: int = DEFAULT_HEAD_DIM,
) -> Path:
    """Write a CLAVER folder whose CLIP tensors come from OpenAI CLIP and whose temporal parts are new.

    Args:
        path_or_state_dict: an OpenAI CLIP ViT state dict, or a `.pth` / `.pt` file holding one (plain or under
            `"model"`). TorchScript archives are refused (see the module docstring).
        output_dir: folder to save the model to (`config.json`, float32 `model.safetensors`, source files).
        num_frames, kronecker_mask, kmt_num_hidden_layers, head_dim: see [`convert_openai_clip_state_dict`].
        id2label: class names stored in the config.
        classification: save a [`ClaverForVideoClassification`] (empty text bank) instead of a [`ClaverModel`].

    Returns:
        `output_dir`.
    """
    state_dict = (
        path_or_state_dict
        if isinstance(path_or_state_dict, Mapping)
        else load_state_dict_file(path_or_state_dict)
    )
    config, weights = convert_openai_clip_state_dict(
        state_dict,
        num_frames=num_frames,
        kronecker_mask=kronecker_mask,
        kmt_num_hidden_layers=kmt_num_hidden_layers,
        head_dim=head_dim,
    )
    new_tensors = [target for rule in temporal_key_rules(config).values() for target in rule.targets]
    return save_converted(
        config,
        weights,
        output_dir,
        classification=classification,
        id2label=id2label,
        allow_missing=new_tensors,
    )


__all__ = ["convert_openai_clip", "convert_openai_clip_state_dict"]
