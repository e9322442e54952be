"""Compressor checkpoints shipped inside the package (trained by ``sac-rag train``, see docs/training.md)."""

from __future__ import annotations

from pathlib import Path

from sac_rag.config import CONFIG_NAME

_HERE = Path(__file__).parent
DEFAULT_CHECKPOINT = "smollm2-135m-r5"


def default_checkpoint() -> Path | None:
    """The shipped default compressor's directory, or None when this build ships none."""
    path = _HERE / DEFAULT_CHECKPOINT
    return path if (path / CONFIG_NAME).is_file() else None
