"""The single-writer lock: an advisory ``flock`` on ``<store>/write.lock`` (POSIX).

The lock file is opened only if it is a regular file of the store's own (never through a symbolic
link, never a FIFO or a hard link to another file; see :func:`~sac_rag.store.layout.open_for_writing`),
so a store whose ``write.lock`` was replaced cannot make a writer truncate or write anything else.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from sac_rag.store.errors import StoreError
from sac_rag.store.layout import open_for_writing


class WriterLock:
    """Re-entrant exclusive lock held by at most one process at a time; released if the process dies."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        if self._depth:
            self._depth += 1
            return
        fd = open_for_writing(self.path)
        try:
            self._wait(fd)
            _check_still_named(fd, self.path)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._depth = fd, 1

    def _wait(self, fd: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{self.path} is held by another writer (waited {self.timeout:.0f}s); "
                        "a store takes one writer at a time"
                    ) from None
                time.sleep(0.05)

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _check_still_named(fd: int, path: Path) -> None:
    """Raise unless ``path`` still names the file locked: a store removed (or its lock file replaced) while
    this writer waited must not be written as if it were still there."""
    held = os.fstat(fd)
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        named = None
    if named is None or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
        raise StoreError(f"{path} was removed or replaced while this writer waited for it: open the store again")
