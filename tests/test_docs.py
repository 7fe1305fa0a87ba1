"""The model's definition in `docs/` stays true to the code, and the code points to it (not outside the repository)."""

import re
import subprocess
from pathlib import Path

import torch

from claver_hf.modeling.kronecker import kronecker_allowed_mask

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MASK_PICTURE = re.compile(r"```mask (\w+)\n(.*?)```", re.DOTALL)


def mask_pictures() -> dict[str, torch.Tensor]:
    """The `mask NAME` pictures of docs/kronecker-masks.md as boolean (allowed) matrices."""
    text = (DOCS / "kronecker-masks.md").read_text()
    return {
        name: torch.tensor([[c == "#" for c in row.replace(" ", "")] for row in body.strip().splitlines()])
        for name, body in MASK_PICTURE.findall(text)
    }


def test_every_mask_has_a_picture_that_matches_the_code():
    pictures = mask_pictures()
    assert set(pictures) == {"kmta", "kmcta", "joint", "spatial", "divided", "cls_temporal"}
    for name, picture in pictures.items():
        assert torch.equal(picture, kronecker_allowed_mask(name, 3, 3)), name


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in listing.splitlines() if (ROOT / line).is_file()]


def test_no_reference_to_a_document_outside_the_repository():
    # The team's working document was cited as "S.. §3", "S..: ..." or "the S..'s"; users have docs/ instead.
    # (The pattern is assembled so that this file does not match it.)
    citation = re.compile(r"\bSP" + r"EC(?:\s§|:|'s)")
    citing = [
        str(p.relative_to(ROOT))
        for p in tracked_files()
        if p.suffix in {".py", ".md"} and citation.search(p.read_text())
    ]
    assert citing == []


DOC_LINK = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_into_docs_resolve():
    broken = []
    for path in tracked_files():
        if path.suffix not in {".py", ".md"}:
            continue
        for page, anchor in DOC_LINK.findall(path.read_text()):
            target = DOCS / page
            if not target.is_file() or (anchor and anchor not in anchors(target)):
                broken.append(f"{path.relative_to(ROOT)}: docs/{page}{'#' + anchor if anchor else ''}")
    assert broken == []
