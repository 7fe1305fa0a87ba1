"""Which words of a prompt make it match a video: word importance for the video-text similarity.

The similarity explained is the one CLAVER's logits scale: `<video embedding, normalised text embedding>`
(the video embedding is the mean of the normalised frame embeddings, docs/video-encoder.md, step 5). Two methods:

- `"gradient"` (gradient × input): for each token, the dot product of its token embedding with the gradient
  of the similarity with respect to that embedding; a first-order estimate of the similarity lost if the
  token's embedding were zeroed. Signed: negative words pull the text away from the video. One forward and
  one backward pass of the text tower.
- `"occlusion"`: the similarity of the full prompt minus the similarity of the prompt with the word's tokens
  removed (start and end tokens kept). Signed too; one text forward per word, in one batch.

Tokens are mapped back to the words of the text with the tokenizer's word ids and character offsets: CLIP's
byte-pair encoding splits a word into pieces, the last of which ends in `</w>` (`"strumming"` ->
`stru`, `mming</w>`); a word's importance is the sum over its pieces, and the word is returned as written
in the text (case kept), punctuation marks being words of their own as in CLIP's pre-tokenisation.
"""

from __future__ import annotations

from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from ..modeling.modeling_claver import ClaverModel
from ..processing.processing_claver import ClaverProcessor
from .attention import AnyClaverModel

WordMethod = Literal["gradient", "occlusion"]
WORD_METHODS: tuple[str, ...] = ("gradient", "occlusion")


def _words(
    tokenizer: PreTrainedTokenizerBase, text: str, max_length: int
) -> tuple[list[int], list[str], list[list[int]]]:
    """Token ids of `text` (start and end tokens included, cut to `max_length`), its words, and the token
    positions of each word."""
    encoding = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    spans: dict[int, list[int]] = {}
    for position, word in enumerate(encoding.word_ids()):
        if word is not None:
            spans.setdefault(word, []).append(position)
    offsets = encoding["offset_mapping"]
    words = [text[offsets[p[0]][0] : offsets[p[-1]][1]] for p in spans.values()]
    return list(encoding["input_ids"]), words, list(spans.values())


def _similarity(
    model: ClaverModel,
    video_embed: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`(K,)` similarities of `video_embed` `(E,)` with the normalised embeddings of `K` texts."""
    text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    text = text / text.norm(dim=-1, keepdim=True)
    return text @ video_embed.to(text.dtype)


def _gradient_times_input(
    model: ClaverModel, video_embed: torch.Tensor, input_ids: list[int]
) -> torch.Tensor:
    """`(S,)` gradient × input of each token embedding."""
    captured: list[torch.Tensor] = []

    def leaf(module, args, output):
        # A fresh leaf, so the gradient exists even when the model's weights are frozen, and no weight's
        # `.grad` is touched.
        embeds = output.detach().requires_grad_(True)
        captured.append(embeds)
        return embeds

    handle = model.text_model.embeddings.token_embedding.register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            ids = torch.tensor([input_ids], device=video_embed.device)
            similarity = _similarity(model, video_embed, ids)[0]
            (gradient,) = torch.autograd.grad(similarity, captured[0])
    finally:
        handle.remove()
    return (gradient * captured[0]).sum(dim=-1)[0].detach()


def _occlusion(
    model: ClaverModel, video_embed: torch.Tensor, input_ids: list[int], spans: list[list[int]], pad_id: int
) -> torch.Tensor:
    """`(W,)` similarity drop when each word's tokens are removed."""
    variants = [input_ids]
    for span in spans:
        dropped = set(span)
        variants.append([token for position, token in enumerate(input_ids) if position not in dropped])
    length = len(input_ids)
    ids = torch.tensor([v + [pad_id] * (length - len(v)) for v in variants], device=video_embed.device)
    mask = torch.tensor([[1] * len(v) + [0] * (length - len(v)) for v in variants], device=video_embed.device)
    with torch.no_grad():
        similarities = _similarity(model, video_embed, ids, mask)
    return similarities[0] - similarities[1:]


def word_scores(
    model: AnyClaverModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    video_embed: torch.Tensor,
    method: WordMethod = "gradient",
) -> list[tuple[str, float]]:
    """[`word_importance`] for an already computed video embedding `(E,)` (or `(1, E)`)."""
    if method not in WORD_METHODS:
        raise ValueError(f"Unknown word importance method {method!r}; expected one of {WORD_METHODS}.")
    model = model.base_model
    video_embed = video_embed.detach().reshape(-1)
    max_length = model.config.text_config.max_position_embeddings
    input_ids, words, spans = _words(tokenizer, text, max_length)
    if method == "gradient":
        per_token = _gradient_times_input(model, video_embed, input_ids)
        scores = [float(per_token[span].sum()) for span in spans]
    else:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        scores = _occlusion(model, video_embed, input_ids, spans, pad_id).tolist()
    return list(zip(words, scores, strict=True))


def word_importance(
    model: AnyClaverModel,
    processor_or_tokenizer: ClaverProcessor | PreTrainedTokenizerBase,
    text: str,
    pixel_values: torch.Tensor,
    *,
    method: WordMethod = "gradient",
) -> list[tuple[str, float]]:
    """Importance of each word of `text` for its similarity with a video (methods: see the module docstring).

    Call `model.eval()` first so that dropout does not perturb the scores.

    Args:
        model: a [`ClaverModel`] or a [`ClaverForVideoClassification`].
        processor_or_tokenizer: a [`ClaverProcessor`] or a (fast) tokenizer of the model's text tower.
        text: the prompt; cut to the text tower's context (77 tokens for CLIP).
        pixel_values: `(1, T, C, H, W)` normalised frames of one video.
        method: `"gradient"` (gradient × input) or `"occlusion"`.

    Returns:
        `(word, importance)` pairs in text order; the importances of a word's pieces are summed.
    """
    model = model.base_model
    param = next(model.parameters())
    with torch.no_grad():
        video_embed = model.get_video_features(
            pixel_values=pixel_values.to(device=param.device, dtype=param.dtype)
        ).pooler_output
    if video_embed.shape[0] != 1:
        raise ValueError(f"`pixel_values` must hold one video, got {video_embed.shape[0]}.")
    tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)
    return word_scores(model, tokenizer, text, video_embed, method)


__all__ = ["WORD_METHODS", "WordMethod", "word_importance", "word_scores"]
