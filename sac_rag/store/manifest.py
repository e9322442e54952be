"""The manifest: one SQLite database (WAL mode) that is the store's source of truth.

It ties passage ids to their text, metadata, content hash and embedding, content hashes to the memory
rows of a shard, and shards to their checksums. Every write is one transaction that also bumps
``generation``; readers see either all of a write or none of it.

Every row is covered by a digest in ``sums`` that triggers keep up to date on each insert, update and
delete (kinds ``meta``, ``shard``, ``memory``, ``passage`` and ``embedding``: a passage's embedding has
its own, so that repair knows which part to redo). Reads check the rows they return; :meth:`audit`
checks them all (see docs/store.md, "Integrity").
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sac_rag.store.digest import content_hash_of_bytes, row_digest
from sac_rag.store.errors import StoreCorrupted
from sac_rag.store.layout import SQLITE_SIDE_FILES, entry_problem

STORE_FORMAT = "sac_rag.store/2"
UPGRADABLE = "sac_rag.store/1"  # the same tables without digests: upgraded in place on open
VOLATILE_META = ("generation", "index")  # store metadata that a repair can set afresh
SQLITE_HEADER = b"SQLite format 3\x00"
UNREPAIRABLE = "restore the store from a copy, or index the documents into a new store"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE shards (
    name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, payload INTEGER NOT NULL);
CREATE TABLE memories (
    hash TEXT PRIMARY KEY, shard TEXT NOT NULL REFERENCES shards(name), length INTEGER NOT NULL,
    n_anchors INTEGER NOT NULL, pos_offset INTEGER NOT NULL, nbytes INTEGER NOT NULL, crc INTEGER NOT NULL,
    meta TEXT NOT NULL);
CREATE TABLE passages (
    id INTEGER PRIMARY KEY, hash TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL,
    embedding BLOB NOT NULL);
CREATE INDEX passages_hash ON passages(hash);
CREATE INDEX memories_shard ON memories(shard);
"""
_SUMS = "CREATE TABLE sums (kind TEXT NOT NULL, key NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (kind, key))"
# table -> the digests of its rows: (kind, key column, digested columns)
_DIGESTS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "meta": [("meta", "key", ("key", "value"))],
    "shards": [("shard", "name", ("name", "sha256", "size", "payload"))],
    "memories": [("memory", "hash", ("hash", "shard", "length", "n_anchors", "pos_offset", "nbytes", "crc", "meta"))],
    "passages": [("passage", "id", ("id", "hash", "text", "metadata")), ("embedding", "id", ("id", "embedding"))],
}
_KEYS = {kind: (key, cols) for digests in _DIGESTS.values() for kind, key, cols in digests}
_TABLES = {kind: table for table, digests in _DIGESTS.items() for kind, _, _ in digests}


def _digest_sql(kind: str, columns: tuple[str, ...], row: str) -> str:
    """SQL computing a row's digest over its raw bytes (text is hashed as stored, valid UTF-8 or not)."""
    return f"sac_digest('{kind}', {', '.join(f'CAST({row}.{c} AS BLOB)' for c in columns)})"


def _triggers() -> list[str]:
    """Triggers that keep ``sums`` equal to the digests of every row, whoever writes the row."""
    statements = []
    for table, digests in _DIGESTS.items():
        put = "".join(
            f"INSERT OR REPLACE INTO sums VALUES ('{kind}', NEW.{key}, {_digest_sql(kind, cols, 'NEW')}); "
            for kind, key, cols in digests
        )
        drop = "".join(f"DELETE FROM sums WHERE kind = '{kind}' AND key = +OLD.{key}; " for kind, key, _ in digests)
        statements += [
            f"CREATE TRIGGER {table}_put AFTER INSERT ON {table} BEGIN {put}END",
            f"CREATE TRIGGER {table}_change AFTER UPDATE ON {table} BEGIN {drop}{put}END",
            f"CREATE TRIGGER {table}_drop AFTER DELETE ON {table} BEGIN {drop}END",
        ]
    return statements


@dataclass
class MemoryRow:
    hash: str
    shard: str
    length: int
    n_anchors: int
    pos_offset: int
    nbytes: int
    crc: int
    meta: dict


