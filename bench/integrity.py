"""What the store's integrity checks cost: ``verify`` and a cold ``ask``, each against a baseline measured in
the same run (ratios, never absolute timings, are what compare across machines).

* verify: ``MemoryStore.verify`` (SQLite structure, every row's digest, shard sha256, index sha256 and
  contents) against the checks it made before row digests existed (shard sha256, the CRC of each
  memory, the index file's ids), re-implemented here as :func:`shard_and_index_only_verify`.
* cold ask: open the store, search, read the memories and answer one token (the model already
  loaded), against the same steps minus the checks on that path, each timed on its own here: the store
  metadata digests at open, the sha256 of the index file at load, and the digests of the rows read::

    python bench/integrity.py --passages 200 [--model DIR] [--dtype int8] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss

from sac_rag.corpus import to_passages
from sac_rag.corpus.demo_corpus import wikipedia_articles
from sac_rag.model import SACModel
from sac_rag.pipeline import SACRAG
from sac_rag.store import MemoryStore
from sac_rag.store.layout import MANIFEST, SHARDS
from sac_rag.store.shards import sha256_file

QUESTION = "Who wrote Animal Farm?"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def shard_and_index_only_verify(store: MemoryStore) -> bool:
    """The checks ``verify`` made before row digests: shard sha256, each memory's CRC, the index file's ids."""
    ok = True
    for name, (sha, size) in store.manifest.shard_rows().items():
        path = store.path / SHARDS / name
        ok &= path.stat().st_size == size and sha256_file(path) == sha
    for row in store.manifest.memory_rows().values():
        store.memory_tensors(row)
    index = faiss.read_index(str(store.index_path()))
    return ok and set(faiss.vector_to_array(index.id_map).tolist()) == set(store.ids())


def cold_ask(path: Path, model, embedder, k: int) -> None:
    with MemoryStore.open(path, model, embedder) as store:
        SACRAG(store, model, max_new_tokens=1).query(QUESTION, k)


def path_checks(path: Path, k: int) -> dict[str, float]:
    """Seconds of each check on a cold ask's path, and of the same step without it."""
    with MemoryStore.open(path) as store:
        manifest, index_file = store.manifest, store.index_path()
        ids = store.ids()[:k]
        rows = manifest.passages(ids)
        hashes = [rows[i].hash for i in ids]
        data = index_file.read_bytes()
        plain = sqlite3.connect(path / MANIFEST)
        marks = ",".join("?" * len(ids))
        out = {
            "meta_digests": median_seconds(manifest.check_meta, 20),
            "index_sha256": median_seconds(lambda: hashlib.sha256(data).hexdigest(), 20),
            "rows_checked": median_seconds(lambda: (manifest.passages(ids), manifest.memory_rows(hashes)), 20),
            "rows_plain": median_seconds(
                lambda: (
                    plain.execute(f"SELECT * FROM passages WHERE id IN ({marks})", ids).fetchall(),
                    plain.execute(f"SELECT * FROM memories WHERE hash IN ({marks})", hashes).fetchall(),
                ),
                20,
            ),
        }
        plain.close()
    return out


def measure(model, texts: list[str], *, embedder=None, k: int = 3, repeats: int = 3, dtype: str = "bfloat16") -> dict:
    """The figures of one store of ``texts`` (``embedder`` None: the offline default)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        with MemoryStore.create(path, model, embedder, memory_dtype=dtype) as store:
            store.add(texts, progress=False)
            verify_s = median_seconds(lambda: store.verify().raise_if_bad(), repeats)
            baseline_verify_s = median_seconds(lambda: shard_and_index_only_verify(store), repeats)
            disk = store.disk_bytes()
        cold_ask(path, model, embedder, k)  # first-call costs (embedder, kernels) out of the timings
        cold_s = median_seconds(lambda: cold_ask(path, model, embedder, k), repeats)
        checks = path_checks(path, k)
    check_s = checks["meta_digests"] + checks["index_sha256"] + max(checks["rows_checked"] - checks["rows_plain"], 0)
    return {
        "passages": len(texts),
        "memory_dtype": dtype,
        "store_bytes": disk,
        "verify_s": verify_s,
        "verify_baseline_s": baseline_verify_s,
        "verify_over_baseline": verify_s / baseline_verify_s,
        "cold_ask_s": cold_s,
        "cold_ask_checks_s": check_s,
        "cold_ask_over_baseline": cold_s / max(cold_s - check_s, 1e-9),
        **{f"check_{name}_s": seconds for name, seconds in checks.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--passages", type=int, default=200)
    p.add_argument("--model", default=None, help="SAC checkpoint dir or base model (default: the offline default)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    model = SACModel.load(args.model)
    texts = to_passages(wikipedia_articles(limit=max(8, args.passages // 4)), 160, model.count_tokens).texts
    result = measure(model, texts[: args.passages], k=args.k, repeats=args.repeats, dtype=args.dtype)
    print(json.dumps(result, indent=1))
    print(
        f"verify: {result['verify_s']:.3f}s vs {result['verify_baseline_s']:.3f}s without row digests "
        f"({result['verify_over_baseline']:.2f}x); cold ask: {result['cold_ask_s']:.3f}s, of which checks "
        f"{result['cold_ask_checks_s'] * 1000:.2f} ms ({result['cold_ask_over_baseline']:.3f}x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
