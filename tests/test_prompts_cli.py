"""`claver-hf prompts check` and `claver-hf prompts generate`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from claver_hf.cli import main
from claver_hf.prompts.bank import INTERPRETIVE_FORMS, load_prompt_bank
from claver_hf.prompts.check import check_prompt_bank
from claver_hf.prompts.templates import TEMPLATES

from .test_prompts_check import ARCHERY
from .test_prompts_generate import counting_responder, serve_completions


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment must not intercept the requests to the local test server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def write_labels(path: Path, names: list[str]) -> Path:
    path.write_text("id,name\n" + "".join(f"{i},{name}\n" for i, name in enumerate(names)))
    return path


SURFING = {
    "display_name": "surfing",
    "decomposition": [
        "A surfer lies on a board, paddles out past the breaking waves and turns to face the shore.",
        "As a swell rises behind, the rider paddles hard, pops up to standing and drops down the face.",
        "Riding along the green wall of water, the athlete carves a turn at the bottom and climbs back up.",
        "When the crest collapses, the board shoots ahead of the foam and the rider kicks out over the back.",
        "Wiping out, the swimmer tumbles under the whitewater, comes up and pulls the board back by its leash.",
    ],
    "body_parts": [
        "Both arms stroke the water in alternating paddles while the chest stays raised off the deck.",
        "The hands push down and the legs spring forward under the hips in one quick movement.",
        "Knees stay bent and loose, absorbing every bump of the chop.",
        "While the back foot presses the tail, the front shoulder points into each turn.",
        "Outstretched arms wave for balance as the head looks down the line of the falling crest.",
    ],
    "synonyms": [
        "A rider glides across a breaking ocean swell standing on a fibreglass board.",
        "Someone catches a wave and rides its face toward the beach on a longboard.",
        "An athlete shreds the face of a curling breaker on a shortboard.",
        "A wave rider slides down a peeling roller while standing upright.",
        "A beachgoer stands up on a plank and cruises along a cresting sea wave.",
    ],
}


def bank_dict() -> dict:
    """A small bank of two classes at the paper's standard (5 prompts per form)."""
    return {
        "format_version": 1,
        "dataset": "toy",
        "templates": list(TEMPLATES[:3]),
        "classes": {"Archery": copy.deepcopy(ARCHERY), "Surfing": copy.deepcopy(SURFING)},
    }


