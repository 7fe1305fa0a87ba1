"""Every private part of transformers and torch that claver_hf relies on, each behind one name here.

A model defined outside transformers needs a few things its public API does not offer (recording outputs the way its
own models do, building sub-models the way its composite models do, ...). Each such use lives here with what it relies
on and why, so that a release that moves or changes one breaks this module alone; `tests/test_compat.py` checks that
no other module reaches for a private name. The range of transformers releases tested is the pin in `setup.cfg`.

This module is saved with the models' and processors' remote code (see `remote_code`), so it imports nothing from
claver_hf.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import cached_file

# How transformers' own models record hidden states and attention weights (`@capture_outputs`, with the layers named
# by the model's `_can_record_outputs`) and answer `return_dict=False` (`@can_return_tuple`): internals of
# `transformers.utils`, not exported at its top level.
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

if TYPE_CHECKING:
    from transformers.processing_utils import ProcessorMixin
    from transformers.video_processing_utils import BaseVideoProcessor

ModelT = TypeVar("ModelT", bound=PreTrainedModel)

__all__ = [
    "CheckAttnImplementation",
    "InitializeEveryModule",
    "OutputRecorder",
    "attn_implementation",
    "can_return_tuple",
    "capture_outputs",
    "from_config",
    "merge_processor_kwargs",
    "optional_cached_file",
    "set_attn_implementation",
    "standardize_video_kwargs",
    "tensor_version",
]


class InitializeEveryModule:
    """Mixin (before the `PreTrainedModel` base) that initialises every module the way transformers does for its own
    models.

    For models defined outside transformers, its private `_initialize_weights(module, is_custom_code=True)` skips every
    module that owns no parameter itself, guarding against custom inits that write tensors in place. CLIP sets its
    attention and MLP inits on exactly such modules (`CLIPAttention`, `CLIPMLP`: the weights live in child
    `nn.Linear`s), so the vision tower and the KMT blocks kept the generic 0.02 of every Linear, which shrinks their
    residual branches several times (the CLS token then barely depends on the frames at initialisation). CLAVER's
    inits all go through `transformers.initialization`, which leaves loaded tensors alone: the guard is not needed.
    """

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        super()._initialize_weights(module, is_custom_code=False)


class CheckAttnImplementation:
    """Mixin (before the `PreTrainedModel` base) that calls the model's `_check_attn_implementation(name)` whenever
    transformers settles the attention kernel of the model's own config: at init (`from_pretrained`, `from_config`)
    and in `set_attn_implementation`, through its private `_check_and_adjust_attn_implementation`. Unsupported kernels
    are then refused before transformers tries to load them."""

    def _check_and_adjust_attn_implementation(
        self, attn_implementation: str | None, is_init_check: bool = False, allow_all_kernels: bool = False
    ) -> str:
        self._check_attn_implementation(attn_implementation)
        return super()._check_and_adjust_attn_implementation(
            attn_implementation, is_init_check=is_init_check, allow_all_kernels=allow_all_kernels
        )


def merge_processor_kwargs(processor: ProcessorMixin, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """A processor call's arguments sorted by modality (`text_kwargs`, `videos_kwargs`, ...) over the defaults, as
    transformers' own processors sort them in `__call__`: the private `ProcessorMixin._merge_kwargs`."""
    return processor._merge_kwargs(**kwargs)


def standardize_video_kwargs(video_processor: BaseVideoProcessor, **kwargs: Any) -> dict[str, Any]:
    """A video processor call's arguments in the form `_preprocess` takes (sizes as `SizeDict`, resampling as the
    interpolation mode, ...) after checking them, as `BaseVideoProcessor.preprocess` does: its private
    `_standardize_kwargs` and `_validate_preprocess_kwargs`."""
    kwargs = video_processor._standardize_kwargs(**kwargs)
    video_processor._validate_preprocess_kwargs(**kwargs)
    return kwargs


def from_config(model_class: type[ModelT], config: PretrainedConfig, **kwargs: Any) -> ModelT:
    """`model_class` built from `config` the way transformers builds the towers of its composite models (CLIPModel's
    text and vision models): the private `PreTrainedModel._from_config` applies the config's attention implementation
    and dtype (and DeepSpeed ZeRO-3's partitioned init), which `model_class(config)` does not. The public
    `from_config` of the Auto classes needs the class registered, which it is not in remote code."""
    return model_class._from_config(config, **kwargs)


def attn_implementation(config: PretrainedConfig) -> str | None:
    """The attention kernel `config` asks for (`"eager"`, `"sdpa"`, `"flex_attention"`, ...): the private
    `config._attn_implementation` that transformers' own attention layers read; there is no public getter."""
    return config._attn_implementation


def set_attn_implementation(config: PretrainedConfig, implementation: str) -> None:
    """Make the layers built from `config` use `implementation`, for layers built without a model (a model switches
    with its public `set_attn_implementation`): the private `_attn_implementation` setter."""
    config._attn_implementation = implementation


def optional_cached_file(path_or_repo: str | os.PathLike, filename: str, **kwargs: Any) -> str | None:
    """The local path of `filename` in a folder or Hub repository, or None when it has no such file (other failures
    still raise): `cached_file` with its private `_raise_exceptions_for_missing_entries=False`, as transformers' own
    loaders look for optional files. `kwargs` go to `cached_file` (`revision`, `token`, `local_files_only`, ...)."""
    return cached_file(path_or_repo, filename, _raise_exceptions_for_missing_entries=False, **kwargs)


def tensor_version(tensor: torch.Tensor) -> int:
    """A counter torch increases on every in-place change of `tensor` (autograd's check that a tensor it saved is
    unchanged): the private `Tensor._version`; no public API tells whether a tensor was written in place."""
    return tensor._version
