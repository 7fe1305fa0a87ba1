"""The repository stands alone: `.ci/check_self_contained.py` (run by `.ci/run`) finds every reference to a
location outside it, and there is none."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "check_self_contained", ROOT / ".ci" / "check_self_contained.py"
)
checker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checker)


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("tests/conftest.py", 'DATA = Path(__file__).parents[2] / "data"'),  # path example
        ("README.md", "see ../SPEC.md"),  # path example
        ("claver_hf/data/labels.py", 'open("../../../labels.csv")'),  # path example
        ("benchmarks/bench.py", 'DATA = "/work/datasets/k400"'),  # path example
        ("Makefile", "\tcp /home/me/bpe.txt.gz ."),  # path example
    ],
)
def test_references_outside_the_repository_are_found(file, line):
    assert checker.findings(file, f"x = 1\n{line}\n")[0].startswith(f"{file}:2: ")
    assert checker.findings(file, f"{line}  {checker.EXAMPLE_MARKER}") == []


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("tests/conftest.py", "ROOT = Path(__file__).resolve().parents[1]"),
        ("claver_hf/prompts/check.py", "from ..processing.tokenization import clip_tokenizer"),
        ("claver_hf/data/labels/README.md", "see ../../processing/vocab/LICENSE"),  # path example
        ("tests/test_io.py", 'path = tmp_path / "a.mp4"  # not /dev/null, not /usr/bin'),
    ],
)
def test_references_inside_the_repository_pass(file, line):
    assert checker.findings(file, line) == []


def test_the_repository_refers_to_nothing_outside_it(capsys):
    assert checker.main() == 0, capsys.readouterr().out
