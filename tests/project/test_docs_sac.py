"""The design the code cites is in the repository: every "docs/sac.md section N" cited in ``sac_rag/`` is a
heading of docs/sac.md."""

from __future__ import annotations

import re

from support import ROOT

# a citation: "docs/sac.md section 4", "sections 3 and 4", "sections 2-8" (SAC_SPEC: the old name of the same
# numbering, still cited by modules other work is moving)
CITATION = re.compile(r"(?:docs/sac\.md|SAC_SPEC) sections? (\d+(?:\s*(?:-|and|,)\s*\d+)*)")
HEADING = re.compile(r"^## (\d+)\. \S", re.MULTILINE)


def cited_sections(text: str) -> set[int]:
    """Section numbers a text cites; a range ``a-b`` cites every section from a to b."""
    cited: set[int] = set()
    for match in CITATION.finditer(text):
        for part in re.split(r"\s*(?:and|,)\s*", match.group(1)):
            ends = [int(n) for n in part.split("-")]
            cited.update(range(ends[0], ends[-1] + 1))
    return cited


def test_citations_are_parsed() -> None:
    text = "docs/sac.md section 4; (docs/sac.md sections 3 and 4); docs/sac.md sections 2-8; SAC_SPEC section 12"
    assert cited_sections(text) == {2, 3, 4, 5, 6, 7, 8, 12}
    assert cited_sections("see section 40 of another spec") == set()


def test_every_cited_section_is_a_heading_of_docs_sac() -> None:
    headings = [int(n) for n in HEADING.findall((ROOT / "docs" / "sac.md").read_text(encoding="utf-8"))]
    assert headings == list(range(1, len(headings) + 1)), "docs/sac.md's sections are numbered 1, 2, ... in order"
    cited: dict[int, list[str]] = {}
    for path in sorted((ROOT / "sac_rag").rglob("*.py")):
        for n in cited_sections(path.read_text(encoding="utf-8")):
            cited.setdefault(n, []).append(str(path.relative_to(ROOT)))
    assert {2, 3, 4, 9, 12} <= set(cited), "the modules that follow the design cite it"
    missing = {n: where for n, where in cited.items() if n not in headings}
    assert not missing, f"cited sections that docs/sac.md lacks: {missing}"
