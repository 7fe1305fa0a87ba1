"""`claver-hf prompts check` and `claver-hf prompts generate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claver_hf.cli import main
from claver_hf.prompts.bank import INTERPRETIVE_FORMS, load_prompt_bank
from claver_hf.prompts.check import check_prompt_bank
from claver_hf.prompts.templates import TEMPLATES

from .test_prompts_generate import counting_responder, serve_completions


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment must not intercept the requests to the local test server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def write_labels(path: Path, names: list[str]) -> Path:
    path.write_text("id,name\n" + "".join(f"{i},{name}\n" for i, name in enumerate(names)))
    return path


def bank_dict() -> dict:
    """A small valid bank of two classes."""
    return {
        "format_version": 1,
        "dataset": "toy",
        "templates": list(TEMPLATES[:3]),
        "classes": {
            "Archery": {
                "display_name": "archery",
                "decomposition": ["A person draws the bow string back and releases the arrow."],
                "body_parts": ["The arms pull the string while the eyes aim at the target."],
                "synonyms": ["Shooting arrows with a bow at a target."],
            },
            "Surfing": {
                "display_name": "surfing",
                "decomposition": ["A person paddles out, stands up on the board and rides the wave."],
                "body_parts": ["The legs bend for balance while the arms stretch out to the sides."],
                "synonyms": ["Riding ocean waves standing on a board."],
            },
        },
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
    assert "toy: 2 classes" in out and "views fit 77 tokens, 0 do not" in out


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
    assert "hmdb51: 51 classes" in out and "0 do not" in out


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
    data["classes"]["Surfing"]["synonyms"].append("Shooting arrows with a bow at a target!")
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
    assert status == 0
    assert str(output) in capsys.readouterr().out
    assert {payload["model"] for _, _, payload in server.requests} == {"base-lm"}
    bank = load_prompt_bank(output)
    assert bank.dataset == "labels" and bank.class_names == ["Archery", "Surfing"]
    assert all(
        len(entry.sentences[form]) == 2 for entry in bank.classes.values() for form in INTERPRETIVE_FORMS
    )
    assert check_prompt_bank(bank, labels=["Archery", "Surfing"], min_per_form=2).ok


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
