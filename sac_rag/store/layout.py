"""A store directory's parts, and what each must be on disk (see docs/store.md, "Integrity").

A store is a folder people share and unpack, so none of its entries may turn a write into a write
elsewhere: every file the store writes must be a regular file of its own (not a symbolic link, not a
hard link shared with another name, not a FIFO or device), every directory it writes into a real
directory. Entries are judged by ``lstat``, never through a link, and nothing here opens a special
file (opening a FIFO blocks).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Literal

from sac_rag.store.errors import StoreCorrupted

MANIFEST = "manifest.sqlite"
#: The layout file of a sharded store (:class:`sac_rag.scale.ShardedStore`: parts, each a store of its own).
SHARDED = "sharded.json"
SHARDS = "shards"
INDEX = "index"
LOCK = "write.lock"
#: SQLite's files beside the manifest (write-ahead log, shared memory, rollback journal).
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
#: The store's own directories, and the files beside them that it writes (the lock file may be missing).
DIRECTORIES = (SHARDS, INDEX)
REPAIR = "`sac-rag verify --store {store} --repair` fixes it"


def store_kind(path: str | Path) -> Literal["single", "sharded"] | None:
    """What is on disk at ``path``: a single store (``"single"``: its manifest), a sharded one (``"sharded"``:
    its layout file), or neither (``None``). :func:`sac_rag.scale.open_store` opens either."""
    path = Path(path)
    if (path / SHARDED).is_file():
        return "sharded"
    if os.path.lexists(path / MANIFEST):
        return "single"
    return None


def not_a_store(path: str | Path) -> str:
    """Why there is no store of either kind at ``path``, with what to do."""
    path = Path(path)
    if not os.path.lexists(path):
        return f"no sac_rag store at {path} (create one with `sac-rag index FILES --store {path}`)"
    if not path.is_dir():
        return f"no sac_rag store at {path}: it is a file, and a store is a directory"
    return (
        f"no sac_rag store at {path}: it holds neither {MANIFEST} (a store) nor {SHARDED} (a sharded store); "
        "a store is a directory made by `sac-rag index FILES --store DIR`"
    )


def entry_problem(path: Path, kind: str) -> str | None:
    """What is wrong with ``path`` as a store ``kind`` (``"file"`` or ``"dir"``); None if it is fine or missing.

    A file must be a regular file with no other name (a hard link would carry writes to that name);
    a directory must be a real directory. Symbolic links are wrong either way.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is not a directory: reported for the parent
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"is a symbolic link (to {target}), not the store's own {_noun(kind)}"
    if kind == "dir":
        return None if stat.S_ISDIR(st.st_mode) else f"is {kind_of(st.st_mode)}, not a directory"
    return _file_problem(st)


def _file_problem(st: os.stat_result) -> str | None:
    """What keeps an entry (its ``lstat``/``fstat``) from being a file the store may write."""
    if not stat.S_ISREG(st.st_mode):
        return f"is {kind_of(st.st_mode)}, not a regular file"
    if st.st_nlink > 1:
        return f"is a hard link shared with {st.st_nlink - 1} other name(s): writing it would change them too"
    return None


def _noun(kind: str) -> str:
    return "directory" if kind == "dir" else "file"


def kind_of(mode: int) -> str:
    """An entry's type in words (``st_mode`` of its ``stat``)."""
    for test, words in (
        (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    ):  # fmt: skip
        if test(mode):
            return words
    return "a special file"


def manifest_files(store: Path) -> list[Path]:
    """The manifest and SQLite's side files of it (present or not)."""
    manifest = store / MANIFEST
    return [manifest, *(manifest.with_name(MANIFEST + s) for s in SQLITE_SIDE_FILES)]


def layout_problems(store: Path) -> list[tuple[Path, str]]:
    """``(path, what is wrong)`` for every store entry that is not what the store writes: the manifest and
    SQLite's files beside it, ``write.lock``, ``shards/`` and ``index/`` (missing directories included)."""
    found = [(p, why) for p in [*manifest_files(store), store / LOCK] if (why := entry_problem(p, "file"))]
    for name in DIRECTORIES:
        path = store / name
        why = entry_problem(path, "dir")
        if why is None and not os.path.lexists(path):
            why = "is missing"
        if why:
            found.append((path, why))
    return found


def regular(path: Path) -> bool:
    """Whether ``path`` itself (not through a link) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def holds_data(path: Path) -> bool:
    """Whether an entry holds anything of its own: a non-empty regular file with no other name, or a directory
    with entries. Links (symbolic or hard: the data stays under the other name), FIFOs, devices, empty files
    and empty directories hold nothing that removing the entry would lose."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        return st.st_size > 0 and st.st_nlink == 1
    if stat.S_ISDIR(st.st_mode):
        return any(os.scandir(path))
    return False


def discard(path: Path) -> bool:
    """Remove an entry the store no longer needs: the name only (never a link's target); a directory only
    when it is empty. False when it is a directory that holds entries (left where it is)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def layout_error(path: Path, why: str) -> StoreCorrupted:
    """The error for a store entry that is not what the store writes, with what to do about it."""
    return StoreCorrupted(f"{path} {why}: {REPAIR.format(store=path.parent)}")


def open_for_writing(path: Path) -> int:
    """A read-write descriptor of ``path`` (created if missing), only if it is a regular file of the store's
    own: ``O_NOFOLLOW`` (never through a symbolic link), ``O_NONBLOCK`` (a FIFO cannot block), then checked
    to be a regular file with no other hard link; raises :class:`StoreCorrupted` naming it otherwise."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise layout_error(path, entry_problem(path, "file") or f"cannot be opened ({e.strerror})") from None
    st = os.fstat(fd)
    why = _file_problem(st)
    if why:
        os.close(fd)
        raise layout_error(path, why)
    return fd
