"""A text-only warm start for a text tower trained from scratch.

A classifier trained from scratch starts in a saddle: the text tower maps the prompts of every class to nearly the
same point (mean cosine between classes about 0.96), so the video tower's gradient, scaled by the differences
between class embeddings, is tiny; and the video embeddings of all videos are nearly equal too, so the text
tower's gradient is tiny as well. Each waits for the other, for a number of epochs that depends on the seed
(measured on the demo: README, "Demo robustness"). A pretrained CLIP text tower has no such saddle: it already
places different captions apart. The warm start gives a from-scratch text tower the same property from the prompt
bank alone, before any video is seen: for a few hundred steps, each class's prompts are pulled towards a learned
prototype of that class and away from the others' (cross-entropy over cosine logits), then the prototypes are
dropped. It uses only the classes' texts and names, the same supervision the classifier's text bank carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..modeling.modeling_claver import ClaverForVideoClassification

# Cosine logits of a prompt against the prototypes are multiplied by this (CLIP's initial logit scale, 1 / 0.07).
_PROTOTYPE_LOGIT_SCALE = 1 / 0.07


@dataclass
class TextWarmStartResult:
    """Mean cosine between the classes' mean text embeddings before and after the warm start, and the last
    step's loss (ln C at chance for C classes)."""

    steps: int
    class_cosine_before: float
    class_cosine_after: float
    final_loss: float


def mean_class_cosine(model: ClaverForVideoClassification) -> float:
    """Mean cosine, over pairs of distinct classes, between the classes' mean (over their views) text embeddings."""
    bank = model.text_bank
    with torch.no_grad():
        embeddings = model.bank_text_features()  # (V, C, E)
        mask = bank.view_mask.unsqueeze(-1).to(embeddings.dtype)
        class_means = F.normalize((embeddings * mask).sum(0) / mask.sum(0), dim=-1)  # (C, E)
    num_classes = class_means.shape[0]
    if num_classes < 2:
        raise ValueError("The mean cosine between classes needs at least two classes in the text bank.")
    cosines = class_means @ class_means.T
    return float((cosines.sum() - cosines.diagonal().sum()) / (num_classes * (num_classes - 1)))


def warm_start_text_tower(
    model: ClaverForVideoClassification,
    steps: int,
    learning_rate: float,
    views_per_class: int = 4,
) -> TextWarmStartResult:
    """Train the text tower (and its projection) alone for `steps` steps on the model's text bank.

    Each step draws `views_per_class` views of every class (as a training step of the classifier does) and
    minimises the cross-entropy of their cosine logits against one learnable prototype per class; the prototypes
    are discarded afterwards. AdamW without weight decay at `learning_rate`. Runs on the model's device and draws
    its views from torch's global random state (seed it for a reproducible run); the model's mode is restored.

    Args:
        model: a classifier with a complete text bank and a trainable text tower.
        steps: optimisation steps, at least 1.
        learning_rate: AdamW learning rate.
        views_per_class: views of each class per step, at least 1.
    """
    if steps < 1:
        raise ValueError(f"`steps` of the text warm start must be at least 1, got {steps}.")
    if views_per_class < 1:
        raise ValueError(
            f"`views_per_class` of the text warm start must be at least 1, got {views_per_class}."
        )
    if model.text_encoder_frozen:
        raise ValueError("The text warm start trains the text tower, but its weights are frozen.")
    bank = model.text_bank
    if bank.num_classes < 2:
        raise ValueError(
            f"The text warm start tells classes apart: it needs at least two classes, the text bank has {bank.num_classes}."
        )
    was_training = model.training
    model.eval()  # no dropout: the warm start shapes the embeddings the classifier starts from
    before = mean_class_cosine(model)
    text_weights = [p for p in model.claver.text_parameters() if p.requires_grad]
    weight = text_weights[0]
    prototypes = torch.nn.Parameter(
        torch.randn(bank.num_classes, model.config.projection_dim, device=weight.device, dtype=weight.dtype)
    )
    optimizer = torch.optim.AdamW([*text_weights, prototypes], lr=learning_rate, weight_decay=0.0)
    loss = torch.tensor(float("nan"))
    with torch.enable_grad():
        for _ in range(steps):
            views, classes = bank.sample_views(views_per_class)  # (K, C) each
            embeddings = model._encode_texts(
                bank.input_ids[views, classes], bank.attention_mask[views, classes]
            )
            logits = _PROTOTYPE_LOGIT_SCALE * embeddings.flatten(0, 1) @ F.normalize(prototypes, dim=-1).T
            loss = F.cross_entropy(logits, classes.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    bank.invalidate()  # the optimizer changed the weights in place
    after = mean_class_cosine(model)
    model.train(was_training)
    return TextWarmStartResult(
        steps=steps, class_cosine_before=before, class_cosine_after=after, final_loss=float(loss.detach())
    )


__all__ = ["TextWarmStartResult", "mean_class_cosine", "warm_start_text_tower"]
