"""Pick a SACModel from a command-line style spec."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sac_rag.config import CONFIG_NAME
from sac_rag.model import SACModel


def load_model(spec: str | None = None) -> SACModel:
    """``None``: the offline default; a directory holding ``sac_config.json``: that checkpoint; else a base model."""
    if spec is None:
        return SACModel.default()
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model must be a checkpoint directory or a model name, got {spec!r}")
    if _looks_like_path(spec) and not Path(spec).exists():
        raise FileNotFoundError(f"model {spec}: no such checkpoint directory")
    if (Path(spec) / CONFIG_NAME).is_file():
        return SACModel.from_pretrained(spec)
    return SACModel.from_base(spec)


def _looks_like_path(spec: str) -> bool:
    """A spec spelled as a path (``/``, ``./``, ``~``), not a hub name like ``org/model``."""
    return spec.startswith(("/", ".", "~")) or Path(spec).exists() or spec.count("/") > 1


def token_counter(model: SACModel) -> Callable[[str], int]:
    """Counts a text's tokens with the model's tokenizer (no special tokens)."""
    return lambda text: len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
