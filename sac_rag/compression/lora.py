"""LoRA on the compressor's projections, via PEFT: one set of base weights, switched on and off."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
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


class AdapterSwitch:
    """Turns the LoRA layers off for a block, cheaply.

    ``PeftModel.disable_adapter`` walks every module and toggles ``requires_grad`` on each entry and
    exit (about 10 ms on SmolLM2-135M, as much as a decode step's matrix products); the decoder
    switches per forward call, so we flip only the flag that LoRA layers read in ``forward``.
    """

    def __init__(self, peft_model: PeftModel) -> None:
        self.peft = peft_model
        self.layers = [m for m in peft_model.modules() if isinstance(m, BaseTunerLayer)]
        self.fast = all(hasattr(m, "_disable_adapters") for m in self.layers)

    @contextmanager
    def off(self) -> Iterator[None]:
        if not self.fast:  # a PEFT release without the flag: take the slow, public way
            with self.peft.disable_adapter():
                yield
            return
        before = [m._disable_adapters for m in self.layers]
        for m in self.layers:
            m._disable_adapters = True
        try:
            yield
        finally:
            for m, was in zip(self.layers, before):
                m._disable_adapters = was
