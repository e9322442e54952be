"""Answer metrics: SQuAD EM/F1 (max over gold answers) and the official SAC script's variant.

* ``squad_em`` / ``squad_f1``: the SQuAD v1.1 evaluation script. Both strings are normalised
  (lower case, punctuation removed, articles ``a|an|the`` removed, whitespace collapsed); F1 is the
  bag-of-tokens F1 of the whitespace tokens (0 without overlap, as v1.1 / MRQA); the score is the
  maximum over the gold answers.
* ``first_answer_em``: the SAC script's exact match: the prediction, stripped of surrounding
  whitespace, equals the FIRST gold answer stripped, character for character (case-sensitive).
* ``rouge1_f``: ROUGE-1 F-measure against the FIRST gold answer, as ``rouge_score``'s default
  tokenizer does it without stemming: lower case, every run of characters outside ``[a-z0-9]``
  becomes a space, split on whitespace; overlap = clipped unigram matches,
  P = overlap / |pred|, R = overlap / |gold|, F = 2PR / (P + R) (0 when either side is empty).
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

METRICS = ("em", "f1", "em_first", "rouge1")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:  # the SQuAD v1.1 / MRQA script: no overlap (empty sides included) scores 0
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_em(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    pred = normalize_answer(prediction)
    return max((float(pred == normalize_answer(a)) for a in answers), default=0.0)


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best token F1 of the normalised prediction against the normalised gold answers."""
    pred = normalize_answer(prediction).split()
    return max((_f1(pred, normalize_answer(a).split()) for a in answers), default=0.0)


def first_answer_em(prediction: str, answers: Sequence[str]) -> float:
    """The SAC script's exact match: stripped prediction == stripped first gold answer."""
    return float(bool(answers) and prediction.strip() == answers[0].strip())


def rouge_tokens(s: str) -> list[str]:
    """``rouge_score``'s default tokenisation (no stemming)."""
    return _NON_ALNUM.sub(" ", s.lower()).split()


def rouge1_f(prediction: str, answers: Sequence[str]) -> float:
    """ROUGE-1 F-measure of the prediction against the first gold answer."""
    if not answers:
        return 0.0
    pred, gold = rouge_tokens(prediction), rouge_tokens(answers[0])
    if not pred or not gold:
        return 0.0
    overlap = sum((Counter(pred) & Counter(gold)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def score(prediction: str, answers: Sequence[str]) -> dict[str, float]:
    """All four metrics of one prediction, keyed as in :data:`METRICS`."""
    return {
        "em": squad_em(prediction, answers),
        "f1": squad_f1(prediction, answers),
        "em_first": first_answer_em(prediction, answers),
        "rouge1": rouge1_f(prediction, answers),
    }


def aggregate(rows: Sequence[dict], keys: Sequence[str] = METRICS) -> dict:
    """Per-dataset means, their macro average (mean over datasets) and the micro average (over questions).

    ``rows`` carry ``dataset`` and the metric keys. Means are in percent; each ``<key>_se`` is the standard
    error of that mean (sample standard deviation / sqrt(n); for the macro average, the datasets' errors
    combined as independent).
    """
    by_dataset: dict[str, list[dict]] = {}
    for r in rows:
        by_dataset.setdefault(r["dataset"], []).append(r)

    def stats(rs: Sequence[dict]) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in keys:
            values = [100.0 * r[k] for r in rs]
            out[k] = statistics.fmean(values) if values else math.nan
            out[f"{k}_se"] = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
        return out

    datasets = {d: {"n": len(rs), **stats(rs)} for d, rs in sorted(by_dataset.items())}
    macro: dict[str, float] = {}
    for k in keys:
        d = len(datasets)
        macro[k] = sum(v[k] for v in datasets.values()) / d if d else math.nan
        macro[f"{k}_se"] = math.sqrt(sum(v[f"{k}_se"] ** 2 for v in datasets.values())) / d if d else math.nan
    return {"datasets": datasets, "macro": {"n": len(rows), **macro}, "micro": {"n": len(rows), **stats(rows)}}
