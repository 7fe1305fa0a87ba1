"""Quality checks of a prompt bank: coverage, counts per form, CLIP token lengths, duplicates, empty prompts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from ..processing.tokenization import CLIP_CONTEXT_LENGTH, clip_tokenizer
from .bank import INTERPRETIVE_FORMS, PromptBank, normalize_sentence


@dataclass
class CheckReport:
    """What `check_prompt_bank` found. `problems` make the bank fail; `notes` are statistics."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, max_problems: int = 50) -> str:
        lines = [*self.notes]
        lines += [f"FAIL {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"... and {len(self.problems) - max_problems} more problems")
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def check_prompt_bank(
    bank: PromptBank,
    labels: Sequence[str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    min_per_form: int = 1,
    max_tokens: int = CLIP_CONTEXT_LENGTH,
) -> CheckReport:
    """Check `bank` against a label list and CLIP's context.

    Fails on: labels without prompts (and classes not in `labels`), fewer than `min_per_form` sentences of a
    form, views longer than `max_tokens` tokens including start and end tokens (counted with `tokenizer`, CLIP's
    own by default), a sentence used twice anywhere in the bank, and sentences that merely repeat the class name.
    """
    report = CheckReport()
    if labels is not None:
        missing = [name for name in labels if name not in bank.classes]
        extra = [name for name in bank.classes if name not in set(labels)]
        if missing:
            report.problems.append(f"{len(missing)} label(s) without prompts: {missing[:10]}")
        if extra:
            report.problems.append(f"{len(extra)} class(es) not in the label list: {extra[:10]}")

    first_use: dict[str, str] = {}
    counts: dict[str, list[int]] = {form: [] for form in INTERPRETIVE_FORMS}
    for name, entry in bank.classes.items():
        for form in INTERPRETIVE_FORMS:
            sentences = entry.sentences.get(form, [])
            counts[form].append(len(sentences))
            if len(sentences) < min_per_form:
                report.problems.append(f"{name!r}, {form}: {len(sentences)} sentence(s), need {min_per_form}")
            for sentence in sentences:
                key = normalize_sentence(sentence)
                where = f"{name!r}, {form}"
                if key in first_use:
                    report.problems.append(f"{where}: duplicate of {first_use[key]}: {sentence!r}")
                first_use.setdefault(key, where)
                if not adds_to_name(sentence, name, entry.display_name):
                    report.problems.append(f"{where}: merely repeats the class name: {sentence!r}")

    for form, values in counts.items():
        report.notes.append(
            f"{form}: {sum(values)} sentences, {min(values)}-{max(values)} per class (mean {sum(values) / len(values):.1f})"
        )
    report.notes.insert(0, f"{bank.dataset}: {len(bank.classes)} classes, {len(bank.templates)} templates")

    tokenizer = clip_tokenizer() if tokenizer is None else tokenizer
    lengths = Counter()
    for name in bank.classes:
        for view in bank.views(name):
            length = len(tokenizer(view)["input_ids"])
            lengths[length > max_tokens] += 1
            if length > max_tokens:
                report.problems.append(f"{name!r}: {length} tokens > {max_tokens}: {view[:70]!r}")
    report.notes.append(
        f"token lengths: {lengths[False]} views fit {max_tokens} tokens, {lengths[True]} do not"
    )
    return report


# Words that add nothing to a class name: "A person is doing archery." says no more than "archery".
_FILLER_WORDS = frozenset(
    "a an the is are was be being doing does do did performing performs perform person people someone "
    "somebody man woman men women human he she they it this that video clip action of in on at and with "
    "his her their its here there shown seen".split()
)


def adds_to_name(sentence: str, class_name: str, display_name: str) -> bool:
    """Whether `sentence` says more than the class name: at least two words beyond the name and fillers."""
    name_words = set(normalize_sentence(f"{class_name} {display_name}").split())
    return len(set(normalize_sentence(sentence).split()) - name_words - _FILLER_WORDS) >= 2
