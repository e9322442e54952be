"""Shards: immutable safetensors files of memory tensors, read through a memory map.

A shard is written once, atomically, and never modified; its sha256 lives in the manifest. Reading
maps the file (``MAP_PRIVATE``) and returns tensor *views* into the map, so asking for one memory
touches only that memory's pages, never the whole shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file

from sac_rag.io import atomic_write
from sac_rag.store.errors import StoreCorrupted

SHARD_FORMAT = "sac_rag.shard/1"
_DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
}


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def tensors_crc(tensors: Iterable[torch.Tensor]) -> int:
    """CRC32 over the raw bytes of tensors, in order (checked on every read of a memory)."""
    crc = 0
    for t in tensors:
        crc = zlib.crc32(t.contiguous().view(-1).view(torch.uint8).numpy(), crc)
    return crc


def write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
    """Write ``tensors`` as a safetensors file atomically; return its sha256 and size."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": SHARD_FORMAT}))
    return sha256_file(path), path.stat().st_size


def shard_memory_hashes(path: Path, max_header: int = 1 << 26) -> set[str]:
    """The content hashes of the memories a shard file holds, from its header alone (empty when ``path`` is not
    a regular file of a readable shard header: a leftover of an interrupted write, or something else)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return set()
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return set()
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > max_header:
                return set()
            header = json.loads(f.read(header_len))
        except (OSError, ValueError, struct.error, UnicodeDecodeError):
            return set()
    if not isinstance(header, dict):
        return set()
    return {name.rsplit(".", 1)[0] for name in header if name != "__metadata__" and "." in name}


class ShardReader:
    """Tensor views into one memory-mapped shard file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                if header_len > size - 8:
                    raise ValueError(f"header length {header_len} exceeds the file")
                header = json.loads(f.read(header_len))
            if header.get("__metadata__", {}).get("format") != SHARD_FORMAT:
                raise ValueError("not a sac_rag shard")
        except FileNotFoundError:
            raise
        except (OSError, ValueError, struct.error, UnicodeDecodeError) as e:
            raise StoreCorrupted(f"{path}: unreadable shard ({e})") from e
        header.pop("__metadata__")
        self._header = header
        self._data_start = 8 + header_len
        self._bytes = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage.from_file(str(path), False, size))
        self._raw = self._bytes.numpy()  # the same bytes, for checksums

    def __contains__(self, name: str) -> bool:
        return name in self._header

    def names(self) -> list[str]:
        return list(self._header)

    def tensor(self, name: str) -> torch.Tensor:
        """The named tensor as a view of the mapped file (a copy only if its bytes are misaligned)."""
        dtype, begin, end, shape = self._entry(name)
        raw = self._bytes[begin:end]
        if begin % dtype.itemsize:
            raw = raw.clone()
        return raw.view(dtype).view(shape)

    def crc(self, names: Iterable[str]) -> int:
        """:func:`tensors_crc` of the named tensors, in order, read from the mapped bytes they are views of (without
        making the tensors)."""
        crc = 0
        for name in names:
            _, begin, end, _ = self._entry(name)
            crc = zlib.crc32(self._raw[begin:end], crc)
        return crc

    def _entry(self, name: str) -> tuple[torch.dtype, int, int, list[int]]:
        """The named tensor's dtype, byte span in the file and shape, checked against the file."""
        try:
            info = self._header[name]
            dtype = _DTYPES[info["dtype"]]
            begin, end = (self._data_start + o for o in info["data_offsets"])
            shape = info["shape"]
        except KeyError as e:
            raise StoreCorrupted(f"{self.path}: tensor {name!r} missing or of unknown type") from e
        if end > self._bytes.numel() or begin > end:
            raise StoreCorrupted(f"{self.path}: tensor {name!r} lies outside the file (truncated shard?)")
        return dtype, begin, end, shape
