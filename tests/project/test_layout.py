"""The tests are laid out like the code: ``tests/<package>/`` for ``sac_rag/<package>/``, ``tests/test_<module>.py``
for ``sac_rag/<module>.py``, a few folders for what spans packages, the helpers in ``tests/support/``."""

from __future__ import annotations

import re

from support import ROOT, TESTS

SPANNING = {
    "bench": "the benchmarks (bench/)",
    "integrations": "the integration packages together (integrations/)",
    "end_to_end": "sac_rag against the spec, the real default model, generated inputs",
    "project": "the repository: layout, imports, docs, notebooks, one home per fact",
    "support": "helpers (no tests)",
}


def test_folders_and_top_level_files_name_what_they_test():
    code = ROOT / "sac_rag"
    packages = {p.name for p in code.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders - packages <= set(SPANNING), folders - packages - set(SPANNING)
    tested = {p.stem.removeprefix("test_") for p in TESTS.glob("test_*.py")}
    assert tested <= {p.stem for p in code.glob("*.py")}, tested


def test_test_files_are_imported_by_their_unique_names_with_no_path_edits():
    """pytest imports a test file by its name (no ``__init__.py``: rootdir-relative "prepend" imports), so names
    are unique; ``tests/`` and the repository reach ``sys.path`` through pyproject's ``pythonpath`` only."""
    files = [p for p in TESTS.rglob("*.py") if "support" not in p.relative_to(TESTS).parts]
    names = [p.name for p in files if p.name != "conftest.py"]
    assert len(names) == len(set(names)) and "__init__.py" not in names
    edits = [
        str(p.relative_to(ROOT)) for p in TESTS.rglob("*.py") if re.search(r"sys\.path\.(insert|append)", p.read_text())
    ]
    assert edits == []
