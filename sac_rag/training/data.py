"""Training data: QA examples in the serving layout (gold + distractor passages) and plain texts for stage 1.

QA data is read by :mod:`sac_rag.qa.datasets` and stays a :class:`~sac_rag.qa.datasets.QAExample`: a drawn training
example is the same example with its ``passages`` set (the gold ``context`` among distractors).

Every example drawn for training is a pure function of ``(seed, index)``, so a resumed run sees exactly
the examples the uninterrupted run would have seen, without saving any random-generator state.
Held-out examples are whole contexts set aside from the training files (never a dev file).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sac_rag.qa.datasets import MalformedRecord, QAExample, load_qa
from sac_rag.training.pretraining_text import is_corpus, read_corpus


@dataclass(frozen=True)
class LMSample:
    """One continuation-pretraining example: the first part of ``text`` is compressed, the rest predicted."""

    text: str


def load_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Plain texts for stage 1: paragraphs (blank-line separated) of a ``.txt`` file, the documents of a
    JSON-lines corpus (records with ``text``), or the unique contexts of a QA file (MRQA ``.jsonl(.gz)`` /
    SQuAD ``.json``); the first ``limit`` of them."""
    path = Path(path)
    if path.suffix == ".txt":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such text file")
        texts = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
        texts = [t for t in texts if t]
    elif is_corpus(path):
        texts = list(read_corpus(path, limit))
    else:
        texts = list(dict.fromkeys(ex.context for ex in load_qa(path)))
    if not texts:
        raise MalformedRecord(f"{path}: no text found")
    return texts[:limit] if limit else texts


def load_examples(paths: Sequence[str | Path], limit: int | None = None) -> list[QAExample]:
    """QA examples of several files, de-duplicated by question id, examples without an answer dropped."""
    seen: dict[str, QAExample] = {}
    for path in paths:
        for ex in load_qa(path):
            if ex.answers and any(a.strip() for a in ex.answers):
                seen.setdefault(ex.qid, ex)
    examples = list(seen.values())
    if not examples:
        raise MalformedRecord(f"no answerable QA examples in {[str(p) for p in paths]}")
    return examples[:limit] if limit else examples


def _rng(seed: int, index: int, salt: int = 0) -> random.Random:
    return random.Random((seed * 1_000_003 + salt) * 1_000_000_007 + index)


def _split_by_context(keys: list[str], seed: int, eval_size: int, count) -> tuple[set[str], list[str]]:
    """Hold out whole contexts (in a seeded order) until ``eval_size`` items are held out."""
    unique = sorted(set(keys))
    _rng(seed, 0, salt=1).shuffle(unique)
    held: set[str] = set()
    n = 0
    for key in unique:
        if n >= eval_size:
            break
        held.add(key)
        n += count(key)
    return held, [k for k in unique if k not in held]


class _Epochs:
    """Index -> item of a seeded per-epoch permutation."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perm: tuple[int, list[int]] | None = None

    def __call__(self, index: int) -> int:
        epoch, i = divmod(index, self.n)
        if self._perm is None or self._perm[0] != epoch:
            order = list(range(self.n))
            _rng(self.seed, epoch, salt=2).shuffle(order)
            self._perm = (epoch, order)
        return self._perm[1][i]


class QAPool:
    """QA examples split into train and held-out, drawn in the serving layout.

    A drawn example has its gold passage plus 0..``max_distractors`` passages of other training
    examples, in random order; each passage is later compressed on its own.
    """

    def __init__(self, examples: Sequence[QAExample], *, seed: int, eval_size: int, max_distractors: int) -> None:
        counts: dict[str, int] = {}
        for ex in examples:
            counts[ex.context] = counts.get(ex.context, 0) + 1
        held, train_contexts = _split_by_context([ex.context for ex in examples], seed, eval_size, counts.__getitem__)
        self.train = [ex for ex in examples if ex.context not in held]
        self.held_out = [ex for ex in examples if ex.context in held][:eval_size]
        if not self.train:
            raise ValueError("no training examples left after holding out the evaluation contexts")
        self.contexts = train_contexts
        self.seed, self.max_distractors = seed, max_distractors
        self._order = _Epochs(len(self.train), seed)

    def _sample(self, ex: QAExample, rng: random.Random) -> QAExample:
        k = rng.randint(0, min(self.max_distractors, len(self.contexts) - 1))
        distractors: list[str] = []
        while len(distractors) < k:
            c = self.contexts[rng.randrange(len(self.contexts))]
            if c != ex.context and c not in distractors:
                distractors.append(c)
        passages = [ex.context, *distractors]
        rng.shuffle(passages)
        return replace(ex, passages=tuple(passages))

    def sample(self, index: int) -> QAExample:
        """The ``index``-th training example (a pure function of the seed and the index)."""
        return self._sample(self.train[self._order(index)], _rng(self.seed, index))

    def eval_samples(self) -> list[QAExample]:
        """The held-out examples, each with a fixed set of distractors."""
        return [self._sample(ex, _rng(self.seed, i, salt=3)) for i, ex in enumerate(self.held_out)]


class TextPool:
    """Plain texts split into train and held-out for stage 1."""

    def __init__(self, texts: Sequence[str], *, seed: int, eval_size: int) -> None:
        held, train = _split_by_context(list(texts), seed, eval_size, lambda _: 1)
        self.train = train
        self.held_out = sorted(held)
        if not self.train:
            raise ValueError("no training texts left after holding out the evaluation texts")
        self._order = _Epochs(len(self.train), seed)

    def sample(self, index: int) -> LMSample:
        return LMSample(self.train[self._order(index)])

    def eval_samples(self) -> list[LMSample]:
        return [LMSample(t) for t in self.held_out]
