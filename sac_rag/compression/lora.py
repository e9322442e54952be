"""LoRA adapters via PEFT over one set of base weights: the compressor's (``default``) and, for our own
models, the decoder's reader (``reader``); a cheap switch picks which one runs (or none).

This is the one module that touches private attributes of PEFT or torch, each for a measured reason:
PEFT's ``_disable_adapters`` / ``_active_adapter`` (:class:`AdapterSwitch`: PEFT's public switch measured
6.4-23.9 ms a call on SmolLM2-135M against 0.5-0.6 ms for these two attributes) and torch's ``Tensor._version``
(:func:`weights_version`: caches of what the weights are follow every in-place change).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import PreTrainedModel

from sac_rag.config import SACConfig

ADAPTER_NAME = "default"  # the compressor's adapter (PEFT saves it at the checkpoint's top level)
READER_NAME = "reader"  # the decoder's reader adapter (PEFT saves it in a subfolder of that name)


def weights_version(params: Iterable[torch.Tensor]) -> tuple[int, ...]:
    """Each tensor's in-place version counter (torch's private ``Tensor._version``). It moves on every in-place
    change (a checkpoint loaded, an optimizer step, a user's edit), so a cache keyed on it (the fingerprints,
    the attention sink) is invalidated wherever weights change, without every writer having to say so."""
    return tuple(p._version for p in params)


def lora_config(config: SACConfig, base_name: str | None = None) -> LoraConfig:
    """The compressor's LoRA."""
    return _config(config.lora_rank, config.lora_alpha, config.lora_targets, base_name)


def reader_config(config: SACConfig, base_name: str | None = None) -> LoraConfig:
    """The reader's LoRA."""
    return _config(config.reader_rank, config.reader_alpha, config.reader_targets, base_name)


def _config(rank: int, alpha: float, targets: tuple[str, ...], base_name: str | None) -> LoraConfig:
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(targets),
        lora_dropout=0.0,
        bias="none",
        base_model_name_or_path=base_name,
    )


def _check_targets(model: torch.nn.Module, targets: tuple[str, ...]) -> None:
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise ValueError(f"{type(model).__name__} has no modules named {missing} to put LoRA on")


@contextmanager
def _quiet_peft() -> Iterator[None]:
    with warnings.catch_warnings():  # a deprecation inside peft/transformers, not the user's concern
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        # we name the base by its portable id (e.g. the offline default's), not the local path it loaded from
        warnings.filterwarnings("ignore", message="The PEFT config's `base_model_name_or_path` was renamed")
        yield


def attach_lora(base: PreTrainedModel, config: SACConfig, base_name: str | None = None) -> PeftModel:
    """Wrap ``base`` with a fresh LoRA adapter (B = 0: the untrained compressor's projections equal the base)."""
    _check_targets(base, config.lora_targets)
    with _quiet_peft():
        return get_peft_model(base, lora_config(config, base_name))


def add_reader(peft_model: PeftModel, config: SACConfig, base_name: str | None = None) -> None:
    """Add a fresh, frozen reader adapter (B = 0: an untrained reader decodes exactly as the plain base)."""
    _check_targets(peft_model.get_base_model(), config.reader_targets)
    with _quiet_peft():
        peft_model.add_adapter(READER_NAME, reader_config(config, base_name))
    for p in lora_parameters(peft_model, READER_NAME).values():
        p.requires_grad_(False)  # trained only when a training task asks for it


def lora_parameters(peft_model: PeftModel, adapter: str = ADAPTER_NAME) -> dict:
    """One adapter's tensors by their PEFT name."""
    return {n: p for n, p in peft_model.named_parameters() if "lora_" in n and f".{adapter}." in n}


class AdapterSwitch:
    """Runs a block with one named adapter active, or with none, cheaply.

    ``PeftModel.disable_adapter`` / ``set_adapter`` walk every module and toggle ``requires_grad``
    (about 10 ms on SmolLM2-135M, as much as a decode step's matrix products); the decoder switches
    per forward call, so we set only the two attributes that LoRA layers read in ``forward``.
    A layer that lacks the active adapter (the reader may target other projections) runs as the base.
    """

    def __init__(self, peft_model: PeftModel) -> None:
        self.peft = peft_model
        self.layers = [m for m in peft_model.modules() if isinstance(m, BaseTunerLayer)]
        self.fast = all(hasattr(m, "_disable_adapters") and hasattr(m, "_active_adapter") for m in self.layers)

    @contextmanager
    def use(self, adapter: str | None) -> Iterator[None]:
        """Run with ``adapter`` active (``None``: every LoRA off)."""
        if not self.fast:  # a PEFT release without these attributes: take the slow, public way
            with self._slow(adapter):
                yield
            return
        before = [(m._disable_adapters, m._active_adapter) for m in self.layers]
        for m in self.layers:
            m._disable_adapters = adapter is None
            if adapter is not None:
                m._active_adapter = adapter
        try:
            yield
        finally:
            for m, (disabled, active) in zip(self.layers, before):
                m._disable_adapters, m._active_adapter = disabled, active

    @contextmanager
    def _slow(self, adapter: str | None) -> Iterator[None]:
        if adapter is None:
            with self.peft.disable_adapter():
                yield
            return
        previous = self.peft.active_adapter
        self.peft.set_adapter(adapter)
        try:
            yield
        finally:
            self.peft.set_adapter(previous)
