"""Split a document into passages of at most ``max_tokens`` tokens at sentence and paragraph boundaries.

Splitting is linear in the text and bounded in memory, whatever its shape (a 5 MB line without a full
stop, a run of NULs, a URL longer than a passage): the token counter only ever sees pieces of about
one passage (never a whole sentence or document), and each passage costs a few counts, found by a
secant search over its cut points that starts from the characters per token of the passage before.

Every passage is one of the strings counted, so :func:`split_with_ids` keeps the token ids of that count: a
passage is tokenised once on its way to a store (its length check and its compression reuse the ids).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from sac_rag.store.validate import check_unicode

_Measure = Callable[[str], tuple[int, Sequence[int] | None]]  # a string's token count, and its ids if kept

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACES = re.compile(r"\s+")
_MAX_STEPS = 64  # counts per passage at most (a counter that is not monotone could otherwise oscillate)
_HORIZON = 64  # characters per token that a passage is looked for in, at most


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (English averages about 0.75 words per token)."""
    return (len(text.split()) * 4 + 2) // 3


def _sentences(paragraph: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(_SPACES.sub(" ", paragraph).strip()) if s]


class _Cutter:
    """Cuts single-spaced text into the longest pieces of at most ``max_tokens``: at spaces, or inside a word
    longer than a passage. Remembers the characters per token of the last piece for its next first guess."""

    def __init__(self, max_tokens: int, measure: _Measure) -> None:
        self.max_tokens = max_tokens
        self.measure = measure
        self.chars_per_token = 4.0

    def pieces(self, text: str) -> Iterator[tuple[str, Sequence[int] | None]]:
        """The pieces of ``text``, each with its ids (None when the measure keeps none)."""
        start = 0
        while start < len(text):
            end, tokens, ids = self._longest(text, start)
            yield text[start:end], ids
            self.chars_per_token = max((end - start) / max(tokens, 1), 0.25)
            start = end + 1 if end < len(text) and text[end] == " " else end

    def _longest(self, text: str, start: int) -> tuple[int, int, Sequence[int] | None]:
        """The end of the longest piece from ``start`` that fits, its token count and its ids.

        Cut points are the spaces after ``start`` and the end of the text, and, inside the first word,
        every character (used only when the whole first word does not fit). The search keeps the
        largest cut known to fit (``lo``) and the smallest known not to (``hi``) and stops when they
        are neighbours; each step guesses by the tokens per character of the last count."""
        cuts = _Cuts(text, start, _HORIZON * self.max_tokens)
        lo, lo_tokens, lo_ids, hi = start, 0, None, None
        guess = cuts.snap(start + max(1, round(self.chars_per_token * self.max_tokens)))
        for _ in range(_MAX_STEPS):
            if guess is None:
                break
            tokens, ids = self.measure(text[start:guess])
            if tokens <= self.max_tokens:
                lo, lo_tokens, lo_ids = guess, tokens, ids
            else:
                hi = guess
            if lo == cuts.end or (hi is not None and cuts.after(lo) == hi):
                break
            scale = min(self.max_tokens / max(tokens, 1), 8.0)  # at most 8x longer: counts stay passage-sized
            guess = cuts.between(start + round((guess - start) * scale), lo, hi)
        if lo == start:  # not even one character fits: it becomes a passage of its own
            return start + 1, *self.measure(text[start : start + 1])
        return lo, lo_tokens, lo_ids


class _Cuts:
    """The cut points of a piece starting at ``start``: every character up to the end of the first word, then
    each space, then the end of the text. Nothing past ``horizon`` characters is looked at (no piece of
    ``max_tokens`` is that long unless its tokens average over 64 characters; then it is cut there)."""

    def __init__(self, text: str, start: int, horizon: int) -> None:
        self.text, self.start = text, start
        self.end = min(len(text), start + horizon)
        space = text.find(" ", start, self.end)
        self.word = self.end if space < 0 else space

    def snap(self, i: int) -> int:
        """The last cut point at or before ``i`` (``i`` past the end: the end)."""
        if i >= self.end:
            return self.end
        if i <= self.word:
            return max(i, self.start + 1)
        return self.text.rfind(" ", self.word, i + 1)

    def after(self, cut: int) -> int | None:
        if cut < self.word:
            return cut + 1
        if cut >= self.end:
            return None
        space = self.text.find(" ", cut + 1, self.end)
        return self.end if space < 0 else space

    def before(self, cut: int) -> int | None:
        if cut <= self.word:
            return cut - 1 if cut - 1 > self.start else None
        return self.text.rfind(" ", self.word, cut)

    def between(self, i: int, lo: int, hi: int | None) -> int | None:
        """The cut point nearest ``i`` strictly between ``lo`` and ``hi``; None when there is none."""
        cut = self.snap(i)
        if cut <= lo:
            cut = self.after(lo)
        if cut is not None and hi is not None and cut >= hi:
            cut = self.before(hi)
        return cut if cut is not None and cut > lo and (hi is None or cut < hi) else None


def split_passages(
    text: str,
    max_tokens: int = 160,
    count_tokens: Callable[[str], int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Passages of whole sentences, packed greedily up to ``max_tokens``; paragraph breaks are kept as newlines.

    ``count_tokens`` counts a string's tokens (pass the model tokenizer's for exact sizes); a sentence
    longer than ``max_tokens`` is cut between words, and a word longer than a passage between
    characters. Time and memory grow linearly with the text. ``progress`` is called with the number
    of characters done since its last call (they add up to ``len(text)``).
    """
    count = count_tokens or approx_tokens
    return [passage for passage, _ in _split(text, max_tokens, lambda s: (count(s), None), progress)]


def split_with_ids(
    text: str,
    max_tokens: int,
    tokenize: Callable[[str], Sequence[int]],
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, Sequence[int]]]:
    """:func:`split_passages` by ``tokenize`` (a string's token ids, e.g. ``sac_rag.text.prompt.encode`` with the
    model's tokenizer), each passage with its ids: those of the one call that measured it."""

    def measure(piece: str) -> tuple[int, Sequence[int]]:
        ids = tokenize(piece)
        return len(ids), ids

    return _split(text, max_tokens, measure, progress)


def _split(
    text: str, max_tokens: int, measure: _Measure, progress: Callable[[int], None] | None
) -> list[tuple[str, Sequence[int] | None]]:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 8:
        raise ValueError(f"max_tokens must be an integer of at least 8, got {max_tokens!r}")
    if not isinstance(text, str):
        raise TypeError(f"text is {type(text).__name__}, expected str")
    check_unicode(text, "text")
    cutter = _Cutter(max_tokens, measure)
    passages: list[tuple[str, Sequence[int] | None]] = []
    current: tuple[str, Sequence[int] | None] = ("", None)  # the passage being packed, and its ids
    done = 0
    for paragraph in _PARAGRAPH.split(text):
        for n, sentence in enumerate(_sentences(paragraph)):
            for k, (piece, ids) in enumerate(cutter.pieces(sentence)):
                if current[0]:
                    joined = f"{current[0]}{' ' if n or k else chr(10)}{piece}"
                    tokens, joined_ids = measure(joined)
                    if tokens > max_tokens:
                        passages.append(current)
                        current = (piece, ids)
                    else:
                        current = (joined, joined_ids)
                else:
                    current = (piece, ids)
                step = min(len(piece) + 1, len(text) - done)  # whitespace runs count as one character here
                done += step
                if progress is not None:
                    progress(step)
    if current[0]:
        passages.append(current)
    if progress is not None and done < len(text):
        progress(len(text) - done)
    return passages
