"""Interpretive prompts written by a language model, following the reference recipe (docs/text-bank.md).

A base (not chat) LM completes a few-shot prompt per class and form::

    <instruction line>
    high jump => <example>
    brushing teeth => <example>
    riding a bike => <example>
    <class display name> =>

sampling with temperature 0.9 and top-p 0.95, at most 77 new tokens, 5 samples per class and form (the three
forms x 5 of the paper). Each completion is cut at its first line break or `=>` (where a base LM starts the next
example), stripped of quotes, cut to CLIP's 77-token context with a tokenizer, and kept only if it passes the
checks of `claver-hf prompts check` that apply to one prompt (`sentence_problems`: one sentence, more than the
class name, synonyms in other words than the name and without another class's action name), is new to the
bank, and is neither a near-duplicate of nor shares a phrase with a prompt already kept for the class. A form
short of its prompts is sampled again, so that what is written passes the check.

Two backends share the `Completer` interface: `TransformersCompleter` runs any causal LM locally,
`EndpointCompleter` asks an OpenAI-compatible ``/v1/completions`` server (vLLM, llama.cpp, TGI, ...).
`generate_prompt_bank` writes the bank after every class and resumes an interrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from .bank import (
    ALL_FORMS,
    INTERPRETIVE_FORMS,
    ClassPrompts,
    PromptBank,
    display_name,
    load_prompt_bank,
    normalize_sentence,
)
from .check import (
    CLIP_CONTEXT_LENGTH,
    action_terms,
    content_words,
    has_action_verb,
    near_duplicate,
    phrases,
    sentence_problems,
)
from .templates import TEMPLATES

logger = logging.getLogger(__name__)

TEMPERATURE = 0.9
TOP_P = 0.95
MAX_NEW_TOKENS = 77
DEFAULT_SAMPLES_PER_FORM = 5
# Rounds of sampling per class and form before giving up on a form short of usable sentences.
MAX_ATTEMPTS = 6
# Where a base LM ends one answer and begins the next few-shot line.
STOP_STRINGS = ("\n", "=>")
_QUOTES = "\"'`“”‘’"


class PromptGenerationError(RuntimeError):
    """Prompt generation failed: an unreachable or misbehaving backend, or a class without usable text."""


@dataclass(frozen=True)
class FewShot:
    """The few-shot prompt of one form: an instruction line and `(display name, text)` examples."""

    instruction: str
    examples: tuple[tuple[str, str], ...]


FEW_SHOT: dict[str, FewShot] = {
    "decomposition": FewShot(
        "Describe how each action unfolds, step by step, in one sentence; five different descriptions per action.",
        (
            (
                "high jump",
                "A person runs toward the bar in a curve, takes off from one foot, arches the back over "
                "the bar and lands on the mat.",
            ),
            (
                "brushing teeth",
                "A person squeezes toothpaste onto a toothbrush, scrubs the teeth back and forth, then "
                "spits and rinses the mouth.",
            ),
            (
                "riding a bike",
                "A person sits on the saddle, pushes the pedals round with the feet and steers the "
                "handlebars to keep balance.",
            ),
        ),
    ),
    "body_parts": FewShot(
        "Describe which parts of the body move during each action and how, in one sentence; five different ones.",
        (
            (
                "high jump",
                "The legs sprint and push off the ground, the arms swing upward and the back arches "
                "over the bar.",
            ),
            (
                "brushing teeth",
                "One hand moves the toothbrush in small circles while the mouth stays open and the "
                "head bends over the sink.",
            ),
            (
                "riding a bike",
                "The feet turn the pedals in circles, the hands grip the handlebars and the torso "
                "leans forward.",
            ),
        ),
    ),
    "synonyms": FewShot(
        "Say what each action is with other verbs and words than its name, in one sentence; five different ones.",
        (
            ("high jump", "Leaping over a raised horizontal bar in an athletics event."),
            ("brushing teeth", "Cleaning one's mouth with a toothbrush and toothpaste."),
            ("riding a bike", "Cycling along the road on a bicycle."),
        ),
    ),
    "scene": FewShot(
        "Describe the place and the objects typically seen around each action, in one sentence.",
        (
            (
                "high jump",
                "An athletics stadium with a running track, a bar between two uprights and a thick "
                "landing mat.",
            ),
            ("brushing teeth", "A bathroom with a sink, a mirror, a tap and a cup holding toothbrushes."),
            ("riding a bike", "A street or a park path with trees, parked cars and other cyclists."),
        ),
    ),
}


def build_prompt(display: str, form: str, few_shot: Mapping[str, FewShot] = FEW_SHOT) -> str:
    """The few-shot completion prompt for one class display name and form (see the module docstring)."""
    shot = few_shot[form]
    lines = [shot.instruction, *(f"{name} => {text}" for name, text in shot.examples)]
    # No space after the last `=>`: BPE vocabularies attach the space to the next word, so a trailing
    # space would push the LM off its usual tokenisation.
    return "\n".join([*lines, f"{display} =>"])


def truncate_to_tokens(
    text: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int = CLIP_CONTEXT_LENGTH
) -> str:
    """`text` cut so that it fits `max_tokens` tokens including the tokenizer's special tokens.

    The cut falls after the last whole word that fits (inside the word only if the first word alone is
    too long); a cut is logged as a warning.
    """
    budget = max_tokens - tokenizer.num_special_tokens_to_add()
    if tokenizer.is_fast:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoding["input_ids"]) <= budget:
            return text
        end = encoding["offset_mapping"][budget - 1][1]
        # Tokens split words: back off to the last space rather than keep half a word.
        if end < len(text) and not text[end].isspace() and " " in text[:end]:
            end = text.rindex(" ", 0, end)
        cut = text[:end].rstrip(" ,;:-")
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return text
        cut = tokenizer.decode(ids[:budget], skip_special_tokens=True).strip()
    logger.warning("Prompt cut to %d tokens: %r -> %r", max_tokens, text, cut)
    return cut


def clean_completions(
    completions: Iterable[str],
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_tokens: int = CLIP_CONTEXT_LENGTH,
) -> list[str]:
    """The usable sentences of raw completions, in order.

    Each completion is cut at its first line break or `=>`, stripped of whitespace and surrounding
    quotes, and cut to `max_tokens` tokens when a `tokenizer` is given. Empty sentences and repeats (by
    `normalize_sentence`) are dropped.
    """
    seen: set[str] = set()
    kept = []
    for completion in completions:
        text = completion
        for stop in STOP_STRINGS:
            text = text.split(stop, 1)[0]
        text = text.strip().strip(_QUOTES).strip()
        if text and tokenizer is not None:
            text = truncate_to_tokens(text, tokenizer, max_tokens)
        key = normalize_sentence(text)
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


class Completer(Protocol):
    """A text-completion backend."""

    def complete(self, prompt: str, n: int) -> list[str]:
        """`n` sampled continuations of `prompt` (the new text only), with the recipe's sampling settings."""
        ...


