"""LoRA on the compressor's projections, via PEFT: one set of base weights, switched on and off."""

from __future__ import annotations

import warnings

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from sac_rag.config import SACConfig

ADAPTER_NAME = "default"


def lora_config(config: SACConfig, base_name: str | None = None) -> LoraConfig:
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=list(config.lora_targets),
        lora_dropout=0.0,
        bias="none",
        base_model_name_or_path=base_name,
    )


def attach_lora(base: PreTrainedModel, config: SACConfig, base_name: str | None = None) -> PeftModel:
    """Wrap ``base`` with a fresh LoRA adapter (B = 0: the untrained compressor's projections equal the base)."""
    present = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [t for t in config.lora_targets if t not in present]
    if missing:
        raise ValueError(f"{type(base).__name__} has no modules named {missing} to put LoRA on")
    with warnings.catch_warnings():  # a deprecation inside peft/transformers, not the user's concern
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        # we name the base by its portable id (e.g. the offline default's), not the local path it loaded from
        warnings.filterwarnings("ignore", message="The PEFT config's `base_model_name_or_path` was renamed")
        return get_peft_model(base, lora_config(config, base_name))


def lora_parameters(peft_model: PeftModel) -> dict:
    """The adapter's trainable tensors by their PEFT name."""
    return {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
