"""The JSONL metrics log, and the quick held-out EM/F1 (scored by :mod:`sac_rag.eval.metrics`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sac_rag.eval.metrics import squad_em, squad_f1


def em_f1(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """SQuAD exact match and F1 (max over the gold answers), as ``sac-rag eval`` scores them."""
    return squad_em(prediction, answers), squad_f1(prediction, answers)


class MetricsLog:
    """Append-only JSONL log; on resume, records past the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is None:
            path.write_text("", encoding="utf-8")
        elif path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            kept = [line for line in kept if json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    @staticmethod
    def read(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