class TransformersCompleter:
    """Completions from a local transformers causal LM (`AutoModelForCausalLM`).

    Args:
        model_name_or_path: a Hub id or a local folder with the model and its tokenizer.
        device: where to run it; default the GPU when there is one, else the CPU.
    """

    def __init__(self, model_name_or_path: str | os.PathLike, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype="auto").to(self.device)
        self.model.eval()
        # Sequences that stop early are padded up to the longest; any id the tokenizer skips will do.
        self.pad_token_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )

    @torch.inference_mode()
    def complete(self, prompt: str, n: int) -> list[str]:
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        prompt_length = inputs["input_ids"].shape[1]
        output = self.model.generate(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            do_sample=True,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            max_new_tokens=MAX_NEW_TOKENS,
            num_return_sequences=n,
            pad_token_id=self.pad_token_id,
            # Stop at the end of the answers instead of writing further few-shot lines.
            stopping_criteria=StoppingCriteriaList([_StopAfterAnswer(self.tokenizer, prompt_length)]),
        )
        return self.tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)


class _StopAfterAnswer(StoppingCriteria):
    """Ends a sample once its new text holds a stop string.

    transformers' own `stop_strings` cannot read some vocabularies (word-level ones, for instance);
    decoding the few new tokens at each step works with any tokenizer and costs little next to the LM.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        stopped = [any(stop in text for stop in STOP_STRINGS) for text in texts]
        return torch.tensor(stopped, dtype=torch.bool, device=input_ids.device)


class EndpointCompleter:
    """Completions from an OpenAI-compatible ``/v1/completions`` server, with the standard library only.

    Args:
        url: the completions URL, or the server's base URL (``http://host:8000`` or ``.../v1``), to which
            ``/v1/completions`` is appended.
        model: the served model's name; left out of requests when None (single-model servers use theirs).
        api_key: sent as a bearer token when given.
        timeout: seconds to wait for each response.
        retries: further attempts after connection errors, timeouts and 429 / 5xx responses.
        backoff: seconds before the first retry, doubled for each next one.
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        retries: int = 3,
        backoff: float = 1.0,
    ):
        if retries < 0:
            raise ValueError(f"retries must be at least 0, got {retries}.")
        url = url.rstrip("/")
        if not url.endswith("/completions"):
            url += "/completions" if url.endswith("/v1") else "/v1/completions"
        self.url = url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def complete(self, prompt: str, n: int) -> list[str]:
        payload: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": MAX_NEW_TOKENS,
            "temperature": TEMPERATURE,
            "top_p": TOP_P,
            "n": n,
            "stop": list(STOP_STRINGS),
        }
        if self.model is not None:
            payload["model"] = self.model
        body = self._post(json.dumps(payload).encode("utf-8"))
        try:
            choices = json.loads(body)["choices"]
            texts = [choice["text"] for choice in choices]
            if not all(isinstance(text, str) for text in texts):
                raise TypeError("a choice's 'text' is not a string")
        except (ValueError, KeyError, TypeError) as error:
            raise PromptGenerationError(
                f"Malformed completions response from {self.url} ({error}): {body[:500]!r}"
            ) from error
        return texts

    def _post(self, data: bytes) -> str:
        """The response body of a POST of `data`, retrying transient failures."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read().decode("utf-8", errors="replace")
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", errors="replace")[:500]
                failure = f"HTTP {error.code} from {self.url}: {text!r}"
                if error.code != 429 and error.code < 500:
                    raise PromptGenerationError(failure) from error
            # HTTPError is a URLError, so it is caught above first; this catches refused connections,
            # DNS failures and timeouts.
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                failure = f"Cannot reach {self.url}: {getattr(error, 'reason', error)}"
            if attempt < self.retries:
                delay = self.backoff * 2**attempt
                logger.warning("%s; retrying in %.1f s", failure, delay)
                time.sleep(delay)
        raise PromptGenerationError(f"{failure} (gave up after {self.retries + 1} attempts)")


def generate_prompt_bank(
    labels: Sequence[str],
    completer: Completer,
    output_path: str | os.PathLike,
    *,
    dataset: str,
    forms: Sequence[str] = INTERPRETIVE_FORMS,
    samples_per_form: int = DEFAULT_SAMPLES_PER_FORM,
    tokenizer: PreTrainedTokenizerBase | None = None,
    progress: bool = True,
    display_names: Mapping[str, str] | None = None,
    few_shot: Mapping[str, FewShot] = FEW_SHOT,
) -> PromptBank:
    """Generate the interpretive prompts of `labels` into a prompt bank file, resumably.

    For every class and form, `completer` samples `samples_per_form` completions of the few-shot prompt
    (`build_prompt`); the usable ones (`clean_completions`) are kept if they pass `sentence_problems`, are new
    to the bank, and neither are near-duplicates of nor share a phrase with the class's prompts kept so far.
    A form short of `samples_per_form` prompts is sampled again, up to `MAX_ATTEMPTS` rounds, after which
    `PromptGenerationError` names the class, the form and why the last candidates were refused.

    `output_path` is rewritten atomically after each class generated, so it is always a valid bank. Classes
    already in it keep their sentences and display name, and only their missing `forms` are generated:
    running the same call again resumes an interrupted run.

    Args:
        labels: class names, in label order (the keys of the bank).
        completer: the LM backend.
        output_path: the bank JSON to write (and resume from, when it exists).
        dataset: the bank's dataset name.
        forms: the forms to generate; must include `INTERPRETIVE_FORMS`.
        samples_per_form: sentences wanted per class and form.
        tokenizer: CLIP's tokenizer, to cut sentences to its 77-token context.
        progress: show a progress bar.
        display_names: class name -> name for the templates and the LM; default `display_name(class_name)`.
            Names without an -ing verb ("pommel horse") are logged: the check fails them.
        few_shot: the instruction and examples per form.

    Returns:
        The bank written to `output_path`.
    """
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError("labels must be a non-empty list of distinct class names.")
    unknown = [form for form in forms if form not in ALL_FORMS]
    missing = [form for form in INTERPRETIVE_FORMS if form not in forms]
    if unknown or missing:
        raise ValueError(
            f"forms must be among {list(ALL_FORMS)} and include {list(INTERPRETIVE_FORMS)}; "
            f"got {list(forms)}."
        )
    if samples_per_form < 1:
        raise ValueError(f"samples_per_form must be at least 1, got {samples_per_form}.")

    output_path = Path(output_path)
    done: dict[str, ClassPrompts] = {}
    if output_path.exists():
        done = load_prompt_bank(output_path).classes
        foreign = [name for name in done if name not in labels]
        if foreign:
            raise PromptGenerationError(
                f"{output_path} holds classes that are not in the labels ({foreign[:10]}); "
                "refusing to overwrite it. Choose another output file."
            )
    seen = {normalize_sentence(s) for entry in done.values() for ss in entry.sentences.values() for s in ss}
    names = {
        name: done[name].display_name
        if name in done
        else (display_names or {}).get(name) or display_name(name)
        for name in labels
    }
    verbless = [display for display in names.values() if not has_action_verb(display)]
    if verbless:
        logger.warning(
            "%d display name(s) have no -ing verb, so templates such as 'The man is {}.' read badly and the "
            "check fails them; give action names (e.g. 'doing a routine on a pommel horse'): %s",
            len(verbless),
            verbless[:10],
        )
    terms = {name: action_terms(name, display) for name, display in names.items()}

    finished: dict[str, ClassPrompts] = {}
    for name in tqdm(labels, desc="prompts", unit="class", disable=not progress):
        entry = done.get(name) or ClassPrompts(names[name])
        todo = [form for form in forms if form not in entry.sentences]
        for form in todo:
            entry.sentences[form] = _generate_form(
                _ClassDraft(name, entry, terms), form, completer, samples_per_form, tokenizer, seen, few_shot
            )
        entry.sentences = {form: entry.sentences[form] for form in ALL_FORMS if form in entry.sentences}
        finished[name] = entry
        if todo:
            # Classes of the old file not reached yet are written too: a crash must not lose them.
            _save_atomically(_bank_of(labels, {**done, **finished}, dataset), output_path)
    bank = _bank_of(labels, finished, dataset)
    _save_atomically(bank, output_path)
    return bank


def _bank_of(labels: Sequence[str], classes: Mapping[str, ClassPrompts], dataset: str) -> PromptBank:
    """The bank of those `labels` that have an entry in `classes`, in label order."""
    return PromptBank(dataset, list(TEMPLATES), {name: classes[name] for name in labels if name in classes})


@dataclass
class _ClassDraft:
    """A class being generated: its entry so far and the action names of the label set."""

    name: str
    entry: ClassPrompts
    terms: Mapping[str, Iterable[str]]

    def refusal(self, text: str, form: str, kept: Sequence[str]) -> str | None:
        """Why the candidate `text` cannot join the class's prompts (with `kept`, this form's so far), or None."""
        problems = sentence_problems(text, form, self.name, self.entry.display_name, self.terms)
        if problems:
            return problems[0]
        prompts = [*kept, *(s for sentences in self.entry.sentences.values() for s in sentences)]
        name_words = content_words(f"{display_name(self.name)} {self.entry.display_name}")
        for other in prompts:
            if near_duplicate(text, other):
                return f"near-duplicate of {other!r}"
            shared = [p for p in phrases(text) & phrases(other) if not content_words(p) <= name_words]
            if shared:
                return f"shares the phrase {shared[0]!r} with {other!r}"
        return None


def _generate_form(
    draft: _ClassDraft,
    form: str,
    completer: Completer,
    samples: int,
    tokenizer: PreTrainedTokenizerBase | None,
    seen: set[str],
    few_shot: Mapping[str, FewShot],
) -> list[str]:
    """`samples` new sentences of one class and form (see `generate_prompt_bank`)."""
    prompt = build_prompt(draft.entry.display_name, form, few_shot)
    kept: list[str] = []
    refused: list[str] = []
    for _ in range(MAX_ATTEMPTS):
        for text in clean_completions(completer.complete(prompt, samples), tokenizer):
            key = normalize_sentence(text)
            reason = "used before in the bank" if key in seen else draft.refusal(text, form, kept)
            if reason is not None:
                refused.append(f"{text!r}: {reason}")
            elif len(kept) < samples:
                seen.add(key)
                kept.append(text)
        if len(kept) == samples:
            return kept
    raise PromptGenerationError(
        f"Only {len(kept)} of {samples} usable {form!r} sentences for class {draft.name!r} "
        f"({draft.entry.display_name!r}) after {MAX_ATTEMPTS} rounds of {samples} samples; the last refused: "
        + "; ".join(refused[-samples:] or ["(no text in the completions)"])
    )


def _save_atomically(bank: PromptBank, path: Path) -> None:
    """Write `bank` to a temporary file beside `path`, then rename it over `path`: readers (and a resumed
    run after a crash) see the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(
            json.dumps(bank.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
