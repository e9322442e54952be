"""The store's seams: no module outside ``sac_rag/store`` reaches into a store's private parts or writes SQL,
and the reporting commands (ask, stats, verify, delete) open a sharded store as they open a single one."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from support import ROOT
from support.cli import sac_rag
from support.store import damage_the_shard

from sac_rag.model import SACModel
from sac_rag.scale import ShardedStore
from sac_rag.scale.plan import part_of

SQL = ("INSERT INTO", "INSERT OR REPLACE", "DELETE FROM", "UPDATE ", "SELECT ", "CREATE TABLE")


def private_store_names() -> set[str]:
    """The private attributes and methods of MemoryStore, as its source defines them."""
    tree = ast.parse((ROOT / "sac_rag" / "store" / "store.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("_") and not node.name.startswith("__"):
            names.add(node.name)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            names.add(node.attr)
    return names


def _on_self(node: ast.Attribute) -> bool:
    """``self._x`` / ``cls._x``: a class's own attribute, whichever class it is."""
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def outside_modules() -> list[Path]:
    files = [*(ROOT / "sac_rag").rglob("*.py"), *(ROOT / "integrations").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    return [f for f in files if "sac_rag/store" not in f.as_posix()]


def test_no_module_outside_the_store_touches_its_private_parts():
    private = private_store_names()
    assert {"_manifest", "_cache", "_lock", "_mutex"} <= private
    reaches = []
    for file in outside_modules():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private and not _on_self(node):
                reaches.append(f"{file.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert reaches == []


def test_sql_lives_in_the_manifest_module_only():
    offenders = []
    for file in (ROOT / "sac_rag").rglob("*.py"):
        if file.name == "manifest.py" and file.parent.name == "store":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lstrip().startswith(SQL):
                offenders.append(f"{file.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_inspection_and_repair_do_not_import_the_store_module():
    """No import circle, not even for type checking: they see the store through ``StoreView``."""
    for name in ("inspect", "repair", "view"):
        tree = ast.parse((ROOT / "sac_rag" / "store" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "sac_rag.store.store" not in imported and "sac_rag.store" not in imported, name


def test_reporting_commands_open_a_sharded_store(tmp_path, ckpt, capsys):
    texts = [
        "Alan Turing was born in London in 1912.",
        "Paris is the capital of France.",
        "The quick brown fox jumps over the lazy dog.",
        "Bletchley Park was home to the codebreakers.",
        "The Seine flows through Paris.",
    ]
    path = tmp_path / "sharded"
    with ShardedStore.create(path, SACModel.load(ckpt), parts=2) as store:
        for n, part in enumerate(store.parts):
            mine = [i for i in range(len(texts)) if part_of(i, 2) == n]
            part.add([texts[i] for i in mine], ids=mine, progress=False)
    capsys.readouterr()
    assert sac_rag("stats", "--store", path, "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["parts"] == 2 and stats["passages"] == len(texts)
    assert sac_rag("verify", "--store", path, "--json") == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    args = ("ask", "capital of France", "--store", path, "--model", ckpt, "-k", "5", "--max-new-tokens", "1")
    assert sac_rag(*args, "--json") == 0
    sources = json.loads(capsys.readouterr().out)["sources"]
    assert sorted(s["id"] for s in sources) == list(range(len(texts)))  # from both parts
    assert sac_rag("scale", "search", "capital of France", "--store", path, "-k", "2", "--json") == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["text"] == texts[1] and hits[0]["score"] >= hits[1]["score"]
    assert sac_rag("delete", "3", "--store", path, "--json") == 0
    assert json.loads(capsys.readouterr().out)["left"] == len(texts) - 1
    assert sac_rag("delete", "3", "4", "--store", path) == 1  # all or nothing across parts
    assert "ids not in the store: [3]" in capsys.readouterr().err
    shard = damage_the_shard(path / "part-0001")
    assert sac_rag("verify", "--store", path) == 1
    assert str(shard) in capsys.readouterr().err
    assert sac_rag("verify", "--store", path, "--repair", "--model", ckpt, "--json") == 0
    assert json.loads(capsys.readouterr().out)["repair"]["recompressed"] == 1
    with ShardedStore.open(path) as store:
        assert len(store) == len(texts) - 1 and store.verify().ok