def write_bank(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def labels_csv(tmp_path) -> str:
    return str(write_labels(tmp_path / "labels.csv", ["Archery", "Surfing"]))


def check(bank: str, labels: str, capsys) -> tuple[int, str]:
    status = main(["prompts", "check", bank, "--labels", labels])
    return status, capsys.readouterr().out


def test_check_a_valid_bank(tmp_path, labels_csv, capsys):
    status, out = check(write_bank(tmp_path / "bank.json", bank_dict()), labels_csv, capsys)
    assert status == 0
    assert out.rstrip().endswith("OK")
    assert "toy: 2 classes" in out and "0 view(s) over 77" in out and "flagged items: 0" in out


def test_check_wants_five_prompts_per_form_unless_told(tmp_path, labels_csv, capsys):
    data = bank_dict()
    del data["classes"]["Surfing"]["synonyms"][1:]
    bank = write_bank(tmp_path / "bank.json", data)
    status, out = check(bank, labels_csv, capsys)
    assert status == 1 and "FAIL 'Surfing', synonyms: 1 sentence(s), need 5" in out
    assert main(["prompts", "check", bank, "--labels", labels_csv, "--min-per-form", "1"]) == 0


def test_check_counts_clip_tokens_by_default_or_with_the_tokenizer_given(tmp_path, clip_tokenizer, capsys):
    data = bank_dict()
    # 77 words: 77 word-level tokens, but with CLIP's start and end tokens 79 > 77.
    data["classes"]["Surfing"]["body_parts"].append(" ".join(["paddling"] * 77))
    bank = write_bank(tmp_path / "bank.json", data)
    assert main(["prompts", "check", bank]) == 1
    assert "FAIL 'Surfing': 79 tokens > 77" in capsys.readouterr().out
    clip_tokenizer.save_pretrained(tmp_path / "clip-tokenizer")
    assert main(["prompts", "check", bank, "--tokenizer", str(tmp_path / "clip-tokenizer")]) == 1
    assert "FAIL 'Surfing': 79 tokens > 77" in capsys.readouterr().out
    (tmp_path / "no-tokenizer").mkdir()
    assert main(["prompts", "check", bank, "--tokenizer", str(tmp_path / "no-tokenizer")]) == 2
    assert "has no tokenizer" in capsys.readouterr().err


def test_check_a_bundled_bank_against_its_bundled_labels(capsys):
    assert main(["prompts", "check", "hmdb51", "--labels", "hmdb51"]) == 0
    out = capsys.readouterr().out
    assert "hmdb51: 51 classes" in out and "0 view(s) over 77" in out


def test_check_reports_a_missing_class(tmp_path, capsys):
    labels = str(write_labels(tmp_path / "labels.csv", ["Archery", "Surfing", "Juggling"]))
    status, out = check(write_bank(tmp_path / "bank.json", bank_dict()), labels, capsys)
    assert status == 1
    assert "FAIL 1 label(s) without prompts: ['Juggling']" in out


def test_check_reports_a_too_long_sentence(tmp_path, labels_csv, capsys):
    data = bank_dict()
    data["classes"]["Surfing"]["body_parts"].append("The legs bend and stretch again " * 20)
    status, out = check(write_bank(tmp_path / "bank.json", data), labels_csv, capsys)
    assert status == 1
    assert "FAIL 'Surfing': " in out and "tokens > 77" in out


def test_check_reports_a_duplicate(tmp_path, labels_csv, capsys):
    data = bank_dict()
    data["classes"]["Surfing"]["synonyms"].append(data["classes"]["Archery"]["synonyms"][0].upper() + "!")
    status, out = check(write_bank(tmp_path / "bank.json", data), labels_csv, capsys)
    assert status == 1
    assert "FAIL 'Surfing', synonyms: duplicate of 'Archery', synonyms" in out


def test_check_errors_on_an_unusable_bank(tmp_path, capsys):
    assert main(["prompts", "check", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("claver-hf: error: No prompt bank")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format_version": 1')
    assert main(["prompts", "check", str(broken)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def generate(labels: str, endpoint: str, output: Path, *options: str) -> int:
    """`claver-hf prompts generate` against an endpoint, without a progress bar."""
    command = ["prompts", "generate", "--labels", labels, "--endpoint", endpoint, "--output", str(output)]
    return main([*command, *options, "--no-progress"])


def test_generate_with_an_endpoint(tmp_path, labels_csv, capsys):
    output = tmp_path / "out" / "bank.json"
    output.parent.mkdir()
    with serve_completions(counting_responder()) as server:
        status = generate(labels_csv, server.url, output, "--endpoint-model", "base-lm", "--samples", "2")
    # The generated prompts pass; the display name "archery" has no verb, and the final check says so.
    assert status == 1
    out = capsys.readouterr().out
    assert str(output) in out and "FAIL 'Archery': display name 'archery' has no -ing verb" in out
    assert "1 problem(s)" in out
    assert {payload["model"] for _, _, payload in server.requests} == {"base-lm"}
    bank = load_prompt_bank(output)
    assert bank.dataset == "labels" and bank.class_names == ["Archery", "Surfing"]
    assert all(
        len(entry.sentences[form]) == 2 for entry in bank.classes.values() for form in INTERPRETIVE_FORMS
    )
    assert check_prompt_bank(bank, labels=["Archery", "Surfing"], min_per_form=2).problems == [
        "'Archery': display name 'archery' has no -ing verb"
    ]


def test_generate_with_display_names_writes_a_bank_that_passes(tmp_path, labels_csv, capsys):
    names = tmp_path / "names.csv"
    names.write_text("name,display_name\nArchery,practising archery\n")
    with serve_completions(counting_responder()) as server:
        status = generate(labels_csv, server.url, tmp_path / "bank.json", "--display-names", str(names))
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.rstrip().endswith("OK")
    bank = load_prompt_bank(tmp_path / "bank.json")
    assert bank.classes["Archery"].display_name == "practising archery"
    assert bank.classes["Surfing"].display_name == "surfing"


def test_generate_reports_a_failing_endpoint(tmp_path, labels_csv, capsys):
    with serve_completions(lambda payload: (401, "invalid api key")) as server:
        status = generate(labels_csv, server.url, tmp_path / "bank.json")
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("claver-hf: error: HTTP 401 from http://127.0.0.1:") and "invalid api key" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bank.json").exists()


@pytest.mark.parametrize("command", ["check", "generate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["prompts", command, "--help"])
    assert exit_.value.code == 0
    assert f"claver-hf prompts {command}" in capsys.readouterr().out
