"""The manifest: one SQLite database (WAL mode) that is the store's source of truth.

It ties passage ids to their text, metadata, content hash and embedding, content hashes to the memory
rows of a shard, and shards to their checksums. Every write is one transaction that also bumps
``generation``; readers see either all of a write or none of it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sac_rag.store.errors import StoreCorrupted

STORE_FORMAT = "sac_rag.store/1"
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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA journal_size_limit=4194304")  # the WAL shrinks back after a checkpoint
        except sqlite3.DatabaseError as e:
            raise StoreCorrupted(f"{path}: not a sac_rag manifest ({e})") from e

    @classmethod
    def create(cls, path: Path, meta: dict[str, object]) -> Manifest:
        manifest = cls(path)
        with manifest.transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in {"format": STORE_FORMAT, "generation": 0, **meta}.items()],
            )
        return manifest

    def check_format(self) -> None:
        """Raise :class:`StoreCorrupted` naming the file unless it is a manifest this version reads."""
        try:
            fmt = self.meta("format")
        except (StoreCorrupted, KeyError) as e:
            reason = str(e).removeprefix(f"{self.path}: ")
            raise StoreCorrupted(f"{self.path}: not a sac_rag manifest ({reason})") from e
        if fmt != STORE_FORMAT:
            raise StoreCorrupted(f"{self.path}: store format {fmt!r}, this sac_rag reads {STORE_FORMAT!r}")

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
                raise StoreCorrupted(f"{self.path}: {e}") from e

    # ------------------------------------------------------------------ meta
    def meta(self, key: str, default: object = KeyError) -> object:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            if default is KeyError:
                raise KeyError(f"{key!r} missing from {self.path}")
            return default
        return json.loads(rows[0][0])

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

    # ------------------------------------------------------------------ passages
    def count(self) -> int:
        return self._query("SELECT COUNT(*) FROM passages")[0][0]

    def ids(self) -> list[int]:
        return [r[0] for r in self._query("SELECT id FROM passages ORDER BY id")]

    def next_id(self) -> int:
        return self._query("SELECT COALESCE(MAX(id) + 1, 0) FROM passages")[0][0]

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        rows: dict[int, PassageRow] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for pid, h, text, metadata in self._query(
                f"SELECT id, hash, text, metadata FROM passages WHERE id IN ({marks})", part
            ):
                rows[pid] = PassageRow(pid, h, text, json.loads(metadata))
        return rows

    def embeddings(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All passage ids and their embeddings ``[n, dim]`` float32."""
        rows = self._query("SELECT id, embedding FROM passages ORDER BY id")
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vectors

    def embedding_of_hash(self, content_hash: str) -> np.ndarray | None:
        rows = self._query("SELECT embedding FROM passages WHERE hash = ? LIMIT 1", (content_hash,))
        return np.frombuffer(rows[0][0], dtype=np.float32) if rows else None

    def texts_by_hash(self) -> dict[str, str]:
        return dict(self._query("SELECT hash, text FROM passages GROUP BY hash"))

    # ------------------------------------------------------------------ memories and shards
    def memory_rows(self, hashes: Sequence[str] | None = None) -> dict[str, MemoryRow]:
        if hashes is None:
            rows = self._query("SELECT * FROM memories")
        else:
            rows = []
            for start in range(0, len(hashes), 500):
                part = list(hashes[start : start + 500])
                rows += self._query(f"SELECT * FROM memories WHERE hash IN ({','.join('?' * len(part))})", part)
        return {r[0]: MemoryRow(*r[:7], json.loads(r[7])) for r in rows}

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
