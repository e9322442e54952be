"""MemoryStore round trips, deduplication, dtypes, refusals and bad input (tiny model, bag-of-words embedder)."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from support.store import PASSAGES, bow_embedder

from sac_rag.store import MemoryStore, StoreCorrupted, StoreError, StoreMismatch
from sac_rag.testing import tiny_model


@pytest.fixture
def store(tmp_path, sac):
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder, memory_dtype="float32") as s:
        yield s


def test_round_trip_add_search_memories_get(store, sac):
    ids = store.add(PASSAGES, metadata=[{"n": i} for i in range(len(PASSAGES))], progress=False)
    assert ids == list(range(len(PASSAGES))) and len(store) == len(PASSAGES)
    hits = store.search("capital of France", k=2)
    assert hits[0].id == 0 and hits[0].text == PASSAGES[0] and hits[0].metadata == {"n": 0}
    assert hits[0].score > hits[1].score
    expected = sac.compress([PASSAGES[3], PASSAGES[1]])
    got = store.memories([3, 1])
    for e, g in zip(expected, got):
        assert torch.equal(e.keys, g.keys) and torch.equal(e.values, g.values)
        assert torch.equal(e.positions, g.positions) and (e.length, e.offset) == (g.length, g.offset)
        assert g.fingerprint == sac.fingerprint and g.meta["kind"] == "sac"
    # the memories decode exactly like freshly compressed ones
    question = "Where was Turing born?"
    generator = sac.generator()
    answers = [generator.generate_ids(question, memories, max_new_tokens=4) for memories in (got, expected)]
    assert answers[0] == answers[1]
    assert [r.text for r in store.get([4, 0])] == [PASSAGES[4], PASSAGES[0]]


def test_memories_are_views_of_the_mapped_shard(store):
    store.add(PASSAGES, progress=False)
    (shard,) = (store.path / "shards").iterdir()
    chunk = store.memories([2])[0]
    # the tensor's storage is the whole mapped file: nothing was copied out of it
    assert chunk.keys.untyped_storage().nbytes() == shard.stat().st_size
    assert chunk.keys.untyped_storage().data_ptr() == chunk.values.untyped_storage().data_ptr()


def test_identical_text_is_compressed_once(store):
    store.add([PASSAGES[0], PASSAGES[1], PASSAGES[0]], progress=False)
    store.add([PASSAGES[1]], progress=False)
    stats = store.stats()
    assert stats["passages"] == 4 and stats["memories"] == 2
    assert torch.equal(store.memories([0])[0].keys, store.memories([2])[0].keys)


def test_delete_upsert_compact(store):
    store.add(PASSAGES, progress=False)
    assert store.delete([1, 3]) == 2
    assert sorted(store.ids()) == [0, 2, 4]
    assert all(h.id not in (1, 3) for h in store.search("Turing born London", k=5))
    with pytest.raises(ValueError, match=r"not in the store: \[1\]"):
        store.delete([0, 1])
    assert len(store) == 3  # all or nothing
    store.upsert(["Berlin is the capital of Germany.", PASSAGES[2]], metadata=[{"v": 2}, {}], ids=[0, 2])
    assert store.get([0])[0].text.startswith("Berlin") and store.get([0])[0].metadata == {"v": 2}
    assert store.search("capital of Germany", k=1)[0].id == 0
    stats = store.stats()
    assert stats["dead_memory_bytes"] > 0 and stats["shards"] == 2
    result = store.compact()
    stats = store.stats()
    assert stats["dead_memory_bytes"] == 0 and stats["shards"] == 1
    assert len(list((store.path / "shards").iterdir())) == 1
    assert result["shard_bytes_after"] < result["shard_bytes_before"]
    assert store.verify().ok
    assert store.get([4])[0].text == PASSAGES[4] and store.memories([0, 2, 4])[1].length > 0


def test_upsert_skips_unchanged_passages(store):
    store.upsert(PASSAGES, ids=[10, 11, 12, 13, 14], progress=False)
    generation = store.stats()["generation"]
    store.upsert(PASSAGES, ids=[10, 11, 12, 13, 14], progress=False)
    assert store.stats()["generation"] == generation


def test_reopen_sees_everything_and_rebuilds_a_missing_index(tmp_path, sac):
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder) as store:
        store.add(PASSAGES, progress=False)
    for f in (tmp_path / "s" / "index").iterdir():
        f.unlink()
    with MemoryStore.open(tmp_path / "s", sac, bow_embedder) as store:
        assert store.search("quick brown fox", k=1)[0].id == 2


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int8"])
def test_memory_dtypes(tmp_path, sac, dtype):
    with MemoryStore.create(tmp_path / dtype, sac, bow_embedder, memory_dtype=dtype) as store:
        store.add(PASSAGES, progress=False)
        reference = sac.compress(PASSAGES[:1])[0]
        chunk = store.memories([0])[0]
        error = (chunk.keys.float() - reference.keys).abs().max() / reference.keys.abs().max()
        assert error < {"bfloat16": 1e-2, "float16": 1e-3, "int8": 1e-2}[dtype]
        fp32_kv = reference.nbytes
        stats = store.stats()
        assert stats["memory_dtype"] == dtype
        expected = {"bfloat16": 0.5, "float16": 0.5, "int8": 0.25}[dtype]
        kv = chunk.meta["stored_nbytes"] - 8 * chunk.n_anchors  # without the positions
        layers, heads = reference.keys.shape[:2]
        scales = 2 * layers * heads * 2 if dtype == "int8" else 0  # one float16 per (K/V, layer, head)
        assert kv == fp32_kv * expected + scales


def test_other_compressor_or_embedder_is_refused_unless_rebuilt(tmp_path, sac):
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder) as store:
        store.add(PASSAGES, progress=False)
    other = tiny_model(ratio=4)
    with pytest.raises(StoreMismatch, match=f"made by {sac.fingerprint}"):
        MemoryStore.open(tmp_path / "s", other, bow_embedder)

    def other_embedder(texts):
        return bow_embedder(texts)[:, ::-1].copy()

    with pytest.raises(StoreMismatch, match="embedded with 'test-bow64'"):
        MemoryStore.open(tmp_path / "s", sac, other_embedder)
    with MemoryStore.open(tmp_path / "s", other, bow_embedder, rebuild=True) as store:
        assert store.fingerprint == other.fingerprint
        assert torch.equal(store.memories([1])[0].keys, other.compress([PASSAGES[1]])[0].to(torch.bfloat16).keys)
        assert store.verify().ok
    with MemoryStore.open(tmp_path / "s", other, bow_embedder) as store:
        assert len(store) == len(PASSAGES)
    with MemoryStore.open(tmp_path / "s", other, other_embedder, rebuild=True) as store:
        assert store.embedder_name.endswith("other_embedder") and store.search(PASSAGES[3], k=1)[0].id == 3


def test_corrupted_shard_is_named(tmp_path, sac):
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder) as store:
        store.add(PASSAGES, progress=False)
    (shard,) = (tmp_path / "s" / "shards").iterdir()
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # a flipped byte inside the last memory's tensors
    shard.write_bytes(bytes(data))
    with MemoryStore.open(tmp_path / "s", sac, bow_embedder) as store:
        report = store.verify()
        assert not report.ok and str(shard) in report.problems[0]
        with pytest.raises(StoreCorrupted, match=shard.name):
            report.raise_if_bad()
        damaged = [i for i in store.ids() if _fails(store, i)]
        assert len(damaged) == 1  # the other memories still read


def _fails(store, i) -> bool:
    try:
        store.memories([i])
    except StoreCorrupted:
        return True
    return False


def test_foreign_or_missing_store(tmp_path, sac):
    with pytest.raises(FileNotFoundError, match="no sac_rag store at"):
        MemoryStore.open(tmp_path / "nowhere", sac)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.sqlite").write_bytes(b"this is not a database at all" * 10)
    with pytest.raises(StoreCorrupted, match="manifest.sqlite"):
        MemoryStore.open(tmp_path / "junk", sac)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "manifest.sqlite").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreCorrupted, match="not a sac_rag manifest"):
        MemoryStore.open(other, sac)
    with pytest.raises(StoreError, match="already exists"):
        MemoryStore.create(tmp_path / "junk", sac, bow_embedder)


def test_bad_input_is_refused_and_loses_nothing(store, sac):
    store.add(PASSAGES[:2], progress=False)
    generation = store.stats()["generation"]
    huge = "word " * (store.max_passage_tokens + 10)
    cases = [
        (["fine", "  "], None, None, ValueError, r"texts\[1\] is empty"),
        ([], None, None, ValueError, "no texts"),
        (["fine", huge], None, None, ValueError, "passage 1 has .* tokens"),
        (["a", "b"], [{}], None, ValueError, "1 metadata entries for 2 texts"),
        (["a"], [{"x": object()}], None, ValueError, "not JSON-serialisable"),
        (["a"], None, [-1], ValueError, "ids"),
        (["a", "b"], None, [7, 7], ValueError, "repeat"),
        (["a"], None, [0], ValueError, "already in the store"),
        ([3], None, None, TypeError, "expected str"),
    ]
    for texts, metadata, ids, error, message in cases:
        with pytest.raises(error, match=message):
            store.add(texts, metadata=metadata, ids=ids, progress=False)
    assert len(store) == 2 and store.stats()["generation"] == generation
    assert [h.id for h in store.search("Paris France Turing", k=50)] in ([0, 1], [1, 0])  # k > size: all
    for bad_k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            store.search("Paris", k=bad_k)
    with pytest.raises(ValueError, match="non-empty"):
        store.search("   ")
    with pytest.raises(ValueError, match="not in the store"):
        store.memories([99])


def test_store_without_model_reads_but_cannot_add(tmp_path, sac):
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder) as store:
        store.add(PASSAGES, progress=False)
    with MemoryStore.open(tmp_path / "s", embedder=bow_embedder) as store:
        assert store.search("lazy dog", k=1)[0].id == 2 and store.memories([2])[0].n_anchors > 0
        with pytest.raises(StoreError, match="needs the compressor"):
            store.add(["more"], progress=False)
    with MemoryStore.open(tmp_path / "s") as store, pytest.raises(StoreError, match="pass it as `embedder`"):
        store.search("lazy dog")
