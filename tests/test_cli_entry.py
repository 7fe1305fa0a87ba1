"""`python -m claver_hf.cli` reaches every command, like the `claver-hf` console script."""

from __future__ import annotations

import subprocess
import sys

from claver_hf.cli import build_parser


def test_module_entry_point_lists_every_command():
    commands = build_parser()._subparsers._group_actions[0].choices
    result = subprocess.run(
        [sys.executable, "-m", "claver_hf.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for command in commands:
        assert command in result.stdout
