"""LLM prompt generation: post-processing, few-shot prompts, both backends, resumable bank writing.

The transformers backend runs a tiny random GPT-2 built here; the endpoint backend talks to a small
HTTP server on 127.0.0.1. Nothing is downloaded.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from claver_hf.prompts.bank import ALL_FORMS, INTERPRETIVE_FORMS, PromptBank, load_prompt_bank
from claver_hf.prompts.check import adds_to_name, check_prompt_bank
from claver_hf.prompts.generate import (
    FEW_SHOT,
    MAX_ATTEMPTS,
    EndpointCompleter,
    PromptGenerationError,
    TransformersCompleter,
    build_prompt,
    clean_completions,
    generate_prompt_bank,
    truncate_to_tokens,
)

# A status and a JSON body (or raw text) for one request's payload.
Responder = Callable[[dict[str, Any]], tuple[int, Any]]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment must not intercept the requests to the local test server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def varied(key: object) -> str:
    """A sentence that passes the checks beside any other `varied` sentence: its content words are its own."""
    return f"Movement {key} bends joint{key} while limb{key} reaches toward place{key}."


def completions_body(payload: dict[str, Any], start: int = 0, texts: Iterable[str] = ()) -> dict[str, Any]:
    """An OpenAI-style completions response: `texts`, then distinct sentences numbered from `start` up to `n`."""
    texts = list(texts)
    texts += [f" {varied(start + i)}" for i in range(payload["n"] - len(texts))]
    return {
        "object": "text_completion",
        "choices": [{"index": i, "text": text, "finish_reason": "stop"} for i, text in enumerate(texts)],
    }


def counting_responder() -> Responder:
    """A responder whose sentences never repeat across requests."""
    counter = iter(range(0, 10**6, 100))
    return lambda payload: (200, completions_body(payload, next(counter)))


@contextmanager
def serve_completions(responder: Responder) -> Iterator[ThreadingHTTPServer]:
    """An OpenAI-style completions server on an ephemeral 127.0.0.1 port; `server.requests` records
    `(path, headers, payload)` of every request and `server.url` is its base URL."""
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, dict(self.headers), payload))
            status, body = responder(payload)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.requests = requests
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Display names with verbs, as the check wants, for labels that have none.
ACTIONS = {"Archery": "practising archery", "HighJump": "doing the high jump"}


class FakeCompleter:
    """Returns `n` sentences never returned before (with the tail a base LM writes), and records the
    prompts; raises on the prompt of class `fail_on` like a crash."""

    _calls = itertools.count()

    def __init__(self, fail_on: str | None = None):
        self.prompts: list[str] = []
        self.fail_on = fail_on

    def complete(self, prompt: str, n: int) -> list[str]:
        if self.fail_on and prompt.endswith(f"\n{self.fail_on} =>"):
            raise RuntimeError("simulated crash")
        self.prompts.append(prompt)
        k = next(self._calls)
        return [f' "{varied(f"{k}x{i}")}"\nplaying guitar => more' for i in range(n)]


# --- post-processing ---------------------------------------------------------------------------------


def test_clean_completions_cuts_strips_and_dedupes():
    raw = [
        " The arms swing forward.\nlong jump => A person runs",
        ' "The legs push off the ground." => next',
        "  'the arms swing forward'  ",  # a repeat once case and punctuation are folded
        "\nonly a new line",
        "   ",
        "“Curly quotes around it.”",
        "...",
    ]
    assert clean_completions(raw) == [
        "The arms swing forward.",
        "The legs push off the ground.",
        "Curly quotes around it.",
    ]


def test_truncate_to_clip_context(clip_tokenizer, caplog):
    long = " ".join(["the athlete sprints along the track and jumps"] * 20)
    with caplog.at_level(logging.WARNING, logger="claver_hf.prompts.generate"):
        cut = truncate_to_tokens(long, clip_tokenizer)
    assert long.startswith(cut) and len(cut) < len(long)
    assert long[len(cut)] == " ", "cut inside a word"
    assert len(clip_tokenizer(cut)["input_ids"]) <= 77
    # As much text as fits: one more word would not.
    next_word = long[len(cut) :].split()[0]
    assert len(clip_tokenizer(f"{cut} {next_word}")["input_ids"]) > 77
    assert "cut to 77 tokens" in caplog.text

    short = "A person sprints and jumps."
    assert truncate_to_tokens(short, clip_tokenizer) == short
    assert clean_completions([f" {long}\nnext"], clip_tokenizer) == [cut]


def test_adds_to_name():
    assert not adds_to_name("A person is doing the high jump.", "HighJump", "high jump")
    assert not adds_to_name("High jumping", "HighJump", "high jump")
    assert adds_to_name("Leaping over a raised bar.", "HighJump", "high jump")


# --- few-shot prompts --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ALL_FORMS)
def test_build_prompt(form, clip_tokenizer):
    lines = build_prompt("playing guitar", form).split("\n")
    assert len(lines) == 5
    assert lines[0] == FEW_SHOT[form].instruction and "=>" not in lines[0]
    assert [line.split(" => ")[0] for line in lines[1:4]] == ["high jump", "brushing teeth", "riding a bike"]
    assert lines[4] == "playing guitar =>"
    # The hand-written examples are what the LM imitates: each must be a sentence the bank accepts.
    for name, text in FEW_SHOT[form].examples:
        assert adds_to_name(text, name, name)
        assert clean_completions([f" {text}\n"], clip_tokenizer) == [text]


# --- generate_prompt_bank ----------------------------------------------------------------------------


def test_generate_writes_a_valid_bank(tmp_path):
    completer = FakeCompleter()
    output = tmp_path / "bank.json"
    bank = generate_prompt_bank(
        ["HighJump", "brush_hair"],
        completer,
        output,
        dataset="toy",
        samples_per_form=3,
        progress=False,
        display_names={"HighJump": "doing the high jump"},
    )
    assert len(completer.prompts) == 2 * len(INTERPRETIVE_FORMS)
    assert completer.prompts[0].endswith("\ndoing the high jump =>") and completer.prompts[-1].endswith(
        "\nbrush hair =>"
    )
    saved = load_prompt_bank(output)
    assert saved.to_dict() == bank.to_dict()
    assert saved.class_names == ["HighJump", "brush_hair"]
    assert saved.classes["HighJump"].display_name == "doing the high jump"
    sentences = saved.classes["HighJump"].sentences["body_parts"]
    assert len(sentences) == 3 and all(s.startswith("Movement ") and s.endswith(".") for s in sentences)
    report = check_prompt_bank(saved, labels=["HighJump", "brush_hair"], min_per_form=3)
    # The one problem the generator cannot fix: a display name without a verb, which it reported.
    assert report.problems == ["'brush_hair': display name 'brush hair' has no -ing verb"]


def test_resume_after_a_crash(tmp_path):
    labels = ["Archery", "HighJump", "Surfing"]
    output = tmp_path / "bank.json"
    first = FakeCompleter(fail_on="surfing")
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_prompt_bank(
            labels, first, output, dataset="toy", samples_per_form=2, progress=False, display_names=ACTIONS
        )
    # The file holds every class finished before the crash, and is a valid bank.
    assert load_prompt_bank(output).class_names == ["Archery", "HighJump"]
    before = load_prompt_bank(output).to_dict()["classes"]

    snapshots: list[list[str]] = []

    class Watching(FakeCompleter):
        def complete(self, prompt: str, n: int) -> list[str]:
            snapshots.append(load_prompt_bank(output).class_names)
            return super().complete(prompt, n)

    second = Watching()
    bank = generate_prompt_bank(
        labels, second, output, dataset="toy", samples_per_form=2, progress=False, display_names=ACTIONS
    )
    assert len(second.prompts) == len(INTERPRETIVE_FORMS)
    assert all(prompt.endswith("\nsurfing =>") for prompt in second.prompts)
    assert snapshots == [["Archery", "HighJump"]] * len(INTERPRETIVE_FORMS)
    assert bank.class_names == labels
    assert {name: bank.to_dict()["classes"][name] for name in before} == before
    assert check_prompt_bank(load_prompt_bank(output), labels=labels, min_per_form=2).ok


def test_resume_adds_missing_forms_and_keeps_unreached_classes(tmp_path):
    output = tmp_path / "bank.json"
    generate_prompt_bank(["Archery", "Surfing"], FakeCompleter(), output, dataset="toy", progress=False)
    completer = FakeCompleter(fail_on="surfing")
    with pytest.raises(RuntimeError):
        generate_prompt_bank(
            ["Archery", "Surfing"], completer, output, dataset="toy", forms=ALL_FORMS, progress=False
        )
    assert len(completer.prompts) == 1 and completer.prompts[0].startswith(FEW_SHOT["scene"].instruction)
    saved = load_prompt_bank(output)
    # Surfing was not reached: the write after Archery kept it.
    assert saved.class_names == ["Archery", "Surfing"]
    assert list(saved.classes["Archery"].sentences) == list(ALL_FORMS)
    assert "scene" not in saved.classes["Surfing"].sentences


def test_refuses_to_overwrite_another_label_set(tmp_path):
    output = tmp_path / "bank.json"
    generate_prompt_bank(["Archery"], FakeCompleter(), output, dataset="toy", progress=False)
    with pytest.raises(PromptGenerationError, match="not in the labels"):
        generate_prompt_bank(["Surfing"], FakeCompleter(), output, dataset="toy", progress=False)
    assert load_prompt_bank(output).class_names == ["Archery"]


def test_samples_again_until_the_form_is_full(tmp_path):
    class OneNewPerRound:
        """One new sentence per request, the rest repeats of it: a form fills one sentence per round."""

        calls = 0

        def complete(self, prompt: str, n: int) -> list[str]:
            self.calls += 1
            return [f" {varied(self.calls)}"] * n

    completer = OneNewPerRound()
    bank = generate_prompt_bank(
        ["Archery"], completer, tmp_path / "a.json", dataset="toy", samples_per_form=3, progress=False
    )
    assert completer.calls == 3 * len(INTERPRETIVE_FORMS)
    assert all(len(sentences) == 3 for sentences in bank.classes["Archery"].sentences.values())


def test_fails_when_a_form_stays_short_naming_why(tmp_path):
    class SameSentence:
        calls = 0

        def complete(self, prompt: str, n: int) -> list[str]:
            self.calls += 1
            return [" The bow string is drawn back to the cheek and released."] * n

    completer = SameSentence()
    with pytest.raises(
        PromptGenerationError, match=r"Only 1 of 3 usable 'decomposition'.*used before in the bank"
    ):
        generate_prompt_bank(["Archery"], completer, tmp_path / "a.json", dataset="toy", samples_per_form=3)
    assert completer.calls == MAX_ATTEMPTS


def test_fails_naming_class_and_form_without_usable_text(tmp_path):
    class NameOnly:
        calls = 0

        def complete(self, prompt: str, n: int) -> list[str]:
            self.calls += 1
            return [" Archery.\n", "\n", ' ""'] * n

    completer = NameOnly()
    output = tmp_path / "bank.json"
    with pytest.raises(PromptGenerationError, match=r"'decomposition'.*'Archery'"):
        generate_prompt_bank(["Archery"], completer, output, dataset="toy", progress=False)
    assert completer.calls == MAX_ATTEMPTS
    assert not output.exists()


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="include"):
        generate_prompt_bank(["A"], FakeCompleter(), tmp_path / "b.json", dataset="x", forms=["scene"])
    with pytest.raises(ValueError, match="distinct"):
        generate_prompt_bank(["A", "A"], FakeCompleter(), tmp_path / "b.json", dataset="x")


# --- transformers backend ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A random 1-layer GPT-2 with a word-level tokenizer over the few-shot prompts' words, saved like a
    Hub model."""
    path = tmp_path_factory.mktemp("tiny_lm")
    pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [build_prompt(name, form) for name in ("archery", "surfing") for form in ALL_FORMS]
    words = sorted({word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(text)})
    vocab = {token: i for i, token in enumerate(["<unk>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizer
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>").save_pretrained(
        path
    )
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=256, n_layer=1, n_head=2, n_embd=32, bos_token_id=1, eos_token_id=1
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture
def one_thread():
    # Tiny matrices gain nothing from threads, and on a busy machine waiting threads slow each of the
    # hundreds of generation steps down a lot.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_transformers_completer_end_to_end(tiny_lm, one_thread, tmp_path, monkeypatch):
    completer = TransformersCompleter(tiny_lm, device="cpu")
    calls: list[dict[str, Any]] = []
    generate = completer.model.generate

    def spy(**kwargs: Any):
        calls.append(kwargs)
        return generate(**kwargs)

    monkeypatch.setattr(completer.model, "generate", spy)
    labels = ["Archery", "Surfing"]
    output = tmp_path / "bank.json"
    bank = generate_prompt_bank(labels, completer, output, dataset="toy", samples_per_form=2, progress=False)

    saved = PromptBank.from_dict(json.loads(output.read_text()), source=str(output))
    assert saved.class_names == labels and saved.to_dict() == bank.to_dict()
    for name in labels:
        for form in INTERPRETIVE_FORMS:
            assert 1 <= len(saved.classes[name].sentences[form]) <= 2
    assert len(calls) >= len(labels) * len(INTERPRETIVE_FORMS)
    for kwargs in calls:
        assert kwargs["do_sample"] is True
        assert (kwargs["temperature"], kwargs["top_p"]) == (0.9, 0.95)
        assert (kwargs["max_new_tokens"], kwargs["num_return_sequences"]) == (77, 2)
        assert kwargs["pad_token_id"] == 1


def test_transformers_completer_returns_new_text_only(tiny_lm, one_thread):
    completer = TransformersCompleter(tiny_lm, device="cpu")
    prompt = build_prompt("archery", "synonyms")
    texts = completer.complete(prompt, 3)
    assert len(texts) == 3
    assert not any(text.startswith("Say the same") for text in texts)


# --- endpoint backend --------------------------------------------------------------------------------


def test_endpoint_completer_retries_a_server_error():
    replies = iter([(500, "model is loading")])

    def responder(payload):
        return next(replies, None) or (200, completions_body(payload))

    with serve_completions(responder) as server:
        completer = EndpointCompleter(server.url, model="llama-3-8b", api_key="secret", backoff=0.01)
        texts = completer.complete("Describe.\nhigh jump =>", 4)
    assert texts == [f" {varied(i)}" for i in range(4)]
    assert len(server.requests) == 2
    path, headers, payload = server.requests[-1]
    assert path == "/v1/completions"
    assert headers["Authorization"] == "Bearer secret"
    assert payload == {
        "model": "llama-3-8b",
        "prompt": "Describe.\nhigh jump =>",
        "max_tokens": 77,
        "temperature": 0.9,
        "top_p": 0.95,
        "n": 4,
        "stop": ["\n", "=>"],
    }


def test_endpoint_generates_a_bank(tmp_path):
    with serve_completions(counting_responder()) as server:
        completer = EndpointCompleter(f"{server.url}/v1", backoff=0.01)
        bank = generate_prompt_bank(
            ["Archery", "Surfing"],
            completer,
            tmp_path / "bank.json",
            dataset="toy",
            progress=False,
            display_names=ACTIONS,
        )
    assert len(server.requests) == 2 * len(INTERPRETIVE_FORMS)
    assert all("model" not in payload and payload["n"] == 5 for _, _, payload in server.requests)
    assert all(
        len(entry.sentences[form]) == 5 for entry in bank.classes.values() for form in INTERPRETIVE_FORMS
    )
    assert check_prompt_bank(load_prompt_bank(tmp_path / "bank.json"), min_per_form=5).ok


def test_endpoint_with_good_and_bad_answers_writes_a_bank_that_passes_the_check(tmp_path):
    # The kinds of answer the check fails, for the forms they apply to.
    bad = {
        "synonyms": [
            " Surfing on big waves at the beach.",  # repeats the one-word class name
            " A rider stands and balances on a board. The wave breaks behind.",  # two sentences
            " Someone is practising archery on the sand.",  # the name of another class
        ],
        "decomposition": [" Archery.", " A person is doing archery."],  # only the class name
    }
    counter = itertools.count()

    def responder(payload):
        form = next(
            form for form in INTERPRETIVE_FORMS if payload["prompt"].startswith(FEW_SHOT[form].instruction)
        )
        start = next(counter) * 10
        # A good answer, a near-duplicate of it, the bad ones of the form, then further good ones.
        texts = [f" {varied(start)}", f" {varied(start)[:-1]} again.", *bad.get(form, [])]
        return 200, completions_body(payload, start + 1, texts[: payload["n"]])

    labels = ["Archery", "Surfing"]
    with serve_completions(responder) as server:
        completer = EndpointCompleter(server.url, backoff=0.01)
        bank = generate_prompt_bank(
            labels, completer, tmp_path / "bank.json", dataset="toy", progress=False, display_names=ACTIONS
        )
    # Bad answers cost further rounds.
    assert len(server.requests) > len(labels) * len(INTERPRETIVE_FORMS)
    report = check_prompt_bank(load_prompt_bank(tmp_path / "bank.json"), labels=labels)
    assert report.ok, report.format()
    sentences = [s for entry in bank.classes.values() for ss in entry.sentences.values() for s in ss]
    assert len(sentences) == 2 * 3 * 5
    assert not any(s.strip() in {b.strip() for bs in bad.values() for b in bs} for s in sentences)
    assert not any(s.endswith("again.") for s in sentences)


def test_endpoint_persistent_failure_names_the_url():
    with serve_completions(lambda payload: (503, "overloaded")) as server:
        completer = EndpointCompleter(server.url, retries=2, backoff=0.01)
        with pytest.raises(PromptGenerationError) as error:
            completer.complete("x =>", 1)
    assert len(server.requests) == 3
    message = str(error.value)
    assert f"{server.url}/v1/completions" in message and "503" in message and "overloaded" in message


def test_endpoint_client_error_is_not_retried():
    with serve_completions(lambda payload: (400, {"error": "unknown model"})) as server:
        with pytest.raises(PromptGenerationError, match="HTTP 400.*unknown model"):
            EndpointCompleter(server.url, backoff=0.01).complete("x =>", 1)
    assert len(server.requests) == 1


def test_endpoint_malformed_response():
    with serve_completions(lambda payload: (200, {"result": "no choices"})) as server:
        with pytest.raises(PromptGenerationError, match="Malformed.*no choices"):
            EndpointCompleter(server.url).complete("x =>", 1)


def test_endpoint_unreachable():
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/completions"
    with pytest.raises(PromptGenerationError, match=f"Cannot reach {url}.*2 attempts"):
        EndpointCompleter(url, retries=1, backoff=0.01, timeout=5).complete("x =>", 1)
