"""Each memory kind has its maker, and `SACModel.compress` is the one entry to all of them."""

from __future__ import annotations

import pytest
import torch

from sac_rag.compaction.compactor import Compactor
from sac_rag.memory.maker import MemoryMaker
from sac_rag.memory.sac import EncodedMemories
from sac_rag.testing import text_of_tokens, tiny_model
from sac_rag.text.prompt import context_sequences


@pytest.mark.parametrize("kind", ["sac", "compact", "full_kv"])
def test_compress_is_the_kind_s_maker_stamped_with_its_fingerprint(kind):
    model = tiny_model("llama")
    texts = [text_of_tokens(40, seed=1), text_of_tokens(70, seed=2)]
    maker = model.memory_maker(kind)
    assert isinstance(maker, MemoryMaker) and maker.kind == kind
    assert isinstance(maker, Compactor if kind == "compact" else EncodedMemories)
    sequences = context_sequences(model.tokenizer, model.config, texts)
    with torch.inference_mode():
        made = maker.make(sequences, position_offset=3, batch_size=2, progress=False)
    got = (
        model.encode_full_kv(texts, position_offset=3)
        if kind == "full_kv"
        else model.compress(texts, kind=kind, position_offset=3)
    )
    for m, g in zip(made, got, strict=True):
        assert m.meta["kind"] == g.meta["kind"] == kind and m.fingerprint == "" and m.offset == g.offset == 3
        assert torch.equal(m.keys, g.keys) and torch.equal(m.values, g.values)
        assert g.fingerprint == ("" if kind == "full_kv" else model.memory_fingerprint(kind))


def test_an_unknown_kind_is_refused_by_name():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="'anchors'"):
        model.memory_maker("anchors")
    with pytest.raises(ValueError, match="kind must be one of sac, compact"):
        model.compress("text", kind="full_kv")
