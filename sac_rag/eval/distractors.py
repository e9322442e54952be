"""The multi-passage setting: each question's gold passage set among other questions' passages.

As retrieval hands a reader several passages of which one answers, each memory is built on its own
and the prompt composes them. Distractors are the ``n`` distinct passages that follow the gold one in
the file (cyclically), so neighbouring questions share passages and each is encoded once; the gold
passage's place among them is fixed by a digest of the question id.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from sac_rag.qa.datasets import QAExample


def distractor_label(dataset: str, n: int) -> str:
    """The dataset name a question set among ``n`` distractors is reported under."""
    return f"{dataset} +{n} distractors"


def _gold_slot(qid: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(qid.encode()).digest()[:4], "big") % (n + 1)


def with_distractors(examples: Sequence[QAExample], n: int) -> list[QAExample]:
    """``examples`` with ``n`` distractor passages each, drawn from the same dataset's other passages."""
    if n < 0:
        raise ValueError(f"the number of distractors must be >= 0, got {n}")
    if n == 0:
        return list(examples)
    contexts: dict[str, list[str]] = {}
    for ex in examples:
        seen = contexts.setdefault(ex.dataset, [])
        if ex.context not in seen:
            seen.append(ex.context)
    out = []
    for ex in examples:
        pool = contexts[ex.dataset]
        if len(pool) <= n:
            raise ValueError(
                f"{ex.dataset}: {len(pool)} distinct passages, too few for {n} distractors (load more questions)"
            )
        start = pool.index(ex.context)
        others = [pool[(start + i) % len(pool)] for i in range(1, n + 1)]
        slot = _gold_slot(ex.qid, n)
        passages = (*others[:slot], ex.context, *others[slot:])
        out.append(dataclasses.replace(ex, dataset=distractor_label(ex.dataset, n), passages=passages))
    return out
