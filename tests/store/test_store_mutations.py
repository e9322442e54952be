"""Issue 18, property: whatever a store folder's entries are replaced by (a symbolic link out of the store, a
directory, a FIFO, an empty file), no ``sac-rag`` command writes outside the store, hangs or shows a traceback.

Each case copies a small store made by ``sac-rag index``, replaces one entry (the manifest, SQLite's write-ahead
log and shared memory beside it, the lock file, ``shards/``, ``index/``, a shard, the index file), runs one
command (``stats``, ``verify``, ``verify --repair``, ``delete``, ``index``, ``ask``) in this process under a
deadline, and checks the folder outside the store byte for byte. The default run draws a derandomised sample;
``-m fuzz`` runs every case.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import deadline
from support.cli import sac_rag

from sac_rag.model import SACModel
from sac_rag.store import MemoryStore

ENTRIES = ["manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm", "write.lock", "shards", "index",
           "shards/*", "index/*"]  # fmt: skip
MUTATIONS = ["symlink", "directory", "directory with a file", "fifo", "empty file"]
COMMANDS = ["stats", "verify", "repair", "delete", "index", "ask"]
CASES = list(itertools.product(ENTRIES, MUTATIONS, COMMANDS))
SAMPLE = 40  # cases of the default run


@pytest.fixture(scope="module")
def world(tmp_path_factory, ckpt):
    """A pristine store (made and answered by the command line), the model and a document for the commands."""
    root = tmp_path_factory.mktemp("mutations")
    doc = root / "a.txt"
    doc.write_text("Alan Turing was born in London. He studied mathematics at Cambridge.")
    new = root / "new.txt"
    new.write_text("Paris is the capital of France.")
    store = root / "pristine"
    assert sac_rag("index", doc, "--store", store, "--model", ckpt, "--no-progress") == 0
    with MemoryStore.open(store) as s:
        first_id = s.ids()[0]
    return {"store": store, "ckpt": ckpt, "new": new, "id": first_id}


@pytest.fixture(scope="module")
def cached_model(world):
    """``SACModel.load`` once for all cases (the commands load the same checkpoint every time)."""
    return functools.cache(SACModel.load)


def command_args(command: str, store: Path, world: dict) -> list:
    model = ["--model", world["ckpt"]]
    return {
        "stats": ["stats", "--store", store],
        "verify": ["verify", "--store", store],
        "repair": ["verify", "--store", store, "--repair", *model],
        "delete": ["delete", world["id"], "--store", store],
        "index": ["index", world["new"], "--store", store, *model, "--no-progress"],
        "ask": ["ask", "Where was Turing born?", "--store", store, *model, "--max-new-tokens", "2"],
    }[command]


def mutate(store: Path, entry: str, mutation: str, outside: Path) -> Path:
    """Replace ``entry`` of ``store`` (``shards/*``: its first shard) by ``mutation``; returns its path."""
    if entry.endswith("/*"):
        entry = f"{entry[:-2]}/{sorted(os.listdir(store / entry[:-2]))[0]}"
    path = store / entry
    was_dir = path.is_dir() and not path.is_symlink()
    if was_dir:
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if mutation == "symlink":
        path.symlink_to(outside / ("folder" if was_dir else "precious.txt"), target_is_directory=was_dir)
    elif mutation.startswith("directory"):
        path.mkdir()
        if mutation.endswith("file"):
            (path / "somebody-else's.txt").write_text("kept")
    elif mutation == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"")
    return path


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (not following links) with the bytes of each file."""
    found = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(base, name)
            found[str(path.relative_to(folder))] = path.read_bytes() if path.is_file() else None
    return found


def check_case(world: dict, entry: str, mutation: str, command: str) -> int:
    """Run one case; returns the command's exit code after checking there was no write outside, hang or
    traceback."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outside = root / "outside"
        (outside / "folder").mkdir(parents=True)
        (outside / "precious.txt").write_text("not the store's to write\n")
        (outside / "folder" / "inner.txt").write_text("nor this\n")
        before = snapshot(outside)
        store = root / "store"
        shutil.copytree(world["store"], store)
        mutate(store, entry, mutation, outside)
        out, err = io.StringIO(), io.StringIO()
        with deadline(60), redirect_stdout(out), redirect_stderr(err):
            code = sac_rag(*command_args(command, store, world))  # any exception escaping here is a traceback
        case = f"{entry} -> {mutation}, {command}: exit {code}; {err.getvalue()[-400:]}"
        assert code in (0, 1), case
        assert "Traceback" not in err.getvalue(), case
        assert snapshot(outside) == before, case
        return code


@pytest.fixture
def quick_model(monkeypatch, cached_model):
    monkeypatch.setattr(SACModel, "load", cached_model)


def test_store_folder_mutations_sample(world, quick_model):
    tried: list[tuple] = []

    @settings(max_examples=SAMPLE, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(st.sampled_from(CASES))
    def case(triple):
        check_case(world, *triple)
        tried.append(triple)

    case()
    print(f"\n{len(tried)} store-folder mutations: no write outside the store, no hang, no traceback")


@pytest.mark.fuzz
def test_store_folder_mutations_every_case(world, quick_model):
    codes = {case: check_case(world, *case) for case in CASES}
    failed = sum(code == 1 for code in codes.values())
    print(f"\n{len(CASES)} store-folder mutations ({failed} refused with a message, {len(CASES) - failed} worked): "
          "no write outside the store, no hang, no traceback")  # fmt: skip
