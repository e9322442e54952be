"""Read documents from .txt, .md and .jsonl files (directories are searched for them)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from sac_rag.store.layout import kind_of

SUFFIXES = (".txt", ".md", ".jsonl")


@dataclass
class Document:
    """One document: its text, where it came from, and metadata to carry onto its passages.

    ``file`` is the absolute path of the file it was read from (None if it was not), however the path
    was spelled: passages get their ids from ``source``, and re-indexing a file replaces its passages.
    """

    text: str
    source: str
    metadata: dict = field(default_factory=dict)
    file: str | None = None


def _read_text(path: Path) -> str:
    data = _read_regular_file(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from e


def _jsonl(path: Path) -> list[Document]:
    docs = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from e
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f'{path}:{n}: each line must be a JSON object with a "text" string')
        meta = {k: v for k, v in record.items() if k != "text"}
        docs.append(Document(record["text"], f"{path}:{n}", meta, str(path)))
    return docs


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (through links); anything else is refused, naming what it
    is, without blocking (a FIFO would wait forever for a writer, a device might never end)."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode)
        return f.read()


def _not_a_file(path: Path, mode: int) -> ValueError:
    return ValueError(f"{path}: {kind_of(mode)}, not a regular file: only regular files can be indexed")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and not p.is_dir())
        for p in found:
            if not p.is_file():  # a FIFO, socket or device named like a document: said, not skipped
                raise _not_a_file(p, p.stat().st_mode) if p.exists() else FileNotFoundError(f"{p}: a broken link")
        return found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not path.is_file():
        raise _not_a_file(path, path.stat().st_mode)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")
    return [path]


def read_documents(paths: list[str | Path]) -> list[Document]:
    """Every document in ``paths``; all files are read (and checked) before any is returned.

    Files are named by their absolute path, each once, however often and however spelled they are given.
    """
    files: dict[Path, None] = {}
    for given in paths:
        found = _files(Path(given))
        if not found:
            raise ValueError(f"{given}: no {', '.join(SUFFIXES)} files in this directory")
        files.update((f.resolve(), None) for f in found)
    docs: list[Document] = []
    for file in files:
        if file.suffix.lower() == ".jsonl":
            docs.extend(_jsonl(file))
        else:
            docs.append(Document(_read_text(file), str(file), file=str(file)))
    return docs
