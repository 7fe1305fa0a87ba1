"""Prompt banks: per-class text views (templates + interpretive prompts), as one JSON file per dataset.

File format (version 1)::

    {
      "format_version": 1,
      "dataset": "ucf101",
      "templates": ["{}", "a video of {}.", ...],
      "classes": {
        "ApplyEyeMakeup": {
          "display_name": "applying eye makeup",
          "decomposition": ["..."], "body_parts": ["..."], "synonyms": ["..."], "scene": ["..."]
        }
      }
    }

Class keys are the dataset's label names, in label order. `decomposition`, `body_parts` and `synonyms` are
the interpretive forms CLAVER uses (docs/text-bank.md), all three or none (a class of a user's label set may have the
templates only); `scene` is optional and not used by default. The views of a
class are the templates filled with its display name, then its sentences of the chosen forms.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
INTERPRETIVE_FORMS = ("decomposition", "body_parts", "synonyms")
OPTIONAL_FORMS = ("scene",)
ALL_FORMS = INTERPRETIVE_FORMS + OPTIONAL_FORMS
BUNDLED_BANKS = ("ucf101", "hmdb51", "kinetics400", "kinetics600", "ssv2", "synthetic")


class PromptBankError(ValueError):
    """A prompt bank that cannot be used; the message names the file, class and form at fault."""


@dataclass
class ClassPrompts:
    """The prompts of one class: its display name and sentences per form."""

    display_name: str
    sentences: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PromptBank:
    """Templates and per-class interpretive prompts of one label set.

    Args:
        dataset: name of the label set.
        templates: strings with one `{}` for the class display name.
        classes: class name -> [`ClassPrompts`], in label order.
    """

    dataset: str
    templates: list[str]
    classes: dict[str, ClassPrompts]

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def views(self, class_name: str, forms: Sequence[str] = INTERPRETIVE_FORMS) -> list[str]:
        """The text views of a class: every template with its display name, then its sentences of `forms`."""
        entry = self.classes[class_name]
        filled = [template.format(entry.display_name) for template in self.templates]
        return filled + [s for form in forms for s in entry.sentences.get(form, [])]

    def subset(self, class_names: Iterable[str]) -> PromptBank:
        """The bank restricted to `class_names`, in that order (a user's label set)."""
        names = list(class_names)
        missing = [name for name in names if name not in self.classes]
        if missing:
            raise PromptBankError(f"Prompt bank {self.dataset!r} has no prompts for classes {missing}.")
        return PromptBank(self.dataset, list(self.templates), {name: self.classes[name] for name in names})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> PromptBank:
        """Parse and validate a bank; errors name `source`, the class and the form."""
        if not isinstance(data, dict):
            raise PromptBankError(f"{source}: a prompt bank must be a JSON object.")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PromptBankError(
                f"{source}: unsupported format_version {version!r} (expected {FORMAT_VERSION})."
            )
        for key in ("dataset", "templates", "classes"):
            if key not in data:
                raise PromptBankError(f"{source}: missing field {key!r}.")
        templates = data["templates"]
        if not isinstance(templates, list) or not templates:
            raise PromptBankError(f"{source}: 'templates' must be a non-empty list.")
        for template in templates:
            if not isinstance(template, str) or template.count("{}") != 1:
                raise PromptBankError(f"{source}: template {template!r} must contain exactly one '{{}}'.")
        if not isinstance(data["classes"], dict) or not data["classes"]:
            raise PromptBankError(f"{source}: 'classes' must be a non-empty object.")
        classes = {name: _parse_class(name, entry, source) for name, entry in data["classes"].items()}
        return cls(str(data["dataset"]), list(templates), classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "templates": list(self.templates),
            "classes": {
                name: {"display_name": entry.display_name, **entry.sentences}
                for name, entry in self.classes.items()
            },
        }

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def _parse_class(name: str, entry: Any, source: str) -> ClassPrompts:
    where = f"{source}: class {name!r}"
    if not isinstance(entry, dict):
        raise PromptBankError(f"{where}: expected an object with 'display_name' and prompt forms.")
    unknown = set(entry) - {"display_name", *ALL_FORMS}
    if unknown:
        raise PromptBankError(
            f"{where}: unknown form(s) {sorted(unknown)}; allowed forms are {list(ALL_FORMS)}."
        )
    display = entry.get("display_name") or display_name(name)
    sentences: dict[str, list[str]] = {}
    for form in ALL_FORMS:
        if form not in entry:
            continue
        values = entry[form]
        if not isinstance(values, list) or not values:
            raise PromptBankError(f"{where}, form {form!r}: expected a non-empty list of sentences.")
        seen: set[str] = set()
        for sentence in values:
            if not isinstance(sentence, str) or not sentence.strip():
                raise PromptBankError(f"{where}, form {form!r}: empty or non-text sentence {sentence!r}.")
            if "\n" in sentence:
                raise PromptBankError(
                    f"{where}, form {form!r}: sentence spans several lines: {sentence[:60]!r}."
                )
            key = normalize_sentence(sentence)
            if key in seen:
                raise PromptBankError(f"{where}, form {form!r}: duplicate sentence {sentence!r}.")
            seen.add(key)
        sentences[form] = [s.strip() for s in values]
    # A class has all three interpretive forms, or none (its views are then the templates alone).
    missing = [form for form in INTERPRETIVE_FORMS if form not in sentences]
    if missing and len(missing) < len(INTERPRETIVE_FORMS):
        raise PromptBankError(f"{where}: missing form(s) {missing}.")
    return ClassPrompts(display, sentences)


def normalize_sentence(text: str) -> str:
    """Lower case, punctuation and spacing folded: what counts as 'the same sentence'."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def display_name(class_name: str) -> str:
    """A readable name for a label: `ApplyEyeMakeup` -> `apply eye makeup`,
    `Pushing [something] from left to right` -> `pushing something from left to right`, `shoot_bow` -> `shoot bow`."""
    text = re.sub(r"[\[\]]", "", class_name).replace("_", " ")
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def load_prompt_bank(name_or_path: str | os.PathLike) -> PromptBank:
    """A bundled bank by name (`BUNDLED_BANKS`) or a bank file by path."""
    if str(name_or_path) in BUNDLED_BANKS:
        text = (
            resources.files("claver_hf.prompts").joinpath("banks", f"{name_or_path}.json").read_text("utf-8")
        )
        return PromptBank.from_dict(json.loads(text), source=f"bundled bank {name_or_path!r}")
    path = Path(name_or_path)
    if not path.is_file():
        raise PromptBankError(
            f"No prompt bank {str(name_or_path)!r}: not a bundled bank ({', '.join(BUNDLED_BANKS)}) nor a file."
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise PromptBankError(f"{path}: not valid JSON ({error}).") from error
    return PromptBank.from_dict(data, source=str(path))
