"""The official SAC token sequences (docs/sac.md section 2): each piece tokenized on its own."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from sac_rag.config import SACConfig


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def bos_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def context_ids(tokenizer: PreTrainedTokenizerBase, text: str, config: SACConfig) -> list[int]:
    """``[BOS] + ids(context_prefix) + ids(text)``: the official context sequence."""
    return bos_ids(tokenizer) + encode(tokenizer, config.context_prefix) + encode(tokenizer, text)


def question_ids(tokenizer: PreTrainedTokenizerBase, question: str, config: SACConfig) -> list[int]:
    """``ids(question_prefix) + ids(question) + ids(answer_prefix)``: the official question sequence."""
    return (
        encode(tokenizer, config.question_prefix)
        + encode(tokenizer, question)
        + encode(tokenizer, config.answer_prefix)
    )
