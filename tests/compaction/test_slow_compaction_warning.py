"""Building a compact memory of a long passage on a CPU warns once that it is slow, naming what to do about it."""

from __future__ import annotations

import warnings

import pytest

from sac_rag import SACConfig, SACModel
from sac_rag.compaction import compactor
from sac_rag.compaction.compactor import SlowCompactionWarning
from sac_rag.testing import tiny_llama, tiny_tokenizer

TEXT = "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge."


@pytest.fixture(scope="module")
def model() -> SACModel:
    cfg = SACConfig(ratio=5, chunk_size=64, lora_rank=4, lora_alpha=8, memory_kind="compact")
    return SACModel(tiny_llama(), tiny_tokenizer(), cfg)


def test_a_passage_longer_than_the_limit_warns_on_a_cpu(model, monkeypatch):
    tokens = len(model.tokenizer(TEXT)["input_ids"])
    monkeypatch.setattr(compactor, "LONG_PASSAGE_TOKENS", tokens // 2)
    with pytest.warns(SlowCompactionWarning, match=r"on a CPU.*256-512 tokens"):
        (memory,) = model.compress([TEXT])
    assert memory.meta["kind"] == "compact"


def test_passages_within_the_limit_do_not_warn(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowCompactionWarning)
        model.compress([TEXT, TEXT[:20]])
    assert len(model.tokenizer(TEXT)["input_ids"]) < compactor.LONG_PASSAGE_TOKENS
