"""Quality checks of a prompt bank, mechanical stand-ins for a careful reader.

A bank at the paper's standard has, for every class, five prompts of each interpretive form that fit CLIP's
context, each one sentence; a display name that reads as an action in the templates ("The man is {}."); synonym
prompts that say the action in other words; prompts that differ from each other in content, not only in order;
and no action name of another class where only this class's action belongs. `check_prompt_bank` runs every
check over a bank; `sentence_problems` and `near_duplicate` are the per-sentence rules, which the generator
applies to each candidate so that what it writes passes the check.

Words are compared as *content words*: lower case, stemmed crudely (`shoots`, `shooting` -> `shoot`), without
the filler words that any description of any action uses (articles, pronouns, prepositions, "person", ...).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from ..processing.tokenization import CLIP_CONTEXT_LENGTH, clip_tokenizer
from .bank import INTERPRETIVE_FORMS, ClassPrompts, PromptBank, display_name, normalize_sentence

# The paper's setting: three forms of five prompts each per class.
STANDARD_PER_FORM = 5
# Two prompts of one class whose content-word sets overlap this much (Jaccard) say the same thing.
NEAR_DUPLICATE_OVERLAP = 0.5
# A phrase is rare when it occurs in the prompts of at most this share of the bank's classes (and at least 2).
RARE_PHRASE_SHARE = 0.01

# Words that add nothing to a class name: "A person is doing archery." says no more than "archery".
_FILLER_WORDS = frozenset(
    "a an the is are was were be been being am doing does do did done performing performs perform person "
    "people someone somebody man woman men women human he she they it its this that these those video clip "
    "action of in on at and or but with without his her their them him hers here there shown seen to from "
    "into onto over under up down out off by for as so then than while when until each one two both some any "
    "all other another again also just very too not no only who which what where how its itself themselves "
    "himself herself something thing things through across around behind after before toward towards about above "
    "below between against along away onto upon within beside near next like".split()
)
# Words of five letters or more that end in -ing without being verbs.
_ING_NOUNS = frozenset(
    "something anything nothing everything things string strings spring springs sling swing swings sting "
    "bring ceiling ceilings morning evening pudding buildings clothing wedding herring dumpling "
    "dumplings awning earring earrings lightning railing railings sibling duckling viking "
    "kingdom during".split()
)
_SENTENCE_BREAK = re.compile(r"[.!?;]\s+[A-Z]")


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


def stem(word: str) -> str:
    """A crude stem that folds the inflections prompts use: `plays`/`playing`/`played` -> `play`,
    `drumming` -> `drum`, `dances`/`dancing` -> `danc`."""
    for suffix in ("ing", "ed", "es", "s"):
        # "speed" and "bed" are not past tenses: a stem keeps four letters after "ed", three after the rest.
        if word.endswith(suffix) and len(word) - len(suffix) >= (4 if suffix == "ed" else 3):
            word = word[: -len(suffix)]
            if suffix in ("ing", "ed") and len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word


def _words(text: str) -> list[str]:
    # Single letters are the remains of possessives and contractions ("one's" -> "one s").
    return [word for word in normalize_sentence(text).split() if len(word) > 1]


def content_words(text: str) -> frozenset[str]:
    """The stemmed words of `text` that are not fillers."""
    return frozenset(stem(word) for word in _words(text) if word not in _FILLER_WORDS)


def has_action_verb(display: str) -> bool:
    """Whether a display name reads as an action: it holds an -ing verb ("doing a cartwheel", "moving left")."""
    return any(len(w) >= 5 and w.endswith("ing") and w not in _ING_NOUNS for w in _words(display))


def action_terms(class_name: str, display: str) -> frozenset[str]:
    """The names by which a class's action is called: its label (without parentheses), each parenthesised
    alternative name ("Twisting (wringing) something..." -> "wringing"), and its display name."""
    alternatives = [
        text for text in re.findall(r"\(([^)]*)\)", class_name) if not text.strip().lower().startswith("not ")
    ]
    label = display_name(re.sub(r"\([^)]*\)", " ", class_name))
    terms = {normalize_sentence(text) for text in (label, display, *alternatives)}
    # A name made only of filler words ("something") would match any sentence.
    return frozenset(term for term in terms if term and not set(term.split()) <= _FILLER_WORDS)


def synonym_reuse_limit(name_words: frozenset[str]) -> int:
    """How many of the class name's content words a synonym prompt may reuse: none of a one-word name, else
    at most half (at least one: an object such as "piano" may be unavoidable)."""
    return 0 if len(name_words) <= 1 else max(1, len(name_words) // 2)


def sentence_problems(
    sentence: str,
    form: str,
    class_name: str,
    display: str,
    other_terms: Mapping[str, Iterable[str]] = {},  # noqa: B006 (read only)
) -> list[str]:
    """What is wrong with one prompt of one class, on its own: several sentences in one, a prompt that only
    repeats the class name, and for synonyms, the class name's own words or another class's action name.

    Args:
        sentence: the prompt.
        form: its interpretive form.
        class_name, display: the class's label and display name.
        other_terms: other class -> its `action_terms`, the names synonyms must not use.
    """
    problems = []
    if _SENTENCE_BREAK.search(sentence.strip()):
        problems.append("more than one sentence")
    if not adds_to_name(sentence, class_name, display):
        problems.append("merely repeats the class name")
    if form == "synonyms":
        name_words = content_words(display_name(re.sub(r"\([^)]*\)", " ", class_name)))
        reused = sorted(content_words(sentence) & name_words)
        if len(reused) > synonym_reuse_limit(name_words):
            problems.append(f"synonym repeats the class name's words {reused}")
        own_text = f" {' | '.join(action_terms(class_name, display))} "
        text = f" {normalize_sentence(sentence)} "
        for other, terms in other_terms.items():
            for term in terms:
                # A term inside this class's own name ("climb" for "climb stairs") is this class's word too.
                if other != class_name and f" {term} " in text and f" {term} " not in own_text:
                    problems.append(f"synonym uses {term!r}, the name of class {other!r}")
    return problems


def overlap(a: str, b: str) -> float:
    """Jaccard overlap of the content words of two prompts."""
    words_a, words_b = content_words(a), content_words(b)
    union = words_a | words_b
    return len(words_a & words_b) / len(union) if union else 1.0


def near_duplicate(a: str, b: str) -> bool:
    """Whether two prompts of one class say nearly the same thing (content-word overlap >= 0.5)."""
    return overlap(a, b) >= NEAR_DUPLICATE_OVERLAP


def phrases(sentence: str) -> set[str]:
    """The three-word sequences of a prompt with at least two content words: the phrases that, repeated
    within a class, make its prompts monotonous ("tinkling the ivories"; not "the person is")."""
    words = _words(sentence)
    return {
        " ".join(words[i : i + 3])
        for i in range(len(words) - 2)
        if sum(word not in _FILLER_WORDS for word in words[i : i + 3]) >= 2
    }


def _prompts(entry: ClassPrompts) -> list[tuple[str, str]]:
    return [(form, sentence) for form in INTERPRETIVE_FORMS for sentence in entry.sentences.get(form, [])]


def skeleton(sentence: str) -> str:
    """A prompt's structure: its filler words in order, each run of content words folded to `_`."""
    shape = [word if word in _FILLER_WORDS else "_" for word in _words(sentence)]
    return " ".join(word for i, word in enumerate(shape) if word != "_" or i == 0 or shape[i - 1] != "_")


