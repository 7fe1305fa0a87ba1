"""Where CLAVER's video encoder looks: relevance of every frame's patches for the frame class tokens.

Shapes: `T` frames, `L = h·w + 1` tokens per frame (class token first, then the `h × w` patch grid, row-major),
`N = T·L` tokens in the KMT blocks (frame-major, token `i` of frame `t` at `t·L + i`).

Two methods, both giving `relevance[t, s, y, x]`: how much the class token of frame `t` after the KMT blocks
(the token whose projection is frame `t`'s embedding) draws on patch `(y, x)` of frame `s`.

- `"kmt"`: the attention weights of the class-token queries over the patch tokens in the KMT blocks, averaged
  over heads and blocks. It shows the temporal module only: under KMTA a class token never attends to the
  patches of its own frame, under KMCTA only to those of earlier frames, so `relevance[t, t]` is zero.
- `"rollout"`: attention rollout (Abnar & Zuidema, 2020) through the whole encoder. Each layer's head-averaged
  attention `A` becomes `(A + I) / 2` (the residual connection), and the products of these matrices over the
  KMT blocks (`T·L` tokens) and over CLIP's per-frame layers (`L` tokens of each frame) are composed, so paths
  through the residual stream count: a class token reaches its own frame's patches through CLIP's layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from transformers import PretrainedConfig, PreTrainedModel

from .._compat import attn_implementation
from ..modeling.modeling_claver import ClaverForVideoClassification, ClaverModel, ClaverVisionModel

AttentionMethod = Literal["kmt", "rollout"]
ATTENTION_METHODS: tuple[str, ...] = ("kmt", "rollout")

AnyClaverModel = ClaverModel | ClaverForVideoClassification


def _vision_tower(model: AnyClaverModel | ClaverVisionModel) -> ClaverVisionModel:
    return model if isinstance(model, ClaverVisionModel) else model.base_model.vision_model


def _implementations(config: PretrainedConfig) -> str | dict:
    """`config`'s attention implementation, nested per sub-config in `set_attn_implementation`'s dict format."""
    own = attn_implementation(config)
    subs = {key: getattr(config, key) for key in config.sub_configs if getattr(config, key) is not None}
    if not subs:
        return own
    return {"": own, **{key: _implementations(sub) for key, sub in subs.items()}}


@contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Switch `model` (and its sub-models) to eager attention, the only kernel that returns attention weights,
    and restore every previous implementation on exit, also when the body raises."""
    saved = _implementations(model.config)
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(saved)


def _check_video(pixel_values: torch.Tensor) -> None:
    if pixel_values.ndim != 5 or pixel_values.shape[0] != 1:
        raise ValueError(
            "Attention maps are computed for one video: `pixel_values` must have shape (1, frames, channels, "
            f"height, width), got {tuple(pixel_values.shape)}."
        )


def _with_residual(attention: torch.Tensor) -> torch.Tensor:
    """`(..., n, n)` head-averaged attention -> `(A + I) / 2`, rows renormalised (rollout's residual step)."""
    eye = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    mixed = (attention + eye) / 2
    return mixed / mixed.sum(dim=-1, keepdim=True)


