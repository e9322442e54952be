"""The official SAC token sequences (docs/sac.md section 2): each piece tokenized on its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from transformers import PreTrainedTokenizerBase


class PromptTemplate(Protocol):
    """The official prompt's strings (a :class:`~sac_rag.config.SACConfig` has them; text sits below the config,
    so it names only what it reads)."""

    context_prefix: str
    question_prefix: str
    answer_prefix: str


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def bos_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def context_ids(tokenizer: PreTrainedTokenizerBase, text: str, config: PromptTemplate) -> list[int]:
    """``[BOS] + ids(context_prefix) + ids(text)``: the official context sequence."""
    return bos_ids(tokenizer) + encode(tokenizer, config.context_prefix) + encode(tokenizer, text)


def header_length(tokenizer: PreTrainedTokenizerBase, config: PromptTemplate) -> int:
    """Tokens of the context header every context sequence opens with: ``[BOS] + ids(context_prefix)``."""
    return len(context_ids(tokenizer, "", config))


def question_ids(tokenizer: PreTrainedTokenizerBase, question: str, config: PromptTemplate) -> list[int]:
    """``ids(question_prefix) + ids(question) + ids(answer_prefix)``: the official question sequence."""
    return (
        encode(tokenizer, config.question_prefix)
        + encode(tokenizer, question)
        + encode(tokenizer, config.answer_prefix)
    )


def context_sequences(
    tokenizer: PreTrainedTokenizerBase,
    config: PromptTemplate,
    texts: Sequence[str] | str,
    add_context_prefix: bool = True,
    token_ids: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Each text as the sequence a memory is made from: its official context (``add_context_prefix``) or its
    ids alone. ``token_ids``: the texts' ids already computed (by :func:`encode`), used as they are."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise ValueError("no texts given")
    if token_ids is not None and len(token_ids) != len(texts):
        raise ValueError(f"{len(token_ids)} token id sequences for {len(texts)} texts")
    # each piece is tokenised on its own: a text's context is the context of "" followed by the text's ids
    prefix = context_ids(tokenizer, "", config) if add_context_prefix else []  # header_length's tokens
    sequences = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        ids = prefix + (encode(tokenizer, text) if token_ids is None else [int(t) for t in token_ids[i]])
        if not ids:
            raise ValueError(f"texts[{i}] is empty: nothing to compress")
        sequences.append(ids)
    return sequences
