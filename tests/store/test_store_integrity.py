"""Every byte of a store that can change an answer or a source is checked: random byte flips in every kind
of store file are detected and named, damaged parts are never used, and ``repair`` brings the store back."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from support.store import PASSAGES, bow_embedder

from sac_rag.store import MemoryStore, StoreCorrupted

METADATA = [{"title": f"doc {i}", "source": f"file{i}.txt"} for i in range(len(PASSAGES))]
QUERIES = ["capital of France", "Turing born London", "quick brown fox", "anchor compression memory"]


@pytest.fixture(scope="module")
def intact(tmp_path_factory, sac):
    """A closed store (manifest folded into one file) and the hits of QUERIES on it."""
    path = tmp_path_factory.mktemp("intact") / "s"
    with MemoryStore.create(path, sac, bow_embedder) as store:
        store.add(PASSAGES[:3], METADATA[:3], progress=False)
        store.add(PASSAGES[3:], METADATA[3:], progress=False)  # two shards
        hits = {q: [(h.id, h.text, h.metadata) for h in store.search(q, k=3)] for q in QUERIES}
    assert sorted(f.name for f in path.iterdir()) == ["index", "manifest.sqlite", "shards", "write.lock"]
    return path, hits


def damaged_copy(intact_path: Path, target: Path, file: Path, offset: int, bit: int) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(intact_path, target)
    victim = target / file.relative_to(intact_path)
    data = bytearray(victim.read_bytes())
    data[offset] ^= 1 << bit
    victim.write_bytes(bytes(data))
    return victim


def findings(path: Path, sac) -> list[str]:
    """What opening and verifying the store reports (an error at open counts as one finding)."""
    try:
        with MemoryStore.open(path, sac, bow_embedder) as store:
            return store.verify().problems
    except StoreCorrupted as e:
        return [str(e)]


def dump(manifest: Path) -> dict:
    db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
    try:
        return {
            t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in ("meta", "shards", "memories", "passages")
        }
    finally:
        db.close()


def value_regions(manifest: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Where the manifest file holds passage texts, metadata and embeddings, and store metadata values:
    ``(offset, length, what)`` by kind (``what`` is what verify must name)."""
    data = manifest.read_bytes()
    db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
    rows, meta = [], []
    for pid, text, metadata, embedding in db.execute("SELECT id, text, metadata, embedding FROM passages"):
        for value in (text.encode(), metadata.encode(), embedding):
            rows.append((data.index(value), len(value), f"passage {pid}"))
    for key, value in db.execute("SELECT key, value FROM meta"):
        start = data.index(key.encode() + value.encode()) + len(key.encode())
        meta.append((start, len(value.encode()), key))
    db.close()
    return {"manifest rows": rows, "store metadata": meta}


def test_byte_flips_in_every_kind_of_store_file_are_detected_and_named(intact, sac, tmp_path):
    path, _ = intact
    rng = random.Random(12)
    manifest = path / "manifest.sqlite"
    reference = dump(manifest)
    shard_files = sorted((path / "shards").iterdir())
    (index_file,) = (path / "index").iterdir()
    tally: dict[str, list[int]] = {}  # kind -> [flips, detected and named, harmless (bytes nothing reads)]

    def flip(kind: str, file: Path, offset: int, named: str) -> None:
        counts = tally.setdefault(kind, [0, 0, 0])
        counts[0] += 1
        victim = damaged_copy(path, tmp_path / "s", file, offset, rng.randrange(8))
        problems = findings(tmp_path / "s", sac)
        if any(str(victim) in p and named in p for p in problems):
            counts[1] += 1
        elif kind == "manifest (any byte)" and dump(victim) == reference and not problems:
            counts[2] += 1  # a byte SQLite does not use (free space in a page): nothing changed
        else:
            pytest.fail(f"{kind}: flip at {offset} of {file.name} not detected and named: {problems}")

    for _ in range(100):
        shard = rng.choice(shard_files)
        flip("shards", shard, rng.randrange(shard.stat().st_size), "")
    for _ in range(100):
        flip("index", index_file, rng.randrange(index_file.stat().st_size), "")
    for _ in range(200):
        flip("manifest (any byte)", manifest, rng.randrange(manifest.stat().st_size), "")
    for kind, regions in value_regions(manifest).items():
        for _ in range(100):
            start, length, named = rng.choice(regions)
            flip(kind, manifest, start + rng.randrange(length), named)
    print("\nbyte flips (tried, detected and named, harmless):", json.dumps(tally))
    for kind, (tried, detected, harmless) in tally.items():
        assert detected + harmless == tried, kind
        assert harmless == 0 or kind == "manifest (any byte)", kind
    assert tally["manifest (any byte)"][1] > 0


def test_a_damaged_index_file_is_never_used(intact, sac, tmp_path):
    path, hits = intact
    (index_file,) = (path / "index").iterdir()
    rng = random.Random(3)
    for _ in range(10):
        damaged_copy(path, tmp_path / "s", index_file, rng.randrange(index_file.stat().st_size), rng.randrange(8))
        with MemoryStore.open(tmp_path / "s", sac, bow_embedder) as store:
            assert not store.verify().ok
            for query, expected in hits.items():  # answered from an index rebuilt from the manifest
                assert [(h.id, h.text, h.metadata) for h in store.search(query, k=3)] == expected