def _rollout(start: torch.Tensor, attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """`start @ Â_K @ ... @ Â_1` for the layers' attentions `A_1..A_K` (each `(..., n, n)`, heads averaged).

    With `start` = rows of the identity, the rows of the rollout: how much each chosen output token draws on
    each input token. Multiplying from the output side keeps only those rows (`T` class tokens, not `T·L`).
    """
    for attention in reversed(attentions):
        start = start @ _with_residual(attention)
    return start


def attention_relevance(
    model: AnyClaverModel | ClaverVisionModel,
    pixel_values: torch.Tensor,
    method: AttentionMethod = "kmt",
    *,
    interpolate_pos_encoding: bool = False,
) -> torch.Tensor:
    """Relevance of every frame's patches for every frame's class token (see the module docstring).

    The model runs once with eager attention (its attention implementation is restored afterwards) and without
    gradients. Call `model.eval()` first so that dropout does not perturb the weights.

    Args:
        model: a [`ClaverModel`], a [`ClaverForVideoClassification`] or a [`ClaverVisionModel`].
        pixel_values: `(1, T, C, H, W)` normalised frames of one video.
        method: `"kmt"` or `"rollout"`.
        interpolate_pos_encoding: for frames of another size than the model's `image_size`.

    Returns:
        `(T, T, h, w)` float32 on the CPU, non-negative: `[t, s]` is the map of query frame `t` over the
        `h × w` patch grid of frame `s`; each `[t]` sums to at most 1 (the rest goes to class tokens).
    """
    if method not in ATTENTION_METHODS:
        raise ValueError(f"Unknown attention method {method!r}; expected one of {ATTENTION_METHODS}.")
    _check_video(pixel_values)
    vision = _vision_tower(model)
    param = next(vision.parameters())
    with eager_attention(vision), torch.no_grad():
        outputs = vision(
            pixel_values=pixel_values.to(device=param.device, dtype=param.dtype),
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_attentions=method == "rollout",
            output_temporal_attentions=True,
        )
    num_frames, (height, width) = pixel_values.shape[1], pixel_values.shape[-2:]
    grid = (height // vision.config.patch_size, width // vision.config.patch_size)
    tokens_per_frame = grid[0] * grid[1] + 1
    class_tokens = torch.arange(num_frames, device=param.device) * tokens_per_frame
    # (T·L, T·L) per KMT block, heads averaged; float32 so products of many layers stay accurate in half precision.
    temporal = [attention[0].float().mean(dim=0) for attention in outputs.temporal_attentions]

    if method == "kmt":
        relevance = torch.stack(temporal).mean(dim=0)[class_tokens]  # (T, T·L)
        relevance = relevance.view(num_frames, num_frames, tokens_per_frame)
    else:
        eye = torch.eye(num_frames * tokens_per_frame, device=param.device)
        temporal_rollout = _rollout(eye[class_tokens], temporal).view(
            num_frames, num_frames, tokens_per_frame
        )
        spatial = [attention.float().mean(dim=1) for attention in outputs.attentions]  # (T, L, L) per layer
        spatial_rollout = _rollout(torch.eye(tokens_per_frame, device=param.device), spatial)  # (T, L, L)
        # Class token of t -> token i of frame s after CLIP's layers -> input token j of frame s.
        relevance = torch.einsum("tsi,sij->tsj", temporal_rollout, spatial_rollout)
    # Drop input token 0 of each frame: the class embedding, the same for every frame and not a place.
    return relevance[..., 1:].reshape(num_frames, num_frames, *grid).cpu()


def video_attention_maps(
    model: AnyClaverModel | ClaverVisionModel,
    pixel_values: torch.Tensor,
    method: AttentionMethod = "kmt",
    *,
    query_frame: int | None = None,
    interpolate_pos_encoding: bool = False,
) -> torch.Tensor:
    """Per-frame heat maps over the patch grid: where in each frame the model takes its evidence from.

    Map `s` is the relevance of frame `s`'s patches ([`attention_relevance`]) averaged over the class tokens of
    all frames, the same mean over frames that makes the video embedding; with `query_frame=t`, for frame
    `t`'s class token only (under KMCTA that map is zero on the frames after `t`, and on frame `t` itself for
    `"kmt"`). The maps of all frames are min-max scaled together, the least relevant patch of the video to 0 and
    the most relevant to 1: frames stay comparable, and near-uniform maps (an untrained model) still show their
    contrast.

    Args:
        model: a [`ClaverModel`], a [`ClaverForVideoClassification`] or a [`ClaverVisionModel`].
        pixel_values: `(1, T, C, H, W)` normalised frames of one video.
        method: `"kmt"` (KMT attention of the class tokens) or `"rollout"` (attention rollout through CLIP's
            layers and the KMT blocks).
        query_frame: a frame index, or `None` for the mean over all frames' class tokens.
        interpolate_pos_encoding: for frames of another size than the model's `image_size`.

    Returns:
        `(T, h, w)` float32 in `[0, 1]` on the CPU, `h × w` the patch grid (`image_size / patch_size` squared);
        all zeros if every patch is equally relevant.
    """
    relevance = attention_relevance(
        model, pixel_values, method, interpolate_pos_encoding=interpolate_pos_encoding
    )
    num_frames = relevance.shape[0]
    if query_frame is None:
        maps = relevance.mean(dim=0)
    elif -num_frames <= query_frame < num_frames:
        maps = relevance[query_frame]
    else:
        raise ValueError(f"`query_frame` {query_frame} is out of range for a video of {num_frames} frames.")
    low, high = maps.min(), maps.max()
    return (maps - low) / (high - low) if high > low else torch.zeros_like(maps)


__all__ = [
    "ATTENTION_METHODS",
    "AttentionMethod",
    "attention_relevance",
    "eager_attention",
    "video_attention_maps",
]
