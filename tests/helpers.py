"""Shared builders for the SAC model tests."""

from __future__ import annotations

import copy

from sac_rag.testing import BUILDERS
from sac_rag.testing import tiny_model as sac_model

__all__ = ["BUILDERS", "fresh_base", "sac_model"]


def fresh_base(arch: str = "llama"):
    return copy.deepcopy(BUILDERS[arch]())
