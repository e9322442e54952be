"""Greedy answering with timing, identical for every method: stop at EOS or any newline token."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from sac_rag.decoding.generate import MemoryDecoder
from sac_rag.memory.compose import Segment


@dataclass
class Answer:
    """One decoded answer: ``text`` is cut at the first newline and stripped (what is scored)."""

    text: str
    output: str  # the decoded tokens as generated
    ttft_s: float  # prefill + first token
    total_s: float  # prefill + all generated tokens
    new_tokens: int


@functools.cache
def _newline_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    return frozenset(i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i]))


def stop_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every token whose text contains a newline, and EOS."""
    stops = set(_newline_ids(tokenizer))
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    return stops


def answer_text(output: str) -> str:
    """The scored answer: the output up to its first newline, stripped."""
    return output.split("\n", 1)[0].strip()


@torch.inference_mode()
def greedy_answer(
    decoder: MemoryDecoder,
    segments: list[Segment],
    tokenizer: PreTrainedTokenizerBase,
    max_new_tokens: int,
) -> Answer:
    """Decode greedily from ``segments``, timing the first token and the whole answer."""
    t0 = time.perf_counter()
    ids: list[int] = []
    ttft = 0.0
    for token in decoder.greedy(segments, max_new_tokens, stop_ids(tokenizer)):
        if not ids:
            ttft = time.perf_counter() - t0
        ids.append(token)
    total = time.perf_counter() - t0
    output = tokenizer.decode(ids, skip_special_tokens=True)
    return Answer(answer_text(output), output, ttft, total, len(ids))
