"""Readers for extractive QA data: MRQA 2019 ``.jsonl`` / ``.jsonl.gz`` and SQuAD v1/v2 ``.json``."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The Splinter few-shot samples end every question with this artefact.
MASK_SUFFIX = " [MASK]."


class MalformedRecord(ValueError):
    """A record that is not valid QA data; the message names the file and the record."""


@dataclass(frozen=True)
class QAExample:
    """One question about ``context``, the one QA type of the library: evaluation scores it, training learns
    from it (``sac_rag.training.data.QAPool`` sets each among distractors in the serving layout).

    ``passages``: when the question is set among other passages, every passage of its prompt in order
    (``context`` among them, unless training deliberately sets it among another question's passages to see
    what the memories carry); empty when ``context`` stands alone.
    """

    qid: str
    question: str
    context: str
    answers: tuple[str, ...]
    dataset: str = ""
    meta: dict = field(default_factory=dict, compare=False)
    passages: tuple[str, ...] = ()

    @property
    def prompt_passages(self) -> tuple[str, ...]:
        """The passages a prompt for this question holds, in order."""
        return self.passages or (self.context,)

    @property
    def answer(self) -> str:
        """The answer a model is trained to give: the first non-blank one, stripped."""
        for a in self.answers:
            if a.strip():
                return a.strip()
        raise ValueError(f"question {self.qid} has no answer to train on")


def _clean_question(q: str) -> str:
    return q[: -len(MASK_SUFFIX)] if q.endswith(MASK_SUFFIX) else q


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedRecord(f"{where}: {what}")


def _example(qa: dict, context: str, dataset: str, where: str, answers_key: str) -> QAExample:
    _check(isinstance(qa, dict), where, "a question entry must be a JSON object")
    qid, question = qa.get("qid", qa.get("id")), qa.get("question")
    _check(isinstance(qid, str) and qid != "", where, "missing question id ('qid' or 'id')")
    _check(isinstance(question, str) and question.strip() != "", where, f"question {qid}: missing 'question' text")
    raw = qa.get(answers_key)
    _check(isinstance(raw, list), where, f"question {qid}: '{answers_key}' must be a list")
    answers = tuple(a["text"] if isinstance(a, dict) else a for a in raw)
    _check(all(isinstance(a, str) for a in answers), where, f"question {qid}: answers must be strings")
    return QAExample(qid, _clean_question(question), context, answers, dataset)


def open_text(path: Path):
    """A text file, gunzipped on the fly when its name ends in ``.gz``."""
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def json_lines(path: Path) -> Iterator[tuple[str, object]]:
    """``(where, record)`` for each non-blank line of a JSON-lines file (``where`` is ``path:line``)."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise MalformedRecord(f"{where}: not valid JSON ({e.msg})") from e


def _read_mrqa(path: Path) -> Iterator[QAExample]:
    dataset = path.name
    for where, record in json_lines(path):
        _check(isinstance(record, dict), where, "a record must be a JSON object")
        if "header" in record:
            dataset = record["header"].get("dataset", dataset)
            continue
        context = record.get("context")
        _check(isinstance(context, str) and context.strip() != "", where, "missing 'context' text")
        _check(isinstance(record.get("qas"), list), where, "missing 'qas' list")
        for qa in record["qas"]:
            yield _example(qa, context, dataset, where, "answers")


def _read_squad(path: Path) -> Iterator[QAExample]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MalformedRecord(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    _check(isinstance(doc, dict) and isinstance(doc.get("data"), list), str(path), "SQuAD files have a 'data' list")
    dataset = doc.get("version", path.stem)
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = para.get("context")
            _check(isinstance(context, str) and context.strip() != "", where, "missing 'context' text")
            for qa in para.get("qas", []):
                if qa.get("is_impossible"):
                    continue
                yield _example(qa, context, str(dataset), where, "answers")


def load_qa(path: str | Path, limit: int | None = None) -> list[QAExample]:
    """Read QA examples from an MRQA ``.jsonl(.gz)`` or SQuAD ``.json`` file (the first ``limit`` of them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such QA data file")
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        reader = _read_mrqa(path)
    elif name.endswith(".json"):
        reader = _read_squad(path)
    else:
        raise ValueError(f"{path}: unknown QA format (expected .jsonl, .jsonl.gz or .json)")
    out: list[QAExample] = []
    for ex in reader:
        if limit is not None and len(out) >= limit:
            break
        out.append(ex)
    return out
