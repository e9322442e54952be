"""No tracked file (code, doc, notebook and its saved outputs) names an absolute path of a machine that ran it.

A path such as the checkout's folder, a home, a temporary folder or a virtual environment means nothing on
another machine, and tells what the machine that wrote it looked like.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import ROOT

# Folders no repository file should name: homes (Linux, macOS, Windows), the superuser's home, temporary and
# per-user cache folders, and the usual roots of work trees and CI checkouts.
BEFORE = r"(?<![\w.~/\\-])"  # a path starts the text, a word, a quoted string...
AFTER = r"(?=[/\\\"'\s,;:)\]]|$)"  # ...and its folder name ends there
MACHINE_DIRS = re.compile(
    BEFORE
    + r"(?:/(?:root|home/[\w.-]+|Users/[\w.-]+|tmp|var/tmp|var/folders|private/var|work|workspace|builds)"
    + AFTER
    + r"|[A-Za-z]:\\\\?(?:Users|Windows\\\\?Temp)\\)",
    re.MULTILINE,
)
# gitignore patterns are relative to the repository (a leading slash anchors them there); this file's examples
# are machine paths on purpose
NOT_PATHS = {".gitignore", Path(__file__).name}
BINARY = {".safetensors", ".png", ".jpg", ".gz", ".pt", ".bin", ".npy", ".faiss", ".pdf"}


def tracked_files() -> list[Path]:
    """The repository's files (git's index; all files outside ignored build folders when it is no checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}
        names = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)
        ]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def this_machines_paths() -> list[str]:
    """This machine's own absolute folders (checkout, home, temporary folder, Python environment)."""
    candidates = {str(ROOT), str(Path.home()), tempfile.gettempdir(), sys.prefix}
    return sorted(p for p in candidates if p.count("/") + p.count("\\") >= 1 and len(p) > 4)


def machine_paths_in(text: str) -> list[str]:
    """The absolute machine paths named in ``text`` (each with what follows it, for the message)."""
    own = [re.compile(BEFORE + re.escape(path) + AFTER, re.MULTILINE) for path in this_machines_paths()]
    return [text[m.start() : m.start() + 60].split("\n")[0] for p in (MACHINE_DIRS, *own) for m in p.finditer(text)]


def strings_of(value: object) -> list[str]:
    """Every string inside a JSON document (a notebook's sources and saved outputs, unescaped)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_of(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def text_of(path: Path) -> str | None:
    """A file's text as a reader sees it (JSON strings unescaped); None for binary files."""
    data = path.read_bytes()
    if path.suffix in BINARY or b"\0" in data:
        return None
    text = data.decode("utf-8", errors="replace")
    if path.suffix in {".ipynb", ".json"}:
        text = "\n".join([text, *strings_of(json.loads(text))])
    return text


@pytest.mark.parametrize(
    "text",
    [
        'print("compressor checkpoint:", "/work/main/sac_rag/pretrained/smollm2-135m-r5")',
        '"text": ["loaded from /root/.cache/sac_rag/models\\n"]',
        "File /home/alice/project/.venv/lib/python3.11/site-packages/x.py:3: UserWarning",
        "persisted to /tmp/tmpab12cd/store",
        r"C:\Users\bob\sac_rag\examples",
        "/Users/carol/sac_rag",
        str(ROOT / "README.md"),
    ],
)
def test_machine_paths_are_found(text):
    assert machine_paths_in(text)


@pytest.mark.parametrize(
    "text",
    [
        "sac_rag/pretrained/smollm2-135m-r5",
        "~/.cache/sac_rag (or $SAC_RAG_HOME)",
        "#!/usr/bin/env bash",
        "https://example.org/tmp/page and docs/work/notes.md",
        "python -m pytest tests/ --basetemp=build/tmp",
        "2 > /dev/null",
    ],
)
def test_portable_text_is_not_flagged(text):
    assert machine_paths_in(text) == []


def test_saved_notebook_outputs_are_read_unescaped(tmp_path):
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": [{"outputs": [{"text": ["done\n/tmp/tmpab12cd/x\n"]}]}]}))
    assert "\\n/tmp/" in notebook.read_text()  # on disk the path follows an escaped newline
    assert machine_paths_in(text_of(notebook))
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\0\1/tmp/x")
    assert text_of(binary) is None


def test_no_tracked_file_names_an_absolute_machine_path():
    files = tracked_files()
    assert any(f.suffix == ".ipynb" for f in files) and any(f.name == "README.md" for f in files)
    offenders = {}
    for path in files:
        text = None if path.name in NOT_PATHS else text_of(path)
        found = machine_paths_in(text) if text else []
        if found:
            offenders[str(path.relative_to(ROOT))] = found[:3]
    assert not offenders, f"absolute machine paths (print names or paths relative to the package): {offenders}"
