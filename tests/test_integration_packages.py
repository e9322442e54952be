"""The integration packages: laid out as their ecosystems expect, thin over sac_rag.bridge, not in the base install."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
INTEGRATIONS = ROOT / "integrations"
LLAMA_KINDS = {
    "postprocessor": ["SACCompressor"],
    "llms": ["SACLLM"],
    "embeddings": ["SACEmbedding"],
    "retrievers": ["SACStoreRetriever"],
}


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
