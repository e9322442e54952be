"""Shared builders for the SAC model tests."""

from __future__ import annotations

import copy

from tiny import randomize_sac, tiny_llama, tiny_qwen2, tiny_tokenizer

from sac_rag import SACConfig, SACModel

BUILDERS = {"llama": tiny_llama, "qwen2": tiny_qwen2}


def sac_model(arch: str = "llama", ratio: int = 5, rank: int = 8, randomize: bool = True, **cfg) -> SACModel:
    base = BUILDERS[arch]()
    config = SACConfig(ratio=ratio, lora_rank=rank, lora_alpha=2 * rank, base_model=f"tiny-{arch}", **cfg)
    model = SACModel.from_base(base, config=config, tokenizer=tiny_tokenizer())
    if randomize:
        randomize_sac(model)
    return model


def fresh_base(arch: str = "llama"):
    return copy.deepcopy(BUILDERS[arch]())
