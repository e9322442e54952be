"""bench.ttft --from-store runs on a tiny model: each memory kind written once to a store of the dtype a real store
holds it in, read afresh within every timed run (the ``read`` phase)."""

import pytest

from bench import ttft
from sac_rag.testing import text_of_tokens, tiny_model


def test_store_dtypes_are_those_a_real_store_picks():
    model = tiny_model(memory_kind="compact")
    assert ttft.store_dtype(model, "compact") == ("int8" if model.config.compact_dtype == "int8" else "bfloat16")
    assert ttft.store_dtype(model, "sac") == "bfloat16"
    assert ttft.store_dtype(model, "full_kv") == "bfloat16"
    assert model.config.memory_kind == "compact"  # asked about, not changed


def test_ttft_from_store_rows(tmp_path):
    model = tiny_model()
    texts = [text_of_tokens(n, seed=n) for n in (30, 44)]
    rows, parts = ttft.measure(model, texts, ks=[2], new_tokens=2, repeats=1, store_dir=tmp_path)
    stored = [f"{m}_store" for m in ttft.KINDS]
    assert [p["method"] for p in parts] == ["question", *ttft.KINDS, *stored]
    row = rows[0]
    assert all(row[f"ttft_ms_{m}"] > 0 and row[f"cpu_ms_{m}"] > 0 for m in stored)
    assert row["cpu_compact_store_over_sac_store"] > 0 and row["ttft_compact_store_over_fullkv_store"] > 0
    for p in parts:
        assert (p["read_ms"] > 0) == p["method"].endswith("_store")  # only a store's methods read
        assert sum(p[f"{name}_ms"] for name in ttft.STORE_PHASES) == pytest.approx(p["total_ms"], rel=0.25)


def test_main_from_store_writes_its_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ttft, "setup", lambda args: tiny_model())
    monkeypatch.setattr(ttft, "passages", lambda path, n: [text_of_tokens(20 + n, seed=n) for n in range(n)])
    args = ["--k", "1", "--repeats", "1", "--new-tokens", "2", "--out", str(tmp_path)]
    ttft.main(args)
    out = capsys.readouterr().out
    assert "read from a store" not in out and "read_ms" not in out  # the existing output, as it was
    ttft.main([*args, "--from-store"])
    out = capsys.readouterr().out
    assert "read from a store within the timing" in out and "| read_ms |" in out
    assert (tmp_path / "ttft.json").exists()
