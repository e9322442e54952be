"""bench/integrity.py runs on a tiny model (its numbers are timings: not checked, only their presence)."""

import sys
from pathlib import Path

from test_store_support import bow_embedder, model, numbered_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import integrity


def test_integrity_bench_measures_verify_and_cold_ask_against_baselines():
    texts = [numbered_text(i) for i in range(12)]
    out = integrity.measure(model(), texts, embedder=bow_embedder, k=2, repeats=1)
    assert out["passages"] == 12 and out["store_bytes"] > 0
    for key in ("verify_s", "verify_baseline_s", "cold_ask_s", "check_index_sha256_s", "check_rows_plain_s"):
        assert out[key] > 0, key
    assert out["verify_over_baseline"] == out["verify_s"] / out["verify_baseline_s"]
    assert out["cold_ask_over_baseline"] >= 1.0