def _corrupt_row(path: Path, sql: str, args: tuple = ()) -> None:
    """Change a manifest row behind the triggers' back (``UPDATE <table> ...``), as damage on disk would."""
    db = sqlite3.connect(path / "manifest.sqlite")
    db.execute(f"DROP TRIGGER {sql.split()[1]}_change")
    db.execute(sql, args)
    db.commit()
    db.close()


def test_damaged_text_or_embedding_is_refused_and_named_never_served(intact, sac, tmp_path):
    path, _ = intact
    store_path = tmp_path / "s"
    shutil.copytree(path, store_path)
    with MemoryStore.open(store_path, sac, bow_embedder) as store:
        texts = {r.id: r.text for r in store.get(store.ids())}
    _corrupt_row(store_path, "UPDATE passages SET text = ? WHERE id = 1", ("Alan Turing was born in 1912 in Paris.",))
    with MemoryStore.open(store_path, sac, bow_embedder) as store:
        with pytest.raises(StoreCorrupted, match=r"manifest.sqlite: passages 1 damaged"):
            store.search("Turing born", k=5)
        assert any("passage 1:" in p for p in store.verify().problems)
    shutil.rmtree(store_path)
    shutil.copytree(path, store_path)
    # an embedding that would win every query (the "one passage takes over retrieval")
    _corrupt_row(store_path, "UPDATE passages SET embedding = ? WHERE id = 4", (bytes(b"\x7f\x7f\x7f\x7f" * 64),))
    for f in (store_path / "index").iterdir():
        f.unlink()  # force a rebuild from the manifest
    with MemoryStore.open(store_path, sac, bow_embedder) as store:
        with pytest.raises(StoreCorrupted, match=r"embeddings of passages 4 damaged"):
            store.search("capital of France")
        report = store.verify()
        assert report.damage["embedding"] == [4] and any("passage 4: its embedding" in p for p in report.problems)
        assert report.damage["triggers"] == ["passages_change"]  # dropped by _corrupt_row
        repaired = store.repair()
        assert repaired.ok and repaired.reembedded == 1 and repaired.removed == []
        assert store.search("capital of France", k=1)[0].text == texts[0]
        assert store.search("studied mathematics Cambridge", k=1)[0].id == 4


def test_repair_rebuilds_shards_index_and_volatile_metadata_and_removes_lost_text(intact, sac, tmp_path):
    path, hits = intact
    store_path = tmp_path / "s"
    shutil.copytree(path, store_path)
    shard = sorted((store_path / "shards").iterdir())[0]
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0x10  # inside the last memory of the shard
    shard.write_bytes(bytes(data))
    (index_file,) = (store_path / "index").iterdir()
    index_file.write_bytes(index_file.read_bytes()[:-7])  # a truncated index file
    _corrupt_row(store_path, "UPDATE passages SET text = 'The quick brown cat.' WHERE id = 2")
    _corrupt_row(store_path, "UPDATE meta SET value = '77' WHERE key = 'generation'")
    with MemoryStore.open(store_path, sac, bow_embedder) as store:
        before = store.verify()
        assert {"shard_file", "memory", "passage", "meta"} <= before.damage.keys()
        assert any(str(shard) in p for p in before.problems)
        report = store.repair()
        assert report.ok, report.after.problems
        assert report.removed == [2] and report.shards_replaced == [shard.name]
        assert report.copied + report.recompressed == 3 - 1  # passage 2's memory is dropped with it
        assert not shard.exists() and store.verify().ok
        for query, expected in hits.items():
            assert [h for h in store.search(query, k=3) if h.id == 2] == []
            kept = [e for e in expected if e[0] != 2]
            assert [(h.id, h.text, h.metadata) for h in store.search(query, k=3)][: len(kept)] == kept
        fresh = sac.compress([PASSAGES[0]])[0]
        assert store.memories([0])[0].n_anchors == fresh.n_anchors


def test_damaged_store_metadata_names_the_key_and_is_not_guessed(intact, sac, tmp_path):
    path, _ = intact
    store_path = tmp_path / "s"
    shutil.copytree(path, store_path)
    _corrupt_row(store_path, "UPDATE meta SET value = '[2, 3, 16]' WHERE key = 'kv_shape'")
    with pytest.raises(StoreCorrupted, match=r"manifest.sqlite: store metadata kv_shape damaged"):
        MemoryStore.open(store_path, sac, bow_embedder)


def test_a_store_of_the_earlier_format_gets_its_checksums_on_open(intact, sac, tmp_path):
    path, hits = intact
    store_path = tmp_path / "s"
    shutil.copytree(path, store_path)
    db = sqlite3.connect(store_path / "manifest.sqlite")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    db.execute("DROP TABLE sums")
    db.execute("""UPDATE meta SET value = '"sac_rag.store/1"' WHERE key = 'format'""")
    db.commit()
    db.close()
    with MemoryStore.open(store_path, sac, bow_embedder) as store:
        assert store.verify().ok
        assert [(h.id, h.text, h.metadata) for h in store.search(QUERIES[0], k=3)] == hits[QUERIES[0]]
        store.add(["A new passage about Rome."], progress=False)
        assert store.verify().ok and store.stats()["passages"] == len(PASSAGES) + 1