def check_prompt_bank(
    bank: PromptBank,
    labels: Sequence[str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    min_per_form: int = STANDARD_PER_FORM,
    max_tokens: int = CLIP_CONTEXT_LENGTH,
) -> CheckReport:
    """Check `bank` against a label list, CLIP's context and the paper's standard.

    Fails on:

    * coverage: labels without prompts, classes not in `labels`;
    * count: fewer than `min_per_form` prompts of a form (classes with templates only are exempt);
    * length: views longer than `max_tokens` tokens including start and end tokens (counted with `tokenizer`,
      CLIP's own by default);
    * display names without an -ing verb, which make templates such as "The man is {}." ungrammatical;
    * a prompt used twice anywhere in the bank, a prompt of several sentences, one that merely repeats the
      class name;
    * synonyms that reuse the class name's words (`synonym_reuse_limit`) or name another class's action
      (`action_terms`);
    * two prompts of one class that are near-duplicates (`near_duplicate`);
    * the same rare phrase (`phrases`, in at most 1 % of the classes) in two prompts of one class, unless it
      is made of the class name's words.
    """
    report = CheckReport()
    if labels is not None:
        missing = [name for name in labels if name not in bank.classes]
        extra = [name for name in bank.classes if name not in set(labels)]
        if missing:
            report.problems.append(f"{len(missing)} label(s) without prompts: {missing[:10]}")
        if extra:
            report.problems.append(f"{len(extra)} class(es) not in the label list: {extra[:10]}")

    terms = {name: action_terms(name, entry.display_name) for name, entry in bank.classes.items()}
    phrase_classes = Counter(
        phrase
        for entry in bank.classes.values()
        for phrase in set().union(*(phrases(s) for _, s in _prompts(entry)))
    )
    rare_limit = max(2, math.floor(RARE_PHRASE_SHARE * len(bank.classes)))

    first_use: dict[str, str] = {}
    counts: dict[str, list[int]] = {form: [] for form in INTERPRETIVE_FORMS}
    for name, entry in bank.classes.items():
        if not has_action_verb(entry.display_name):
            report.problems.append(f"{name!r}: display name {entry.display_name!r} has no -ing verb")
        has_forms = any(form in entry.sentences for form in INTERPRETIVE_FORMS)
        for form in INTERPRETIVE_FORMS:
            sentences = entry.sentences.get(form, [])
            counts[form].append(len(sentences))
            if has_forms and len(sentences) < min_per_form:
                report.problems.append(f"{name!r}, {form}: {len(sentences)} sentence(s), need {min_per_form}")
            for sentence in sentences:
                key = normalize_sentence(sentence)
                where = f"{name!r}, {form}"
                if key in first_use:
                    report.problems.append(f"{where}: duplicate of {first_use[key]}: {sentence!r}")
                first_use.setdefault(key, where)
                for problem in sentence_problems(sentence, form, name, entry.display_name, terms):
                    report.problems.append(f"{where}: {problem}: {sentence!r}")
        report.problems += _within_class_problems(name, entry, phrase_classes, rare_limit)

    report.notes.insert(0, f"{bank.dataset}: {len(bank.classes)} classes, {len(bank.templates)} templates")
    for form, values in counts.items():
        sentences = [s for entry in bank.classes.values() for s in entry.sentences.get(form, [])]
        if not sentences:
            continue
        skeletons = len({skeleton(s) for s in sentences})
        report.notes.append(
            f"{form}: {sum(values)} prompts, {min(values)}-{max(values)} per class "
            f"(mean {sum(values) / len(values):.1f}), distinct skeletons {skeletons / len(sentences):.0%}"
        )

    tokenizer = clip_tokenizer() if tokenizer is None else tokenizer
    too_long = 0
    prompt_lengths = []
    for name in bank.classes:
        views = bank.views(name)
        lengths = [len(ids) for ids in tokenizer(views)["input_ids"]]
        prompt_lengths += lengths[len(bank.templates) :]
        for view, length in zip(views, lengths, strict=True):
            if length > max_tokens:
                too_long += 1
                report.problems.append(f"{name!r}: {length} tokens > {max_tokens}: {view[:70]!r}")
    if prompt_lengths:
        report.notes.append(
            f"prompt lengths: {min(prompt_lengths)}-{max(prompt_lengths)} tokens "
            f"(mean {sum(prompt_lengths) / len(prompt_lengths):.1f}); {too_long} view(s) over {max_tokens}"
        )
    report.notes.append(f"flagged items: {len(report.problems)}")
    return report


def _within_class_problems(
    name: str, entry: ClassPrompts, phrase_classes: Counter, rare_limit: int
) -> list[str]:
    """Near-duplicate prompts and repeated rare phrases inside one class."""
    problems = []
    prompts = _prompts(entry)
    name_words = content_words(f"{display_name(name)} {entry.display_name}")
    for i, (form_a, a) in enumerate(prompts):
        for form_b, b in prompts[i + 1 :]:
            if near_duplicate(a, b):
                problems.append(
                    f"{name!r}: near-duplicates ({overlap(a, b):.0%} shared words): {form_a} {a!r} / {form_b} {b!r}"
                )
    uses = Counter(phrase for _, sentence in prompts for phrase in phrases(sentence))
    for phrase, count in uses.items():
        if count > 1 and phrase_classes[phrase] <= rare_limit and not content_words(phrase) <= name_words:
            problems.append(f"{name!r}: the phrase {phrase!r} recurs in {count} prompts")
    return problems


def adds_to_name(sentence: str, class_name: str, display_name: str) -> bool:
    """Whether `sentence` says more than the class name: at least two words beyond the name and fillers."""
    name_words = set(normalize_sentence(f"{class_name} {display_name}").split())
    return len(set(normalize_sentence(sentence).split()) - name_words - _FILLER_WORDS) >= 2
