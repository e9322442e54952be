"""Issue 18: a store's files cannot be turned against anything outside it, and verify / repair at the edges.

The lock file and every entry the store writes (manifest, SQLite's files beside it, ``shards/``, ``index/``)
are refused when they are links, FIFOs, hard links or of the wrong kind; another tool's SQLite file is
left byte for byte as it was; two first creations of one store take turns; a checksum row deleted or
written with the triggers off, and a manifest rolled back to an older copy, are found and repaired.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from support.store import PASSAGES, bow_embedder

from sac_rag.store import MemoryStore, StoreCorrupted, StoreExists
from sac_rag.store.digest import row_digest
from sac_rag.store.manifest import Manifest


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, sac) -> Path:
    """A closed store of PASSAGES in two shards."""
    path = tmp_path_factory.mktemp("pristine") / "s"
    with MemoryStore.create(path, sac, bow_embedder) as store:
        store.add(PASSAGES[:3], progress=False)
        store.add(PASSAGES[3:], progress=False)
    return path


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(pristine, target)
    return target


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the store that no store operation may change."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("not the store's to write\n")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------- the lock file (class 2)
@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_lock_file_turned_into_a_link_is_never_written_through(copy, victim, sac, how):
    before = digest(victim)
    lock = copy / "write.lock"
    lock.unlink()
    (os.symlink if how == "symlink" else os.link)(victim, lock)
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        for write in (lambda: store.add(["A new passage."], progress=False), lambda: store.delete([0]), store.compact):
            with pytest.raises(StoreCorrupted, match=r"write\.lock is a (symbolic|hard) link"):
                write()
        assert digest(victim) == before and len(store) == len(PASSAGES)
        report = store.verify()
        assert not report.ok and report.damage["layout"] == ["write.lock"]
        assert store.repair().ok  # the link (a name only) is replaced; the file it named is untouched
        store.add(["A new passage."], progress=False)
    assert digest(victim) == before and victim.read_text() == "not the store's to write\n"


def test_a_lock_file_that_is_a_fifo_or_a_directory_is_refused_without_hanging(copy, sac):
    lock = copy / "write.lock"
    lock.unlink()
    os.mkfifo(lock)
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        with pytest.raises(StoreCorrupted, match=r"write\.lock is a FIFO"):
            store.delete([0])
        assert store.repair().ok and store.delete([0]) == 1
    lock.unlink()
    lock.mkdir()
    (lock / "kept.txt").write_text("somebody's")
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        report = store.verify()  # the issue: verify said "ok", then --repair failed with Errno 21
        assert not report.ok and "write.lock is a directory" in report.problems[0]
        assert "move it out of the store" in report.problems[0]
        with pytest.raises(StoreCorrupted, match=r"write\.lock is a directory, .* holds data of its own: move it out"):
            store.repair()
    assert (lock / "kept.txt").read_text() == "somebody's"


@pytest.mark.parametrize("entry", ["index", "shards"])
def test_a_store_directory_replaced_by_a_file_or_link_is_found_and_repaired(copy, victim, sac, entry):
    before = digest(victim)
    shutil.rmtree(copy / entry)
    (copy / entry).symlink_to(victim.parent, target_is_directory=True)
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        with pytest.raises(StoreCorrupted, match=rf"{entry} is a symbolic link"):
            store.add(["A new passage."], progress=False)
        report = store.verify()
        assert not report.ok and "layout" in report.damage
        repaired = store.repair()
        assert repaired.ok, repaired.after.problems
        assert repaired.entries_replaced and (copy / entry).is_dir() and not (copy / entry).is_symlink()
        assert [r.text for r in store.get(store.ids())] == PASSAGES
        assert store.search("capital of France", k=1)[0].text == PASSAGES[0]
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"] and digest(victim) == before
    shutil.rmtree(copy / entry)
    (copy / entry).write_bytes(b"")  # the issue: index/ as a file, verify "ok", then Errno 17
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        assert not store.verify().ok
        assert store.repair().ok and store.verify().ok


# ----------------------------------------------------------------- another tool's SQLite file (class 7)
@pytest.mark.parametrize("wal", [False, True])
def test_another_tools_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path, sac, wal):
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = sqlite3.connect(folder / "manifest.sqlite")
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    files = {p.name: digest(p) for p in folder.iterdir()}
    for attempt in (
        lambda: MemoryStore.open(folder, sac, bow_embedder),
        lambda: MemoryStore.open_or_create(folder, sac, bow_embedder),
        lambda: Manifest(folder / "manifest.sqlite"),
    ):
        with pytest.raises(StoreCorrupted, match="not a sac_rag manifest"):
            attempt()
    assert {p.name: digest(p) for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))} == files
    if not wal:  # a rollback-journal database is never even given SQLite's side files
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.sqlite"]
    header = (folder / "manifest.sqlite").read_bytes()[18:20]
    assert header == (b"\x02\x02" if wal else b"\x01\x01")  # not switched to WAL


@pytest.mark.parametrize("content", [b"", b"plain text, not a database"])
def test_an_empty_or_non_sqlite_manifest_is_named_and_not_written(tmp_path, sac, content):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "manifest.sqlite").write_bytes(content)
    what = "is empty" if not content else "is not a SQLite database"
    with pytest.raises(StoreCorrupted, match=f"manifest.sqlite {what}: not a sac_rag manifest"):
        MemoryStore.open(folder, sac, bow_embedder)
    assert (folder / "manifest.sqlite").read_bytes() == content and len(list(folder.iterdir())) == 1


def test_a_manifest_or_its_wal_as_a_link_or_fifo_is_refused_before_sqlite_opens_it(copy, victim, sac):
    before = digest(victim)
    wal = copy / "manifest.sqlite-wal"
    wal.symlink_to(victim)
    with pytest.raises(StoreCorrupted, match=r"manifest\.sqlite-wal is a symbolic link"):
        MemoryStore.open(copy, sac, bow_embedder)
    wal.unlink()
    os.mkfifo(wal)
    with pytest.raises(StoreCorrupted, match=r"manifest\.sqlite-wal is a FIFO"):
        MemoryStore.open(copy, sac, bow_embedder)
    wal.unlink()
    (copy / "manifest.sqlite").rename(copy / "real.sqlite")
    (copy / "manifest.sqlite").symlink_to(copy / "real.sqlite")
    with pytest.raises(StoreCorrupted, match=r"manifest\.sqlite is a symbolic link"):
        MemoryStore.open(copy, sac, bow_embedder)
    assert digest(victim) == before


# ----------------------------------------------------------------- two first creations at once (class 4)
def test_two_first_creations_of_one_store_take_turns(tmp_path, sac, monkeypatch):
    """The second of two processes creating the same new store at once uses the first one's store (the issue:
    ``[Errno 39] Directory not empty`` and its passages lost)."""
    path = tmp_path / "new"
    real_create = Manifest.create

    def first_wins(manifest_path, meta):  # another process finishes creating the store while this one fills its own
        monkeypatch.setattr(Manifest, "create", real_create)
        with MemoryStore.open_or_create(path, sac, bow_embedder) as other:
            other.add([PASSAGES[0]], progress=False)
        return real_create(manifest_path, meta)

    monkeypatch.setattr(Manifest, "create", staticmethod(first_wins))
    with MemoryStore.open_or_create(path, sac, bow_embedder) as store:
        assert not store.created  # it opened the other one's store
        store.add([PASSAGES[1]], progress=False)
        assert sorted(r.text for r in store.get(store.ids())) == sorted(PASSAGES[:2]) and store.verify().ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left
    with pytest.raises(StoreExists, match="already exists"):
        MemoryStore.create(path, sac, bow_embedder)


def test_a_failed_first_run_removes_only_an_empty_store_no_writer_holds(tmp_path, sac):
    with MemoryStore.create(tmp_path / "a", sac, bow_embedder) as store:
        assert store.created and store.remove_if_empty() and not (tmp_path / "a").exists()
    store = MemoryStore.create(tmp_path / "b", sac, bow_embedder)
    with MemoryStore.open(tmp_path / "b") as other, other.writing():  # another writer at work
        assert not store.remove_if_empty()
    assert (tmp_path / "b" / "manifest.sqlite").is_file()


# ----------------------------------------------------------------- checksums and triggers (class 6)
def test_a_deleted_checksum_row_is_recomputed_from_proven_text_not_deleted(copy, sac):
    db = sqlite3.connect(copy / "manifest.sqlite")
    db.execute("DELETE FROM sums WHERE kind = 'passage' AND key = 1")
    db.commit()
    db.close()
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        report = store.verify()
        assert report.damage["unsummed"] == [("passage", 1)] and "passage row 1 has no checksum" in report.problems[0]
        repaired = store.repair()
        assert repaired.ok and repaired.removed == [] and repaired.redigested == [1]
        assert store.get([1])[0].text == PASSAGES[1]


def test_rows_written_with_the_triggers_dropped_are_found_and_the_triggers_restored(copy, sac):
    db = sqlite3.connect(copy / "manifest.sqlite")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    db.execute("INSERT INTO passages SELECT 77, hash, text, metadata, embedding FROM passages WHERE id = 0")
    db.execute("""UPDATE passages SET metadata = '{"forged": true}' WHERE id = 2""")
    db.commit()
    db.close()
    with MemoryStore.open(copy, sac, bow_embedder) as store:
        report = store.verify()
        assert len(report.damage["triggers"]) == 12 and "checksum triggers" in " ".join(report.problems)
        assert ("passage", 77) in report.damage["unsummed"] and report.damage["passage"] == [2]
        repaired = store.repair()
        assert repaired.ok, repaired.after.problems
        assert repaired.triggers_restored and repaired.redigested == [77] and repaired.removed == [2]
        store.add(["A passage written after the repair."], progress=False)  # checksummed again
        assert store.verify().ok and store.get([77])[0].text == PASSAGES[0]


def test_a_manifest_rolled_back_to_an_older_copy_is_reported_with_the_memories_unaccounted_for(tmp_path, sac):
    path = tmp_path / "s"
    with MemoryStore.create(path, sac, bow_embedder) as store:
        store.add(PASSAGES[:2], progress=False)
    old = (path / "manifest.sqlite").read_bytes()
    with MemoryStore.open(path, sac, bow_embedder) as store:
        store.add(PASSAGES[2:4], progress=False)
        store.add(PASSAGES[4:], progress=False)
    (path / "manifest.sqlite").write_bytes(old)  # restored from a backup: the last two commits are gone
    with MemoryStore.open(path, sac, bow_embedder) as store:
        report = store.verify()
        assert not report.ok and report.damage["rollback"]
        (problem,) = [p for p in report.problems if "rolled back" in p]
        assert "passages committed after it may be missing" in problem
        assert "3 memories in shards the manifest does not list" in problem
        repaired = store.repair()
        assert repaired.ok and "rolled back" in repaired.unrecoverable[0]
        assert any("3 memories" in w for w in repaired.after.warnings)  # still counted, as a warning
        store.add(["Written after the repair."], progress=False)
        assert store.verify().ok and len(store) == 3


def test_an_index_in_memory_is_not_kept_for_a_generation_number_that_came_back_with_other_contents(copy, sac):
    """Issue 18, class 1 in the index cache: a manifest restored from an older copy and written again reaches a
    generation it had before, with other passages; a reader must not keep answering from its old index."""
    with MemoryStore.open(copy, sac, bow_embedder) as reader:
        assert reader.search("Where was Turing born?", k=1)[0].text == PASSAGES[1]  # index held for this generation
        generation = reader.manifest.generation()
        with MemoryStore.open(copy, sac, bow_embedder) as writer:
            writer.delete([1])
            writer.add(["Grace Hopper was born in New York."], ids=[9], progress=False)
        db = sqlite3.connect(copy / "manifest.sqlite")  # the same generation number, other contents
        db.create_function("sac_digest", -1, row_digest, deterministic=True)  # the triggers keep checksums right
        db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
        db.commit()
        db.close()
        ids = [h.id for h in reader.search("Where was Grace Hopper born?", k=2)]
        assert ids[0] == 9 and 1 not in ids
