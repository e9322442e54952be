"""The benchmark code runs on a tiny model. Its numbers are timings, not checked, except where one side is made
slower on purpose (by a clock that runs ahead, support.SkewedClock): then each ratio must say so, the way its name
reads."""

import pytest
import torch
from support import SkewedClock

from bench import nbytes, peak_memory, throughput, ttft
from bench.common import interleaved_medians, table
from sac_rag.testing import text_of_tokens, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def setup():
    return tiny_model(), [text_of_tokens(n, seed=n) for n in (30, 44, 57)]


def test_ttft_rows(setup):
    model, texts = setup
    rows, parts = ttft.measure(model, texts, ks=[1, 3], new_tokens=3, repeats=1)
    assert [r["k"] for r in rows] == [1, 3]
    assert all(r["ttft_ms_sac"] > 0 and r["ttft_raw_over_sac"] > 0 and r["decode_tok_s_raw"] > 0 for r in rows)
    assert [(p["k"], p["method"]) for p in parts] == [(k, m) for k in (1, 3) for m in ("question", *ttft.KINDS)]
    for p in parts:  # the phases add up to the whole, give or take the bookkeeping between them
        assert p["forward_ms"] > 0 and p["attention_ms"] > 0 and p["head_ms"] > 0
        assert sum(p[f"{name}_ms"] for name in ttft.PHASES) == pytest.approx(p["total_ms"], rel=0.25)
    assert all(p["sink_ms"] == 0 for p in parts)  # the tiny model reads its memories without a sink
    assert rows[1]["raw_tokens"] >= rows[0]["raw_tokens"] + 44 + 57  # k = 3: the two more passages read as text


def test_nbytes_match_the_codec_and_the_budgets(setup):
    model, texts = setup
    out = nbytes.measure(model, texts)
    # stored full K/V = every token's K/V in bf16 plus its int64 position
    assert out["full_kv_bfloat16"] == pytest.approx(out["full_kv_nbytes_bf16"] + 8 * out["mean_tokens"])
    # SAC keeps one anchor per `ratio` tokens in every head
    assert out["mean_entries_per_head_sac"] == pytest.approx(out["mean_tokens"] / model.config.ratio, rel=0.25)
    # a compaction memory stays within its byte budget in the dtype it is made for, biases, positions, counts
    # and scales included; int8 entries take half the bytes, so twice as many fit
    budget = model.config.compact_keep * out["full_kv_nbytes_bf16"]
    for stored in (out["compact_int8"], out["compact_bf16_bfloat16"]):
        assert 0.5 * budget < stored <= budget
    entries = out["mean_entries_per_head_compact"] / out["mean_entries_per_head_compact_bf16"]
    assert entries == pytest.approx(2, rel=0.15)
    assert all(out[f"{kind}_int8"] < out[f"{kind}_bfloat16"] for kind in nbytes.KINDS)


def test_throughput(setup):
    model, texts = setup
    out = throughput.measure(model, texts, batch_size=2, repeats=1)
    assert out["sac_batched_passages_per_s"] > 0 and out["forward_one_by_one_passages_per_s"] > 0
    assert out["compact_passages_per_s"] > 0


def test_peak_sampler():
    with peak_memory.PeakSampler() as s:
        block = bytearray(32 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
    assert s.peak >= peak_memory.rss_bytes() - 2**20


def test_helpers():
    assert set(interleaved_medians({"a": lambda: None, "b": lambda: 1}, 2)) == {"a", "b"}
    assert table([{"x": 1.234, "y": "s"}], ["x", "y"]).splitlines()[2] == "| 1.23 | s |"


@pytest.mark.parametrize("kind", ["sac", "compact"])
def test_memories_round_trip_through_safetensors(tmp_path, setup, kind):
    model, texts = setup
    chunks = model.compress(texts[:2], kind=kind)
    peak_memory.save_memories(tmp_path / "m.safetensors", chunks)
    back = peak_memory.load_memories(tmp_path / "m.safetensors")
    assert [(c.length, c.fingerprint, c.meta) for c in back] == [(c.length, c.fingerprint, c.meta) for c in chunks]
    assert all((a.keys == b.keys).all() and (a.positions == b.positions).all() for a, b in zip(back, chunks))
    assert all((a.bias is None) == (kind == "sac") for a in back)
    if kind == "compact":
        assert all(torch.equal(a.bias, b.bias) for a, b in zip(back, chunks))


def test_sized_passages_cut_real_contexts_to_the_chunk_size(tmp_path):
    import json

    from bench.common import sized_passages

    tok = tiny_tokenizer()
    data = tmp_path / "qa.jsonl"
    rows = [{"header": {"dataset": "t"}}]
    rows += [
        {"context": text_of_tokens(40, seed=i), "qas": [{"qid": str(i), "question": "q", "answers": ["a"]}]}
        for i in range(12)
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = sized_passages(data, 3, 64, tok)
    assert len(out) == 3 and len(set(out)) == 3
    assert all(abs(len(tok(t, add_special_tokens=False)["input_ids"]) - 64) <= 2 for t in out)
    with pytest.raises(ValueError, match="too few contexts"):
        sized_passages(data, 20, 64, tok)


def test_reader_cost(monkeypatch):
    from bench import reader_cost

    model = tiny_model(reader_rank=4, reader_alpha=8.0)
    texts = [text_of_tokens(n, seed=n) for n in (30, 44)]
    reader = model.generator().decoder  # the decoder the benchmark times as "reader", made a second slower to answer
    monkeypatch.setattr(reader, "greedy", SkewedClock(monkeypatch).slower(reader.greedy, 1.0))
    row = reader_cost.measure(model, texts, k=2, new_tokens=3, repeats=1)
    assert row["ttft_ms_sac_base"] > 0 and row["decode_tok_s_raw_base"] > 0
    assert row["ttft_sac_reader_over_base"] > 1 and row["ttft_raw_reader_over_base"] > 1  # "> 1: reader slower"


def test_distill_cache(tmp_path, monkeypatch):
    from bench import distill_cache
    from sac_rag.training.tasks import SACTask

    model = tiny_model(rank=4)
    # the teacher, a second slower a call: distilling from it at every step is slower than from the warm cache
    clock = SkewedClock(monkeypatch)
    monkeypatch.setattr(SACTask, "_teacher_logits", clock.slower(SACTask._teacher_logits, 1.0))
    texts = [text_of_tokens(n, seed=n) for n in (30, 44)]
    for stage in ("qa", "lm"):
        row = distill_cache.measure(
            model, distill_cache.samples(texts, stage), k=8, repeats=1, cache_dir=tmp_path / stage
        )
        assert row["s_per_example_teacher"] > 0 and row["cache_kib_per_example"] > 0
        assert row["teacher_over_cached"] > 1 and row["s_per_example_teacher"] > row["s_per_example_cached"]
