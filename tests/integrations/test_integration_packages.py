"""The integration packages: laid out as their ecosystems expect, thin over sac_rag.bridge, not in the base install."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support import ROOT, TESTS

tomllib = pytest.importorskip("tomllib")

INTEGRATIONS = ROOT / "integrations"
LLAMA_KINDS = {
    "postprocessor": ["SACCompressor"],
    "llms": ["SACLLM"],
    "embeddings": ["SACEmbedding"],
    "retrievers": ["SACStoreRetriever"],
}
#: each package folder and the module its code lives in
IMPORTS = {"langchain-sac": "langchain_sac", **{f"llama-index-{k}-sac": f"llama_index.{k}.sac" for k in LLAMA_KINDS}}
PACKAGES = sorted(IMPORTS)


def pyproject(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name for r in requirements}


def test_every_package_folder_is_a_known_distribution_and_installed():
    folders = sorted(p.name for p in INTEGRATIONS.iterdir() if (p / "pyproject.toml").exists())
    assert folders == sorted(["langchain-sac", *(f"llama-index-{kind}-sac" for kind in LLAMA_KINDS)])
    for name in folders:
        meta = pyproject(INTEGRATIONS / name)["project"]
        assert meta["name"] == name
        assert importlib.metadata.version(name) == meta["version"]  # run.sh installed it


def test_langchain_sac_is_shaped_like_a_partner_package():
    folder = INTEGRATIONS / "langchain-sac"
    assert requirement_names(pyproject(folder)["project"]["dependencies"]) == {"sac-rag", "langchain-core"}
    assert (folder / "langchain_sac" / "py.typed").exists() and (folder / "README.md").exists()
    module = importlib.import_module("langchain_sac")
    assert {"ChatSAC", "SACRetriever", "SACEmbeddings"} <= set(module.__all__)
    assert all(getattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("kind", LLAMA_KINDS)
def test_llama_index_packages_are_namespace_packages_with_llamahub_metadata(kind):
    folder = INTEGRATIONS / f"llama-index-{kind}-sac"
    config = pyproject(folder)
    assert requirement_names(config["project"]["dependencies"]) == {"sac-rag", "llama-index-core"}
    hub = config["tool"]["llamahub"]
    assert hub["import_path"] == f"llama_index.{kind}.sac"
    assert "class_authors" not in hub  # LlamaHub's authors are GitHub handles: none is made up
    assert not (folder / "llama_index" / "__init__.py").exists()  # namespace: shared with llama-index-core
    assert not (folder / "llama_index" / kind / "__init__.py").exists()
    module = importlib.import_module(hub["import_path"])
    assert all(hasattr(module, name) for name in LLAMA_KINDS[kind])
    assert importlib.import_module("llama_index.core").__file__  # llama-index-core still resolves


def test_the_base_install_needs_no_framework():
    project = pyproject(ROOT)["project"]
    assert not any(n.startswith(("langchain", "llama-index")) for n in requirement_names(project["dependencies"]))
    assert "gensim" in requirement_names(project["optional-dependencies"]["demo"])
    code = (
        "import sys, sac_rag, sac_rag.bridge, sac_rag.store, sac_rag.pipeline\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'langchain_core', 'llama_index', 'integrations'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------- each package as its own distribution (issue 19)
def first_python_block(markdown: str) -> str:
    match = re.search(r"```python\n(.*?)```", markdown, re.S)
    assert match, "the README shows no Python example"
    return match.group(1)


def alone_on_top_of_sac_rag(folder: Path) -> dict[str, str]:
    """An environment where Python sees the installed third-party packages, sac_rag and the package in ``folder``,
    and no other integration package (run Python with ``-S``: the editable installs' hooks stay off)."""
    path = [str(folder), str(ROOT), sysconfig.get_paths()["purelib"]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_alone(name: str, args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -S args`` in an environment with only the package ``name`` on top of sac_rag."""
    env = alone_on_top_of_sac_rag(INTEGRATIONS / name)
    command = [sys.executable, "-S", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_carries_its_licence_readme_and_tests(name):
    folder = INTEGRATIONS / name
    config = pyproject(folder)
    project = config["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    licence = (folder / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert f"pip install {name}" in readme and f"pip install ./integrations/{name}" in readme  # its own install line
    example = first_python_block(readme)
    compile(example, f"{name}/README.md", "exec")
    assert re.search(rf"^from {re.escape(IMPORTS[name])} import", example, re.M)  # the example uses the package
    tests = sorted((folder / "tests").rglob("test_*.py"))
    assert tests and config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert "pytest" in requirement_names(project["optional-dependencies"]["test"])
    root_testpaths = pyproject(ROOT)["tool"]["pytest"]["ini_options"]["testpaths"]
    assert any(fnmatch.fnmatch(f"integrations/{name}/tests", p) for p in root_testpaths)  # `bash run.sh test` runs them


@pytest.mark.parametrize("name", PACKAGES)
def test_package_tests_import_neither_another_package_nor_the_repositorys_tests(name):
    others = [m for n, m in IMPORTS.items() if n != name]
    # what the repository's tests put on sys.path: their support package and each file by its name
    repository_tests = {"support", *(p.stem for p in TESTS.rglob("*.py") if "support" not in p.parts)}
    for path in (INTEGRATIONS / name / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            bad = [m for m in modules if m.split(".")[0] in repository_tests or any(m.startswith(o) for o in others)]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}: a package's tests use that package alone"


@pytest.mark.parametrize("name", PACKAGES)
def test_the_isolated_environment_sees_that_package_and_no_other(name):
    """What the slow tests below run in: ``-S`` keeps the other packages' editable installs out."""
    modules = [IMPORTS[name], *(m for n, m in IMPORTS.items() if n != name), "sac_rag"]
    probe = "import importlib.util as u\nfor m in %r:\n"
    probe += " try: print(bool(u.find_spec(m)))\n except ImportError: print(False)"
    seen = run_alone(name, ["-c", probe % modules], ROOT).stdout.split()
    assert seen == ["True", *["False"] * (len(modules) - 2), "True"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PACKAGES)
def test_package_tests_pass_with_only_that_package_on_top_of_sac_rag(name):
    done = run_alone(name, ["-m", "pytest", "-q", "-p", "no:cacheprovider"], INTEGRATIONS / name, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^\d+ passed", done.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", PACKAGES)
def test_readme_example_runs_offline_with_only_that_package(name, tmp_path):
    example = first_python_block((INTEGRATIONS / name / "README.md").read_text(encoding="utf-8"))
    done = run_alone(name, ["-c", example], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip()
