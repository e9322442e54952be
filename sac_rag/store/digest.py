"""Checksums of a store's contents: passage texts (content hashes) and manifest rows (row digests)."""

from __future__ import annotations

import hashlib


def content_hash(text: str) -> str:
    """The key of a passage's memory: sha256 of its UTF-8 text, 32 hex digits."""
    return content_hash_of_bytes(text.encode("utf-8"))


def content_hash_of_bytes(data: bytes | None) -> str | None:
    """:func:`content_hash` of text given as its UTF-8 bytes (as SQLite stores it); None for None."""
    return None if data is None else hashlib.sha256(data).hexdigest()[:32]


def row_digest(*values: object) -> str:
    """A 128-bit BLAKE2b digest of SQLite values (int, float, str, bytes, None), type and length tagged."""
    h = hashlib.blake2b(digest_size=16)
    for value in values:
        if value is None:
            h.update(b"n;")
            continue
        if isinstance(value, bytes):
            tag, data = b"b", value
        elif isinstance(value, str):
            tag, data = b"s", value.encode("utf-8")
        else:
            tag, data = (b"f" if isinstance(value, float) else b"i"), repr(value).encode()
        h.update(tag + str(len(data)).encode() + b":" + data)
    return h.hexdigest()
