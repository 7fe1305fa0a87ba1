"""The README's runnable snippets and the main job work as documented.

Blocks fenced as ```python are executed; ```py blocks are illustrations that need the Hub.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_runnable_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()


def test_untrained_demo(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "demo_untrained.py"),
            "--output-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "UNTRAINED" in result.stdout
    for label in ("moving right", "moving left", "moving up", "moving down"):
        assert label in result.stdout
    assert (tmp_path / "demo" / "model.safetensors").exists()
    scores = [float(line.split()[-2]) for line in result.stdout.splitlines() if line.startswith("moving")]
    assert len(set(scores)) == 4  # four distinct texts give four distinct similarities
