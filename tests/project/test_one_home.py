"""Facts with one home (docs/architecture.md, "One home for each fact"): every place that uses one of them
takes it from its home, so changing the home changes them all."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from setuptools.config.pyprojecttoml import read_configuration
from support import ROOT

import sac_rag
from sac_rag import SACConfig, SACModel
from sac_rag.bridge import SACSession
from sac_rag.cli.main import build_parser
from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE, encode_anchor_kv
from sac_rag.config import DEFAULT_MAX_NEW_TOKENS
from sac_rag.corpus.indexing import index_documents
from sac_rag.decoding.generator import Generator
from sac_rag.device import default_device
from sac_rag.pipeline import SACRAG
from sac_rag.scale.ray_index import index_with_ray
from sac_rag.scale.worker import UnitWriter
from sac_rag.store import DEFAULT_MEMORY_DTYPE, MEMORY_DTYPES, MemoryStore, memory_dtype_for
from sac_rag.training.run import pick_device


def default_of(function, name: str) -> object:
    return inspect.signature(function).parameters[name].default


COMMANDS = {"demo": ["demo"], "index": ["index", "f.txt", "--store", "s"], "ask": ["ask", "q", "--store", "s"]}
COMMANDS["scale index"] = ["scale", "index", "f.txt", "--store", "s"]


def parsed(command: str, *flags: str) -> dict:
    """The arguments ``sac-rag <command> <flags>`` parses to."""
    return vars(build_parser().parse_args([*COMMANDS[command], *flags]))


def test_kv_shape_is_defined_once():
    defined = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "sac_rag").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name == "kv_shape" and node.col_offset == 0
    ]
    assert defined == ["sac_rag/memory/geometry.py"]


@pytest.mark.parametrize("command", ["demo", "index", "scale index"])
def test_memory_dtype_flags_offer_the_codecs_dtypes(command):
    for dtype in MEMORY_DTYPES:
        assert parsed(command, "--memory-dtype", dtype)["memory_dtype"] == dtype
    with pytest.raises(SystemExit):
        parsed(command, "--memory-dtype", "float64")
    assert parsed(command)["memory_dtype"] is None  # None: an existing store's, else its model's (memory_dtype_for)
    assert default_of(MemoryStore.create, "memory_dtype") is None


def test_a_new_store_holds_memories_in_the_dtype_they_are_made_for():
    def model(**config):
        return SimpleNamespace(config=SACConfig(**config))

    assert memory_dtype_for(model()) == DEFAULT_MEMORY_DTYPE == "bfloat16"  # SAC anchors
    assert memory_dtype_for(model(memory_kind="compact")) == "int8"  # int8 compact memories (the default)
    assert memory_dtype_for(model(memory_kind="compact", compact_dtype="bfloat16")) == "bfloat16"


def test_answer_length_default_has_one_home():
    defaults = {
        "SACRAG": default_of(SACRAG.__init__, "max_new_tokens"),
        "SACSession": default_of(SACSession.__init__, "max_new_tokens"),
        "sac-rag ask": parsed("ask")["max_new_tokens"],
        "Generator.stream_ids": default_of(Generator.stream_ids, "max_new_tokens"),  # generate and stream's too
    }
    assert defaults == dict.fromkeys(defaults, DEFAULT_MAX_NEW_TOKENS)


def test_compression_batch_size_has_one_home():
    defaults = {
        "encode_anchor_kv": default_of(encode_anchor_kv, "batch_size"),
        "MemoryStore.add": default_of(MemoryStore.add, "batch_size"),
        "MemoryStore.upsert": default_of(MemoryStore.upsert, "batch_size"),
        "index_documents": default_of(index_documents, "batch_size"),
        "UnitWriter": default_of(UnitWriter.__init__, "batch_size"),
        "index_with_ray": default_of(index_with_ray, "batch_size"),
        "sac-rag index": parsed("index")["batch_size"],
        "sac-rag scale index": parsed("scale index")["batch_size"],
        "SACModel.compress": default_of(SACModel.compress, "batch_size"),
    }
    assert defaults == dict.fromkeys(defaults, COMPRESS_BATCH_SIZE)


def test_the_version_lives_in_the_package():
    written = read_configuration(ROOT / "pyproject.toml", expand=False)["project"]
    assert "version" not in written and "version" in written["dynamic"]
    built = read_configuration(ROOT / "pyproject.toml")["project"]  # what a build of the distribution gets
    assert built["version"] == sac_rag.__version__


def test_training_picks_the_default_device():
    assert pick_device(None) == default_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_the_model_takes_its_default_device_from_its_home():
    import sac_rag.device
    import sac_rag.model

    assert sac_rag.model.default_device is sac_rag.device.default_device
    assert not hasattr(sac_rag.model, "_default_device")  # no second definition beside the home


def test_private_attributes_of_peft_and_torch_are_touched_in_one_module():
    private = {"_version", "_disable_adapters", "_active_adapter", "_active_adapters"}
    root = Path(sac_rag.__file__).parent
    touching = sorted(
        str(path.relative_to(root.parent))
        for path in root.rglob("*.py")
        if any(
            isinstance(node, ast.Attribute) and node.attr in private
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert touching == ["sac_rag/compression/lora.py"]
