"""Atomic writes give files and directories the permissions a plain write would, not their temporaries'."""

import os
import stat

import pytest

from sac_rag.io import atomic_create_dir, atomic_write_dir, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_and_directories_follow_the_umask(tmp_path, umask_022):
    atomic_write_text(tmp_path / "results.json", "{}")
    assert mode(tmp_path / "results.json") == 0o644  # readable by others, as `open(..., "w")` would make it
    atomic_write_dir(tmp_path / "model", lambda d: (d / "config.json").write_text("{}"))
    assert mode(tmp_path / "model") == 0o755
    atomic_create_dir(tmp_path / "store", lambda d: (d / "a").write_text("x"))
    assert mode(tmp_path / "store") == 0o755


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask_022):
    path = tmp_path / "private.json"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o600
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o750)
    atomic_write_dir(tmp_path / "shared", lambda d: (d / "f").write_text("x"))
    assert mode(tmp_path / "shared") == 0o750
