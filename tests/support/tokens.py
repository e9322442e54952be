"""Counting what a tokenizer is asked to tokenise: each text a call (``__call__`` or ``encode``) was given."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

from transformers import PreTrainedTokenizerBase


def count_tokenised(monkeypatch, which: Callable[[PreTrainedTokenizerBase], bool]) -> Counter:
    """A Counter of the texts the tokenizers ``which`` accepts are called on from now on (until ``monkeypatch``
    undoes it), by text: a batch call counts each of its texts, a call made inside another (``__call__``
    reaching ``encode``) does not count again."""
    texts: Counter = Counter()
    depth = [0]

    def counting(method: Callable) -> Callable:
        @functools.wraps(method)
        def counted(self, text=None, *args, **kwargs):
            if depth[0] == 0 and which(self):
                texts.update([text] if isinstance(text, str) else [t for t in text or () if isinstance(t, str)])
            depth[0] += 1
            try:
                return method(self, text, *args, **kwargs)
            finally:
                depth[0] -= 1

        return counted

    for name in ("__call__", "encode"):
        monkeypatch.setattr(PreTrainedTokenizerBase, name, counting(getattr(PreTrainedTokenizerBase, name)))
    return texts
