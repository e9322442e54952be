"""The parts of a SAC model that checkpoint code reads and writes (``SACModel`` has them), so that the
checkpoint modules need not import the model module that uses them."""

from __future__ import annotations

from typing import Protocol

from peft import PeftModel
from torch import nn
from transformers import PreTrainedModel

from sac_rag.config import SACConfig


class SACParts(Protocol):
    """A SAC model as checkpoints see it: its config, PEFT wrapper (compressor and reader LoRA), anchor and
    special embeddings, base model and fingerprint."""

    config: SACConfig
    peft: PeftModel
    role_tokens: nn.Parameter
    special_tokens: nn.Parameter

    @property
    def base_model(self) -> PreTrainedModel: ...

    @property
    def fingerprint(self) -> str: ...
