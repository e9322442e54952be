"""Split a document into passages of at most ``max_tokens`` tokens at sentence and paragraph boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_PARAGRAPH = re.compile(r"\n\s*\n")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (English averages about 0.75 words per token)."""
    return (len(text.split()) * 4 + 2) // 3


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(paragraph.split())) if s.strip()]


def _hard_split(sentence: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """A sentence too long for one passage, cut between words."""
    pieces, current = [], []
    for word in sentence.split():
        if current and count(" ".join([*current, word])) > max_tokens:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def split_passages(text: str, max_tokens: int = 160, count_tokens: Callable[[str], int] | None = None) -> list[str]:
    """Passages of whole sentences, packed greedily up to ``max_tokens``; paragraph breaks are kept as newlines.

    ``count_tokens`` counts a string's tokens (pass the model tokenizer's for exact sizes); a single
    sentence longer than ``max_tokens`` is cut between words.
    """
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    count = count_tokens or approx_tokens
    passages: list[str] = []
    current = ""
    for paragraph in _PARAGRAPH.split(text):
        for n, sentence in enumerate(_sentences(paragraph)):
            for piece in [sentence] if count(sentence) <= max_tokens else _hard_split(sentence, max_tokens, count):
                joined = f"{current}{' ' if n else chr(10)}{piece}" if current else piece
                if current and count(joined) > max_tokens:
                    passages.append(current)
                    joined = piece
                current = joined
    if current:
        passages.append(current)
    return passages
