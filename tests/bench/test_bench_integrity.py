"""bench/integrity.py runs on a tiny model (its numbers are timings: checked only where one side is made slower on
purpose, by a clock that runs ahead, and that the checks on a cold ask's path are a part of it)."""

from support import SkewedClock
from support.store import bow_embedder, numbered_text

from bench import integrity
from sac_rag.store import MemoryStore
from sac_rag.testing import tiny_model


def test_integrity_bench_measures_verify_and_cold_ask_against_baselines(monkeypatch):
    slower = SkewedClock(monkeypatch).slower
    monkeypatch.setattr(MemoryStore, "verify", slower(MemoryStore.verify, 1.0))  # verify, a second slower
    texts = [numbered_text(i) for i in range(12)]
    out = integrity.measure(tiny_model(), texts, embedder=bow_embedder, k=2, repeats=1)
    assert out["passages"] == 12 and out["store_bytes"] > 0
    for key in ("verify_s", "verify_baseline_s", "cold_ask_s", "check_index_sha256_s", "check_rows_plain_s"):
        assert out[key] > 0, key
    assert out["verify_over_baseline"] > 1  # "> 1: verify slower than its baseline"
    assert 0 < out["cold_ask_checks_s"] < out["cold_ask_s"]  # the checks on its path: a part of the cold ask
