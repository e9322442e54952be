"""Plain-text corpora for continuation pretraining: JSON lines (``.jsonl`` / ``.jsonl.gz``), one document a
line with a ``text`` field (``title`` and ``id`` optional), as the Wikipedia slice used for stage 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sac_rag.qa.datasets import MalformedRecord, json_lines, open_text


def is_corpus(path: str | Path) -> bool:
    """Whether ``path`` is a JSON-lines corpus (its first record has ``text`` and no QA fields)."""
    path = Path(path)
    if not path.name.removesuffix(".gz").endswith(".jsonl") or not path.is_file():
        return False
    with open_text(path) as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and "text" in record and "qas" not in record
    return False


def read_corpus(path: str | Path, limit: int | None = None) -> Iterator[str]:
    """The non-empty ``text`` of each record (the first ``limit`` of them); malformed lines name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus file")
    count = 0
    for where, record in json_lines(path):
        if limit is not None and count >= limit:
            return
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise MalformedRecord(f"{where}: a corpus record needs a 'text' string")
        if text.strip():
            count += 1
            yield text.strip()
