"""The example notebooks: saved with outputs and no errors (fast); re-executed with nbclient (slow)."""

from __future__ import annotations

import ast

import nbformat
import pytest
from support import ROOT

EXAMPLES = ROOT / "examples"
NOTEBOOKS = ["quickstart.ipynb", "llama_index_qa.ipynb", "langchain_qa.ipynb"]


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def errors(nb) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for c in code_cells(nb) for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_saved_executed_with_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert cells and all(c.execution_count for c in cells), "execute the notebook and save it with its outputs"
    assert not errors(nb)
    text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
    assert "from memory" in text and "raw text" in text and "saved" in text  # answers, time and bytes shown
    for c in cells:
        compile(c.source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # Jupyter awaits at top level
    assert "gensim" in cells[0].source  # the corpus comes from an installed package, not the repository


@pytest.mark.parametrize(
    ("name", "package"),
    [("llama_index_qa.ipynb", "from llama_index.llms.sac import"), ("langchain_qa.ipynb", "from langchain_sac import")],
)
def test_notebook_imports_the_integration_package(name, package):
    source = "".join(c.source for c in code_cells(nbformat.read(EXAMPLES / name, as_version=4)))
    assert package in source and "from integrations" not in source and "import integrations" not in source


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert not errors(nb)
    answers = [o.get("text", "") for c in code_cells(nb) for o in c.get("outputs", [])]
    assert any("Q: " in t for t in answers)


def test_notebooks_show_the_default_memory_kind_and_the_shipped_checkpoint_by_name():
    from sac_rag.config import SACConfig
    from sac_rag.pretrained import default_checkpoint

    checkpoint = default_checkpoint()
    assert checkpoint is not None
    kind = SACConfig.load(checkpoint).memory_kind  # what SACModel.default() makes
    for name in NOTEBOOKS:
        cells = code_cells(nbformat.read(EXAMPLES / name, as_version=4))
        text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
        assert f"memory kind {kind!r}" in text and f"shipped checkpoint: {checkpoint.name}\n" in text


def test_langchain_notebook_compresses_under_contextual_compression_retriever():
    source = "".join(c.source for c in code_cells(nbformat.read(EXAMPLES / "langchain_qa.ipynb", as_version=4)))
    assert "ContextualCompressionRetriever(" in source and "base_compressor=compressor" in source
    assert "compressor = SACDocumentCompressor(session=session)" in source and "ChatSAC(session=session" in source
    assert "vector_store.as_retriever(" in source and "await chain.ainvoke(" in source
