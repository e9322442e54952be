"""Run methods over QA examples, appending one prediction per line; a re-run skips what is done."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from sac_rag.eval.answer import greedy_answer
from sac_rag.eval.methods import Method
from sac_rag.qa.datasets import QAExample

PREDICTIONS = "predictions.jsonl"


def read_predictions(path: Path) -> Iterator[dict]:
    """The prediction records in ``path`` (a torn last line, from an interrupted run, is skipped)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and {"method", "dataset", "qid"} <= record.keys():
                yield record


def record_key(method: str, dataset: str, qid: str) -> tuple[str, str, str]:
    return (method, dataset, qid)


def run_methods(
    methods: Sequence[Method],
    examples: Sequence[QAExample],
    out_dir: str | Path,
    *,
    max_new_tokens: int = 24,
    progress: bool = True,
) -> list[dict]:
    """Answer every example with every method, example by example, so that a partial run stays
    comparable across methods. Returns all records of these methods and examples (old and new)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PREDICTIONS
    done = {record_key(r["method"], r["dataset"], r["qid"]): r for r in read_predictions(path)}
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n")  # finish a torn line so the next record starts on its own
    todo = sum(1 for ex in examples for m in methods if record_key(m.key, ex.dataset, ex.qid) not in done)
    bar = tqdm(total=todo, desc="answering", unit="answer", disable=not progress)
    with open(path, "a", encoding="utf-8") as f:
        for ex in examples:
            for method in methods:
                key = record_key(method.key, ex.dataset, ex.qid)
                if key in done:
                    continue
                prompt = method.prompt(ex)
                ans = greedy_answer(method.decoder, prompt.segments, method.tokenizer, max_new_tokens)
                record = {
                    "method": method.key,
                    "dataset": ex.dataset,
                    "qid": ex.qid,
                    "question": ex.question,
                    "answers": list(ex.answers),
                    "prediction": ans.text,
                    "output": ans.output,
                    "ttft_s": ans.ttft_s,
                    "total_s": ans.total_s,
                    "new_tokens": ans.new_tokens,
                    "entries": prompt.entries,
                    "encode_s": prompt.encode_s,
                }
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                done[key] = record
                bar.update(1)
    bar.close()
    keys = [record_key(m.key, ex.dataset, ex.qid) for m in methods for ex in examples]
    return [done[k] for k in keys]
