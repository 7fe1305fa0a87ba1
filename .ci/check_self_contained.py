"""Fail when a file of the repository refers to a location outside it.

A user's clone holds the repository and nothing beside it, so no code, test, script or document may read a path
that climbs out of it: a relative path with `../` that leaves the root, `Path(__file__).parents[k]` above the
root, or an absolute path into a machine's own folders. Checks every file git tracks or would add (untracked,
not ignored) except binary ones; a line ending with the marker `# path example` (the checker's own tests) is
skipped. Run from anywhere; exits 1 and lists each finding as `file:line: reason`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+)")
PARENTS = re.compile(r"__file__\)(?:\.resolve\(\)|\.absolute\(\))?\.parents\[(\d+)\]")
EXAMPLE_MARKER = "# path example"
ABSOLUTE = re.compile(r"(?<![\w.~/-])/(?:work|home|root|Users|mnt|srv|opt|tmp|data|scratch)/[\w.-]+")


def repository_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({name for name in listing.stdout.split("\0") if name and (ROOT / name).is_file()})


def findings(relative: str, text: str) -> list[str]:
    depth = len(PurePosixPath(relative).parts) - 1  # folders between the root and the file
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.rstrip().endswith(EXAMPLE_MARKER):
            continue
        for match in CLIMB.finditer(line):
            # Relative to the file's folder or to the root (where commands run), it must stay inside.
            if match.group(1).count("../") > depth:
                found.append(
                    f"{relative}:{number}: relative path climbs out of the repository: {line.strip()}"
                )
                break
        for match in PARENTS.finditer(line):
            if int(match.group(1)) >= depth + 1:
                found.append(f"{relative}:{number}: parents[{match.group(1)}] is above the repository root")
        for match in ABSOLUTE.finditer(line):
            found.append(f"{relative}:{number}: absolute path outside the repository: {match.group(0)}")
    return found


def main() -> int:
    problems = []
    for relative in repository_files():
        data = (ROOT / relative).read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (the gzipped vocabulary, ...)
        problems += findings(relative, data.decode("utf-8", errors="replace"))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} reference(s) to locations outside the repository.", file=sys.stderr)
        return 1
    print("self-contained: no file refers to a location outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
