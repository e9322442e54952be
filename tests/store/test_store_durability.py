"""A killed writer, concurrent readers, and the single-writer lock (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from support import ROOT, TESTS
from support.store import bow_embedder
from support.store import numbered_text as text

from sac_rag.store import MemoryStore, StoreError
from sac_rag.testing import tiny_model

WRITER = textwrap.dedent(
    """
    import sys, time
    from support.store import bow_embedder, numbered_text as text
    from sac_rag.store import MemoryStore
    from sac_rag.testing import tiny_model

    def slow_embedder(texts):  # gives a reader or a kill time to land between commits
        time.sleep(0.03)
        return bow_embedder(texts)

    slow_embedder.name = bow_embedder.name
    path, total = sys.argv[1], int(sys.argv[2])
    store = MemoryStore.open_or_create(path, tiny_model(), slow_embedder)
    store.flush_every = 4
    for start in range(0, total, 10):
        ids = list(range(start, min(start + 10, total)))
        store.upsert([text(i) for i in ids], metadata=[{"i": i} for i in ids], ids=ids, progress=False)
        print("returned", start, flush=True)
    """
)


def start_writer(tmp_path, total: int) -> subprocess.Popen:
    """A process upserting passages ``0..total-1`` ten at a time, printing each add that returned (it imports
    this checkout's sac_rag and the tests' support package)."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "store"), str(total)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def check_consistent(store: MemoryStore, returned: set[int]) -> None:
    ids = set(store.ids())
    assert returned <= ids
    for record in store.get(sorted(ids)):
        assert record.text == text(record.id) and record.metadata == {"i": record.id}
    chunks = store.memories(sorted(ids))
    assert all(c.n_anchors > 0 for c in chunks)


def test_killed_indexing_leaves_a_consistent_resumable_store(tmp_path):
    total = 120
    writer = start_writer(tmp_path, total)
    returned: set[int] = set()
    for line in writer.stdout:
        start = int(line.split()[1])
        returned.update(range(start, start + 10))
        if len(returned) >= 40:
            time.sleep(0.05)  # most likely inside the next add
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with MemoryStore.open(tmp_path / "store", embedder=bow_embedder) as store:
        assert len(returned) <= len(store) < total
        check_consistent(store, returned)
        report = store.verify()
        assert report.ok, report.problems
        assert store.search(text(5), k=1)[0].id == 5
    rerun = start_writer(tmp_path, total)
    assert rerun.wait(timeout=300) == 0
    with MemoryStore.open(tmp_path / "store", tiny_model(), bow_embedder) as store:
        assert sorted(store.ids()) == list(range(total))
        check_consistent(store, set(range(total)))
        assert store.verify().ok
        store.compact()
        assert store.verify().warnings == []


def test_readers_are_safe_while_a_writer_adds(tmp_path):
    total = 80
    writer = start_writer(tmp_path, total)
    while not (tmp_path / "store" / "manifest.sqlite").exists():
        time.sleep(0.05)
        assert writer.poll() is None
    errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        try:
            with MemoryStore.open(tmp_path / "store", embedder=bow_embedder) as store:
                seen = 0
                while writer.poll() is None:
                    n = len(store)
                    assert n >= seen
                    seen = n
                    for hit in store.search(text(reads[0] % total), k=3):
                        assert hit.text == text(hit.id)
                        assert store.memories([hit.id])[0].length > 0
                    reads[0] += 1
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert writer.wait() == 0
    assert not errors, errors
    assert reads[0] > 5
    with MemoryStore.open(tmp_path / "store", embedder=bow_embedder) as store:
        assert len(store) == total and store.verify().ok


def test_one_writer_at_a_time(tmp_path):
    sac = tiny_model()
    first = MemoryStore.create(tmp_path / "s", sac, bow_embedder)
    second = MemoryStore.open(tmp_path / "s", sac, bow_embedder, lock_timeout=0.2)
    with first.writing(), pytest.raises(StoreError, match="held by another writer"):
        second.add(["blocked"], progress=False)
    assert second.add(["now free"], progress=False) == [0]
    assert first.search("now free", k=1)[0].id == 0  # the other handle sees the write
    first.close()
    second.close()
    assert os.path.exists(tmp_path / "s" / "write.lock")


def test_a_reader_racing_compact_retries(tmp_path):
    sac = tiny_model()
    writer = MemoryStore.create(tmp_path / "s", sac, bow_embedder)
    writer.add([text(i) for i in range(6)], progress=False)
    writer.delete([0])
    reader = MemoryStore.open(tmp_path / "s", embedder=bow_embedder)
    rows = reader._manifest.memory_rows
    raced = []

    def rows_then_compact(hashes=None):
        found = rows(hashes)
        if not raced:  # the writer swaps the shards right after the reader read the rows
            raced.append(writer.compact())
        return found

    reader._manifest.memory_rows = rows_then_compact
    chunks = reader.memories([1, 2])
    assert raced and [c.length for c in chunks] == [c.length for c in sac.compress([text(1), text(2)])]
    writer.close()
    reader.close()
