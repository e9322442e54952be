"""Answer text from a stream of generated token ids, piece by piece."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from transformers import PreTrainedTokenizerBase


class TextStream:
    """Iterates over the text pieces of ``tokens`` as they are generated; ``ids`` holds the tokens read so far.

    A piece is held back while the text ends in an incomplete multi-byte character.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, tokens: Iterable[int]) -> None:
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.ids: list[int] = []

    def __iter__(self) -> Iterator[str]:
        emitted = ""
        for token in self.tokens:
            self.ids.append(token)
            text = self.text
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
                continue
            if len(text) > len(emitted):
                yield text[len(emitted) :]
                emitted = text
        text = self.text
        if len(text) > len(emitted):
            yield text[len(emitted) :]

    @property
    def text(self) -> str:
        """The text of the tokens read so far (special tokens skipped)."""
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)
