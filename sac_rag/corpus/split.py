"""Split a document into passages of at most ``max_tokens`` tokens at sentence and paragraph boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable

from sac_rag.store.validate import check_unicode

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_PARAGRAPH = re.compile(r"\n\s*\n")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (English averages about 0.75 words per token)."""
    return (len(text.split()) * 4 + 2) // 3


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(paragraph.split())) if s.strip()]


def _longest_prefix(text: str, max_tokens: int, count: Callable[[str], int]) -> int:
    """The length of the longest prefix of ``text`` of at most ``max_tokens`` tokens (at least 1 character)."""
    low, high = 1, max_tokens
    while high < len(text) and count(text[:high]) <= max_tokens:  # grow until too long (or all of it)
        low, high = high, 2 * high
    high = min(high, len(text))
    if count(text[:high]) <= max_tokens:
        return high
    while high - low > 1:  # count(text[:low]) fits (or low is 1), count(text[:high]) does not
        mid = (low + high) // 2
        low, high = (mid, high) if count(text[:mid]) <= max_tokens else (low, mid)
    return low


def _cut_word(word: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """A single word longer than a passage (a URL, a run of NULs), cut between characters."""
    pieces = []
    while word:
        n = _longest_prefix(word, max_tokens, count)
        pieces.append(word[:n])
        word = word[n:]
    return pieces


def _hard_split(sentence: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """A sentence too long for one passage, cut between words (and inside words longer than a passage)."""
    pieces, current = [], []
    for word in sentence.split():
        parts = [word] if count(word) <= max_tokens else _cut_word(word, max_tokens, count)
        for part in parts:
            if current and count(" ".join([*current, part])) > max_tokens:
                pieces.append(" ".join(current))
                current = []
            current.append(part)
    if current:
        pieces.append(" ".join(current))
    return pieces


def split_passages(text: str, max_tokens: int = 160, count_tokens: Callable[[str], int] | None = None) -> list[str]:
    """Passages of whole sentences, packed greedily up to ``max_tokens``; paragraph breaks are kept as newlines.

    ``count_tokens`` counts a string's tokens (pass the model tokenizer's for exact sizes); a single
    sentence longer than ``max_tokens`` is cut between words.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 8:
        raise ValueError(f"max_tokens must be an integer of at least 8, got {max_tokens!r}")
    if not isinstance(text, str):
        raise TypeError(f"text is {type(text).__name__}, expected str")
    check_unicode(text, "text")
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
