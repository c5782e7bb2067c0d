"""The project is self-contained: every "docs/conventions.md §k" the code and docs cite exists, and no
product file refers to a file outside the repository (regression: 66 citations of a THEORY.md the
repository did not contain)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("geometry", "gd_dynamics", "equilibrium", "bridge", "scripts", "benchmarks", "docs")


def _product_files():
    yield REPO / "README.md"
    for folder in PRODUCT:
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".py", ".md", ".yaml", ".toml", ".txt"} and path.is_file():
                yield path


def test_cited_conventions_sections_exist():
    doc = (REPO / "docs" / "conventions.md").read_text()
    sections = set(re.findall(r"^## §(\d+) ", doc, flags=re.M))
    assert sections == {str(k) for k in range(1, 9)}, sections
    cited = set()
    for path in _product_files():
        for group in re.findall(r"docs/conventions\.md ((?:§\d+[–,\- ]*)+)", path.read_text()):
            cited.update(re.findall(r"\d+", group))
    assert cited, "expected the code to cite docs/conventions.md"
    assert cited <= sections, f"cited sections missing from docs/conventions.md: {sorted(cited - sections)}"


def test_no_reference_outside_the_repository():
    bad = []
    for path in _product_files():
        text = path.read_text()
        for pattern in ("THEORY.md", "../shared", "/" + "work/shared", "seed/paper-summary", "theory_single_neuron.md"):
            if pattern in text:
                bad.append(f"{path.relative_to(REPO)}: {pattern}")
    assert not bad, bad
