"""Import circles among sac_rag's modules (every import statement counts: top-level, lazy, TYPE_CHECKING).

``python tests/project/test_imports.py`` lists them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (not support.ROOT: this file runs as a script too)


def import_graph(root: Path = ROOT, package: str = "sac_rag") -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import name`` counts as pkg unless name is a module)."""
    files = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every elementary circle, once, starting at its smallest module name."""
    found = set()
    for start in sorted(graph):
        stack = [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    found.add(path)
                elif nxt > start and nxt not in path:
                    stack.append((nxt, (*path, nxt)))
    return sorted(found, key=lambda c: (len(c), c))


def test_the_graph_sees_lazy_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert import_circles(import_graph(tmp_path, "pkg")) == [("pkg.a", "pkg.b")]


def test_model_and_checkpoint_are_not_in_a_circle():
    graph = import_graph()
    assert "sac_rag.checkpoint.native" in graph["sac_rag.model"]  # the graph sees the real imports
    circles = [c for c in import_circles(graph) if "sac_rag.model" in c]
    assert circles == []


#: sac_rag's rooms (packages and top-level modules), floor by floor from the ground up: a module imports only from its
#: own floor or those below (docs/architecture.md, "Floors").
FLOORS = (
    ("io", "device", "text", "embedding", "qa"),
    ("config", "home"),
    ("compression",),
    ("memory",),
    ("decoding",),
    ("compaction",),
    ("checkpoint", "pretrained"),
    ("model",),
    ("sac_rag",),  # the package's front door (__init__: SACModel, SACConfig, MemoryChunk, __version__)
    ("store",),
    ("corpus", "bridge", "pipeline", "eval"),
    ("scale", "training"),
    ("cli", "testing"),
)


def room_of(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def upward_imports(graph: dict[str, set[str]], floors=FLOORS) -> list[str]:
    """Every import of a module from a room on a higher floor than its own (a room no floor names raises)."""
    floor = {room: n for n, rooms in enumerate(floors) for room in rooms}
    return sorted(
        f"{m} -> {t}" for m, targets in graph.items() for t in targets if floor[room_of(t)] > floor[room_of(m)]
    )


def test_imports_only_go_down_the_floors():
    graph = import_graph()
    assert {room_of(m) for m in graph} == {room for rooms in FLOORS for room in rooms}  # every room has a floor
    assert upward_imports(graph) == [] and import_circles(graph) == []
    assert upward_imports({"sac_rag.text.prompt": {"sac_rag.config"}}) == ["sac_rag.text.prompt -> sac_rag.config"]


def test_scale_does_not_import_the_pipeline():
    graph = import_graph()
    scale = [m for m in graph if m.startswith("sac_rag.scale")]
    assert scale and not [(m, t) for m in scale for t in graph[m] if t.startswith("sac_rag.pipeline")]


def private_names(path: Path, cls: str) -> set[str]:
    """The private (single-underscore) attributes a class defines or assigns to ``self``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for inner in ast.walk(node):
                name = inner.name if isinstance(inner, ast.FunctionDef) else getattr(inner, "attr", "")
                if name.startswith("_") and not name.startswith("__"):
                    names.add(name)
    return names


def test_no_module_reaches_into_a_sac_model():
    private = private_names(ROOT / "sac_rag" / "model.py", "SACModel")
    assert {"_fingerprints", "_check_memory"} <= private
    reaches = []
    for folder in ("sac_rag", "bench", "integrations"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "sac_rag" / "model.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                owner = getattr(getattr(node, "value", None), "id", None)
                if isinstance(node, ast.Attribute) and node.attr in private and owner not in ("self", "cls"):
                    reaches.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert reaches == []


if __name__ == "__main__":
    circles = import_circles(import_graph())
    print(f"{len(circles)} import circles; upward imports: {upward_imports(import_graph()) or 'none'}")
    for circle in circles:
        print(" -> ".join((*circle, circle[0])))
