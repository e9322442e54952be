"""What the tests do to tiny models beyond ``sac_rag.testing``: give a reader adapter weights, count tokens."""

from __future__ import annotations

import torch

from sac_rag import SACModel
from sac_rag.testing import tiny_tokenizer


def randomize_reader(model: SACModel, seed: int = 7, scale: float = 0.05) -> None:
    """Random non-zero weights for the model's reader adapter (a fresh one decodes as the plain base)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.reader_parameters().values():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in the tiny tokenizer."""
    return len(tiny_tokenizer()(text, add_special_tokens=False)["input_ids"])
