"""How CLAVER scores classes: the one rule behind the classifier's logits, its multi-view evaluation, the zero-shot
pipeline, `claver-hf classify` and `claver-hf explain`.

For every test view of a video (a clip × crop) and every text view `v` (a template or an interpretive prompt),
the video embedding is compared with view `v` of every class: `logit_scale · <video, text>`, softmax over the
classes. The class probabilities are averaged over all text views, then over the test views of the video.

Shapes: `B` videos, `N` test views per video, `V` text views per class, `C` classes, `E` embedding size.
"""

import torch


def text_view_logits(
    video_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """`(..., E)` video embeddings and `(V, C, E)` normalised text embeddings -> `(..., V, C)` logits, each
    `logit_scale` (already exponentiated) times a dot product."""
    return logit_scale * torch.einsum("...e,vce->...vc", video_embeds, text_embeds.to(video_embeds.dtype))


def view_averaged_log_probs(view_logits: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Log of the class probabilities averaged over text views and test views.

    Args:
        view_logits: `(B, V, C)` logits of every video against view `v` of every class `c`, or `(B, N, V, C)` for
            `N` test views per video.
        view_mask: `(V, C)`, `False` where class `c` has no view `v`; such a slot takes the mean of the class's
            logits over the views it has, so that no prompt counts twice.

    Returns:
        `(B, C)`: `log(mean over n and v of softmax over c of view_logits[:, n, v])`; its softmax is that mean.
    """
    if view_mask is not None and not bool(view_mask.all()):
        mask = view_mask.expand_as(view_logits)
        class_mean = (view_logits * mask).sum(-2, keepdim=True) / mask.sum(-2, keepdim=True)
        view_logits = torch.where(mask, view_logits, class_mean)
    log_probs = view_logits.log_softmax(dim=-1).flatten(1, -2)  # (B, N·V, C)
    count = torch.tensor(float(log_probs.shape[1]), device=log_probs.device, dtype=log_probs.dtype)
    return torch.logsumexp(log_probs, dim=1) - torch.log(count)


def class_log_probs(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    view_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scoring rule (see the module docstring): log class probabilities of each video.

    Args:
        video_embeds: `(B, E)` video embeddings, or `(B, N, E)` for `N` test views per video.
        text_embeds: `(V, C, E)` normalised embeddings of view `v` of class `c`.
        logit_scale: the model's `logit_scale.exp()`.
        view_mask: `(V, C)`, `False` where class `c` has no view `v` (see [`view_averaged_log_probs`]).

    Returns:
        `(B, C)` log probabilities; `.exp()` gives probabilities summing to 1 over the classes.
    """
    if video_embeds.ndim not in (2, 3):
        raise ValueError(
            "`video_embeds` must have shape (videos, embed_dim) or (videos, test_views, embed_dim), got "
            f"{tuple(video_embeds.shape)}."
        )
    return view_averaged_log_probs(text_view_logits(video_embeds, text_embeds, logit_scale), view_mask)


__all__ = ["class_log_probs", "text_view_logits", "view_averaged_log_probs"]