@dataclass
class PassageRow:
    id: int
    hash: str
    text: str
    metadata: dict


class Manifest:
    """Typed access to the manifest database; safe to share between threads."""

    def __init__(self, path: Path, *, new: bool = False) -> None:
        """Open the manifest at ``path`` (``new``: create it; the file must not exist).

        An existing file is first checked to be a regular file of its own with SQLite's header, then read
        through a read-only connection until its format is known to be ours: another tool's database is
        refused without a byte of it (or of its journal) changed. Only then is it opened for writing.
        """
        self.path = path
        self._lock = threading.RLock()
        if not new:
            _check_own_sqlite_file(path)
            self._db = self._connect(read_only=True)
            try:
                self.check_format()
            finally:
                self._db.close()
        self._db = self._connect(read_only=False)

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        target = f"{self.path.absolute().as_uri()}?mode=ro" if read_only else str(self.path)
        try:
            db = sqlite3.connect(target, timeout=60, isolation_level=None, check_same_thread=False, uri=read_only)
            db.create_function("sac_digest", -1, row_digest, deterministic=True)
            db.create_function("sac_content_hash", 1, content_hash_of_bytes, deterministic=True)
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA journal_size_limit=4194304")  # the WAL shrinks back after a checkpoint
        except sqlite3.DatabaseError as e:
            raise StoreCorrupted(f"{self.path}: not a sac_rag manifest ({e})") from e
        return db

    @classmethod
    def create(cls, path: Path, meta: dict[str, object]) -> Manifest:
        manifest = cls(path, new=True)
        with manifest.transaction() as db:
            for statement in [*filter(str.strip, _SCHEMA.split(";")), _SUMS, *_triggers()]:
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in {"format": STORE_FORMAT, "generation": 0, **meta}.items()],
            )
        return manifest

    def check_format(self) -> bool:
        """Raise :class:`StoreCorrupted` naming the file unless this version reads it.

        True when it is of the earlier format, which :meth:`upgrade` brings up to date."""
        try:
            fmt = self.meta("format")
        except (StoreCorrupted, KeyError) as e:
            reason = str(e).removeprefix(f"{self.path}: ")
            raise StoreCorrupted(f"{self.path}: not a sac_rag manifest ({reason})") from e
        if fmt not in (STORE_FORMAT, UPGRADABLE):
            raise StoreCorrupted(f"{self.path}: store format {fmt!r}, this sac_rag reads {STORE_FORMAT!r}")
        return fmt == UPGRADABLE

    def upgrade(self) -> None:
        """Give a manifest of the earlier format its row digests (its rows are taken as they are now)."""
        with self.transaction() as db:
            if json.loads(db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0]) != UPGRADABLE:
                return  # another process upgraded it first
            db.execute(_SUMS)
            Manifest.restore_triggers(db)
            for table, digests in _DIGESTS.items():
                for kind, key, cols in digests:
                    db.execute(
                        f"INSERT INTO sums SELECT '{kind}', t.{key}, {_digest_sql(kind, cols, 't')} FROM {table} t"
                    )
            Manifest.set_meta(db, "format", STORE_FORMAT)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file, without waiting for readers."""
        self._query("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as e:
                raise StoreCorrupted(f"{self.path}: {e} (damaged manifest?)") from e

    def _checked(self, kind: str, table: str, columns: str, where: str = "", args: Sequence = ()) -> list[tuple]:
        """Rows of ``table`` (``columns`` of alias ``t``), each followed by 1 if it matches its digest, else 0."""
        key, cols = _KEYS[kind]
        return self._query(
            f"SELECT {columns}, s.digest IS {_digest_sql(kind, cols, 't')} FROM {table} t "
            f"LEFT JOIN sums s ON s.kind = '{kind}' AND s.key = +t.{key} {where}",  # +: sums' index is usable
            args,
        )

    def _damaged(self, what: str, keys: Sequence, advice: str | None = None) -> StoreCorrupted:
        shown = ", ".join(map(str, list(keys)[:10])) + (" ..." if len(keys) > 10 else "")
        advice = advice or f"run `sac-rag verify --store {self.path.parent} --repair`"
        return StoreCorrupted(f"{self.path}: {what} {shown} damaged (fails its checksum): {advice}")

    # ------------------------------------------------------------------ meta
    def meta(self, key: str, default: object = KeyError) -> object:
        rows = self._query("SELECT CAST(value AS BLOB) FROM meta WHERE key = ?", (key,))
        if not rows:
            if default is KeyError:
                raise KeyError(f"{key!r} missing from {self.path}")
            return default
        try:
            return json.loads(rows[0][0].decode("utf-8"))
        except (AttributeError, ValueError) as e:
            raise StoreCorrupted(f"{self.path}: store metadata {key!r} is unreadable ({e})") from e

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: object) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @staticmethod
    def bump_generation(db: sqlite3.Connection) -> int:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        generation = int(json.loads(value)) + 1
        Manifest.set_meta(db, "generation", generation)
        return generation

    def generation(self) -> int:
        return int(self.meta("generation"))

    def check_meta(self) -> None:
        """Raise :class:`StoreCorrupted` naming the file and keys if store metadata that reads rely on
        fails its checksum (``generation`` and ``index`` only steer the index cache: verify reports them)."""
        bad = [key for key, ok in self._checked("meta", "meta", "t.key") if not ok and key not in VOLATILE_META]
        if bad:  # repair cannot redo these from the rest of the store
            raise self._damaged("store metadata", bad, UNREPAIRABLE)

    def record_index(self, generation: int, sha256: str, size: int) -> None:
        """Record the checksum of the index file written for ``generation`` (no new generation)."""
        with self.transaction() as db:
            Manifest.set_meta(db, "index", {"generation": generation, "sha256": sha256, "size": size})

    def index_record(self) -> dict | None:
        """What :meth:`record_index` recorded last (None if nothing yet)."""
        record = self.meta("index", None)
        return record if isinstance(record, dict) else None

    # ------------------------------------------------------------------ passages
    def count(self) -> int:
        return self._query("SELECT COUNT(*) FROM passages")[0][0]

    def ids(self) -> list[int]:
        return [r[0] for r in self._query("SELECT id FROM passages ORDER BY id")]

    def existing(self, ids: Sequence[int]) -> list[int]:
        """Which of ``ids`` are in the store (damaged or not)."""
        found: list[int] = []
        for part in _parts(ids):
            found += [r[0] for r in self._query(f"SELECT id FROM passages WHERE id IN ({_marks(part)})", part)]
        return found

    def ids_with_metadata(self, key: str, values: Sequence) -> list[int]:
        """Ids of the passages whose metadata ``key`` holds one of ``values`` (strings or numbers)."""
        path = "$." + json.dumps(key)
        found: list[int] = []
        for part in _parts(values):
            sql = f"SELECT id FROM passages WHERE json_extract(metadata, ?) IN ({_marks(part)}) ORDER BY id"
            found += [r[0] for r in self._query(sql, [path, *part])]
        return found

    def next_id(self) -> int:
        return self._query("SELECT COALESCE(MAX(id) + 1, 0) FROM passages")[0][0]

    def passages(self, ids: Sequence[int], *, skip_damaged: bool = False) -> dict[int, PassageRow]:
        """Passage rows by id, each checked against its digest and its text against its content hash.

        A damaged row raises :class:`StoreCorrupted` naming it, or is left out with ``skip_damaged``.
        """
        rows: dict[int, PassageRow] = {}
        damaged = []
        for part in _parts(ids):
            for pid, h, text, metadata, ok in self._checked(
                "passage", "passages", "t.id, t.hash, CAST(t.text AS BLOB), CAST(t.metadata AS BLOB)",
                f"WHERE t.id IN ({_marks(part)})", part,
            ):  # fmt: skip
                if not ok or content_hash_of_bytes(text) != h:
                    damaged.append(pid)
                    continue
                rows[pid] = PassageRow(pid, h, text.decode("utf-8"), json.loads(metadata))
        if damaged and not skip_damaged:
            raise self._damaged("passages", sorted(damaged))
        return rows

    def embeddings(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All passage ids and their embeddings ``[n, dim]`` float32, each checked against its digest."""
        rows = self._checked("embedding", "passages", "t.id, t.embedding", "ORDER BY t.id")
        damaged = [r[0] for r in rows if not r[2] or len(r[1]) != 4 * dim]
        if damaged:
            raise self._damaged("embeddings of passages", damaged)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vectors

    def embedding_of_hash(self, content_hash: str) -> np.ndarray | None:
        """The (intact) stored embedding of a text, if one passage has it."""
        rows = self._checked("embedding", "passages", "t.embedding", "WHERE t.hash = ?", (content_hash,))
        intact = [blob for blob, ok in rows if ok]
        return np.frombuffer(intact[0], dtype=np.float32) if intact else None

    def texts_by_hash(self, hashes: Sequence[str] | None = None) -> dict[str, str]:
        """Passage texts by content hash (all, or those of ``hashes``); only texts that match their hash."""
        rows = self._query("SELECT hash, CAST(text AS BLOB) FROM passages")
        wanted = None if hashes is None else set(hashes)
        return {
            h: text.decode("utf-8")
            for h, text in rows
            if (wanted is None or h in wanted) and content_hash_of_bytes(text) == h
        }

    # ------------------------------------------------------------------ memories and shards
    def memory_rows(self, hashes: Sequence[str] | None = None, *, skip_damaged: bool = False) -> dict[str, MemoryRow]:
        """Memory rows by content hash, checked like :meth:`passages`."""
        columns = "t.hash, t.shard, t.length, t.n_anchors, t.pos_offset, t.nbytes, t.crc, t.meta"
        if hashes is None:
            rows = self._checked("memory", "memories", columns)
        else:
            rows = []
            for part in _parts(hashes):
                rows += self._checked("memory", "memories", columns, f"WHERE t.hash IN ({_marks(part)})", part)
        damaged = [r[0] for r in rows if not r[8]]
        if damaged and not skip_damaged:
            raise self._damaged("memory rows", damaged)
        return {r[0]: MemoryRow(*r[:7], json.loads(r[7])) for r in rows if r[8]}

    # ------------------------------------------------------------------ checking everything
    def trigger_problems(self) -> list[str]:
        """Names of the checksum triggers that are missing or altered, and of triggers that are not the store's
        (rows written while they are off get no checksum, or a wrong one)."""
        expected = dict(_named_triggers())
        found = dict(self._query("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        return sorted({n for n, sql in expected.items() if found.get(n) != sql} | (found.keys() - expected.keys()))

    @staticmethod
    def restore_triggers(db: sqlite3.Connection) -> None:
        """Drop every trigger and create the checksum triggers as this version writes them."""
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        for _, statement in _named_triggers():
            db.execute(statement)

    @staticmethod
    def redigest(db: sqlite3.Connection, kind: str, keys: Sequence) -> None:
        """Record the digests of rows as they are now (rows proven intact by other means)."""
        key, cols = _KEYS[kind]
        for part in _parts(keys):
            db.execute(
                f"INSERT OR REPLACE INTO sums SELECT '{kind}', t.{key}, {_digest_sql(kind, cols, 't')} "
                f"FROM {_TABLES[kind]} t WHERE t.{key} IN ({_marks(part)})",
                part,
            )

    def proven_texts(self, ids: Sequence[int]) -> dict[int, str]:
        """``{id: text}`` of those of ``ids`` whose text matches their content hash and whose metadata is a JSON
        object, whatever their row digest says: what a passage without a checksum row can be proven to be
        (its metadata is taken as found). Sorted by id."""
        proven = {}
        for part in _parts(sorted(ids)):
            columns = "id, hash, CAST(text AS BLOB), CAST(metadata AS BLOB)"
            sql = f"SELECT {columns} FROM passages WHERE id IN ({_marks(part)}) ORDER BY id"
            for pid, h, text, metadata in self._query(sql, part):
                if content_hash_of_bytes(text) == h and _json_object(metadata):
                    proven[pid] = text.decode("utf-8")
        return proven

    def integrity_errors(self) -> list[str]:
        """SQLite's own structural check of the database file (``PRAGMA quick_check``): empty when sound."""
        return [r[0] for r in self._query("PRAGMA quick_check") if r[0] != "ok"]

    def audit(self, dim: int) -> dict[str, list]:
        """Every row against its digest: the keys of damaged rows by kind.

        Kinds: ``meta`` (keys), ``shard`` (names), ``memory`` (content hashes), ``passage`` (ids whose
        text, hash or metadata changed, text checked against its content hash too), ``embedding`` (ids):
        rows that differ from their digest; ``unsummed`` (``(kind, key)`` of rows without a digest),
        ``lost`` (``(kind, key)`` of digests whose row is gone), ``no_memory`` (passage ids whose memory row is
        missing) and ``no_shard`` (memory hashes whose shard row is missing).
        """
        found: dict[str, list] = {"lost": [], "unsummed": []}
        for kind, (key, _) in _KEYS.items():
            table = _TABLES[kind]
            rows = self._checked(kind, table, f"t.{key}, s.digest IS NULL")
            found[kind] = [k for k, missing, ok in rows if not ok and not missing]
            found["unsummed"] += [(kind, k) for k, missing, _ in rows if missing]
            found["lost"] += [
                (kind, r[0])
                for r in self._query(
                    f"SELECT key FROM sums s WHERE kind = '{kind}' AND NOT EXISTS "
                    f"(SELECT 1 FROM {table} t WHERE t.{key} = s.key)"
                )
            ]
        found["passage"] += [
            r[0] for r in self._query("SELECT id FROM passages WHERE hash IS NOT sac_content_hash(CAST(text AS BLOB))")
        ]
        found["embedding"] += [
            r[0] for r in self._query("SELECT id FROM passages WHERE length(embedding) != ?", (4 * dim,))
        ]
        found["no_memory"] = [
            r[0] for r in self._query("SELECT id FROM passages WHERE hash NOT IN (SELECT hash FROM memories)")
        ]
        found["no_shard"] = [
            r[0] for r in self._query("SELECT hash FROM memories WHERE shard NOT IN (SELECT name FROM shards)")
        ]
        return {kind: sorted(set(keys), key=str) for kind, keys in found.items()}

    @staticmethod
    def forget(db: sqlite3.Connection, lost: Sequence[tuple[str, object]]) -> None:
        """Drop the digests of rows that are gone (``(kind, key)`` as :meth:`audit` lists them)."""
        db.executemany("DELETE FROM sums WHERE kind = ? AND key = ?", lost)

    def row_count(self) -> int:
        """Rows in the checked tables (meta, shards, memories, passages)."""
        return sum(self._query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in _DIGESTS)

    def ids_by_hash(self, hashes: Sequence[str]) -> dict[str, list[int]]:
        """The ids of the passages that carry each content hash."""
        out: dict[str, list[int]] = {}
        for part in _parts(hashes):
            for pid, h in self._query(f"SELECT id, hash FROM passages WHERE hash IN ({_marks(part)})", part):
                out.setdefault(h, []).append(pid)
        return out

    def shard_rows(self) -> dict[str, tuple[str, int]]:
        return {name: (sha, size) for name, sha, size in self._query("SELECT name, sha256, size FROM shards")}

    @staticmethod
    def insert_shard(db: sqlite3.Connection, name: str, sha256: str, size: int, rows: Sequence[MemoryRow]) -> None:
        """Record a shard and the memories it holds."""
        db.execute("INSERT INTO shards VALUES (?, ?, ?, ?)", (name, sha256, size, sum(r.nbytes for r in rows)))
        for row in rows:
            row.shard = name
            Manifest.insert_memory(db, row)

    @staticmethod
    def insert_memory(db: sqlite3.Connection, row: MemoryRow) -> None:
        db.execute(
            "INSERT OR REPLACE INTO memories VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row.hash, row.shard, row.length, row.n_anchors, row.pos_offset, row.nbytes, row.crc, json.dumps(row.meta)),
        )

    @staticmethod
    def remove(db: sqlite3.Connection, passages: Sequence[int] = (), memories: Sequence[str] = (),
               shards: Sequence[str] = (), meta: Sequence[str] = ()) -> None:  # fmt: skip
        """Delete rows by key: passages by id, memories by content hash, shards by name, store metadata by key."""
        for table, key, values in (
            ("passages", "id", passages), ("memories", "hash", memories), ("shards", "name", shards),
            ("meta", "key", meta),
        ):  # fmt: skip
            db.executemany(f"DELETE FROM {table} WHERE {key} = ?", [(v,) for v in values])

    @staticmethod
    def put_passages(db: sqlite3.Connection, rows: Iterable[tuple[int, str, str, dict, np.ndarray]]) -> None:
        """Insert or replace passages: ``(id, content hash, text, metadata, embedding)`` each."""
        db.executemany(
            "INSERT OR REPLACE INTO passages VALUES (?, ?, ?, ?, ?)",
            [(i, h, text, json.dumps(meta), np.asarray(v, dtype=np.float32).tobytes()) for i, h, text, meta, v in rows],
        )

    @staticmethod
    def clear(db: sqlite3.Connection, *, memories: bool = False, shards: bool = False) -> None:
        """Delete every memory row and/or every shard row (before recording fresh ones)."""
        for table, wanted in (("memories", memories), ("shards", shards)):
            if wanted:
                db.execute(f"DELETE FROM {table}")

    @staticmethod
    def all_texts(db: sqlite3.Connection) -> list[tuple[int, str]]:
        """``(id, text)`` of every passage, inside a transaction."""
        return db.execute("SELECT id, text FROM passages").fetchall()

    @staticmethod
    def set_embeddings(db: sqlite3.Connection, embeddings: dict[int, np.ndarray]) -> None:
        """Replace the embeddings of passages by id."""
        rows = [(np.asarray(v, dtype=np.float32).tobytes(), i) for i, v in embeddings.items()]
        db.executemany("UPDATE passages SET embedding = ? WHERE id = ?", rows)

    @staticmethod
    def drop_unreferenced_memories(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM memories WHERE hash NOT IN (SELECT hash FROM passages)")
        db.execute("DELETE FROM shards WHERE name NOT IN (SELECT shard FROM memories)")

    def totals(self) -> dict[str, int]:
        (passages, tokens, anchors, nbytes) = self._query(
            "SELECT COUNT(*), COALESCE(SUM(m.length), 0), COALESCE(SUM(m.n_anchors), 0), COALESCE(SUM(m.nbytes), 0) "
            "FROM passages p JOIN memories m ON m.hash = p.hash"
        )[0]
        (memories, memory_bytes) = self._query("SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM memories")[0]
        (shards, shard_bytes, payload) = self._query(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(payload), 0) FROM shards"
        )[0]
        return {
            "passages": passages,
            "passage_tokens": tokens,
            "anchors": anchors,
            "passage_memory_bytes": nbytes,
            "memories": memories,
            "memory_bytes": memory_bytes,
            "shards": shards,
            "shard_bytes": shard_bytes,
            "dead_memory_bytes": payload - memory_bytes,
        }


def _named_triggers() -> list[tuple[str, str]]:
    """``(name, statement)`` of every checksum trigger."""
    return [(statement.split()[2], statement) for statement in _triggers()]


def _json_object(data: bytes | None) -> bool:
    try:
        return isinstance(json.loads(data.decode("utf-8")), dict)
    except (AttributeError, ValueError):
        return False


def _check_own_sqlite_file(path: Path) -> None:
    """Raise :class:`StoreCorrupted` naming ``path`` unless it and SQLite's files beside it are regular files of
    their own (no link, FIFO or device: SQLite would write through them or block) and it starts with SQLite's
    header; nothing is opened but the file itself, read-only and without blocking."""
    advice = "a store's manifest must be a regular file inside it: restore the store from a copy"
    for file in [path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)]:
        why = entry_problem(file, "file")
        if why:
            raise StoreCorrupted(f"{file} {why}: {advice}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise StoreCorrupted(f"{path}: cannot be read ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        what = "is empty" if not header else "is not a SQLite database"
        raise StoreCorrupted(f"{path} {what}: not a sac_rag manifest ({advice})")


def _parts(values: Sequence) -> Iterator[list]:
    """``values`` in lists of at most 500 (SQLite's limit on bound parameters is far above)."""
    for start in range(0, len(values), 500):
        yield list(values[start : start + 500])


def _marks(values: Sequence) -> str:
    return ",".join("?" * len(values))
