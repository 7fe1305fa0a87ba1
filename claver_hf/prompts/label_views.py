"""Which text views describe a label: the one resolution behind the zero-shot pipeline, `claver-hf classify` and
`claver-hf explain` (a classifier's stored bank holds the same views for its classes, see
`ClaverProcessor.text_bank`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .bank import PromptBank, display_name, load_prompt_bank, normalize_sentence
from .templates import TEMPLATES


@dataclass
class LabelViews:
    """The text views of some labels.

    Attributes:
        labels: the labels as given, in order.
        views: for each label, its text views.
        bank_classes: for each label, the prompt-bank class it matched, or `None` (templates only).
    """

    labels: list[str]
    views: list[list[str]]
    bank_classes: list[str | None]


def resolve_label_views(
    labels: Sequence[str] | str,
    prompt_bank: PromptBank | str | os.PathLike | None = None,
    label_descriptions: Mapping[str, str | Sequence[str]] | None = None,
) -> LabelViews:
    """The text views of each label.

    A label found in `prompt_bank` (by class name, or by display name, ignoring case and punctuation) takes the
    bank's views of that class: its templates filled with the class's display name, then its interpretive
    prompts. Any other label takes [`TEMPLATES`] filled with `display_name(label)`. Sentences in
    `label_descriptions[label]` are appended as extra views.

    Args:
        labels: distinct labels (one string is one label).
        prompt_bank: a [`PromptBank`], a bundled bank name or a bank file.
        label_descriptions: `{label: sentence or sentences}`, extra views of some of the labels.
    """
    labels = [labels] if isinstance(labels, str) else list(labels)
    if not labels:
        raise ValueError("The list of labels is empty: give at least one label.")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"Labels must be distinct; the list repeats {duplicates}.")
    descriptions = dict(label_descriptions or {})
    unknown = [label for label in descriptions if label not in labels]
    if unknown:
        raise ValueError(f"`label_descriptions` has entries for {unknown}, which are not candidate labels.")
    if prompt_bank is not None and not isinstance(prompt_bank, PromptBank):
        prompt_bank = load_prompt_bank(prompt_bank)

    lookup = _bank_lookup(prompt_bank) if prompt_bank is not None else {}
    views, bank_classes = [], []
    for label in labels:
        bank_class = label if prompt_bank is not None and label in prompt_bank.classes else None
        bank_class = bank_class or lookup.get(normalize_sentence(label))
        label_views = (
            prompt_bank.views(bank_class)
            if bank_class is not None
            else [template.format(display_name(label)) for template in TEMPLATES]
        )
        extra = descriptions.get(label, [])
        extra = [extra] if isinstance(extra, str) else list(extra)
        if not all(isinstance(text, str) and text.strip() for text in extra):
            raise ValueError(f"`label_descriptions[{label!r}]` must be non-empty sentences, got {extra!r}.")
        views.append(label_views + [text.strip() for text in extra])
        bank_classes.append(bank_class)
    return LabelViews(labels, views, bank_classes)


def _bank_lookup(prompt_bank: PromptBank) -> dict[str, str]:
    """Normalised class names and display names -> class name (the first class wins a shared key)."""
    lookup: dict[str, str] = {}
    for name, entry in prompt_bank.classes.items():
        for key in (name, display_name(name), entry.display_name):
            lookup.setdefault(normalize_sentence(key), name)
    return lookup


__all__ = ["LabelViews", "resolve_label_views"]
