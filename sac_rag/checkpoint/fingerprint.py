"""What identifies a model's memories and its decoder: digests of the weights and settings that make them.

A store records the fingerprint of the memories it holds and refuses others; a digest is recomputed only when a
parameter it covers changed in place (torch's version counters) or the settings it covers did.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from sac_rag.checkpoint.parts import SACParts
from sac_rag.compaction.compactor import KIND as COMPACT_KIND
from sac_rag.compression.lora import ADAPTER_NAME, READER_NAME, lora_parameters, weights_version
from sac_rag.memory.sac import SAC_KIND

DECODER = "decoder"  # the parameter set of every weight the decoder may read


class Fingerprints:
    """The fingerprints of ``parts`` (a :class:`SACModel <sac_rag.model.SACModel>`) and the parameter sets they are
    taken over. Walking the modules for a set takes milliseconds, so sets are kept until :meth:`adapters_changed`."""

    def __init__(self, parts: SACParts) -> None:
        self.parts = parts
        self._digests: dict[str, tuple[tuple, str]] = {}
        self._sets: dict[str, dict[str, nn.Parameter]] = {}

    def adapters_changed(self) -> None:
        """Forget the parameter sets (an adapter was added: the LoRA layers hold new tensors)."""
        self._sets.clear()

    def parameters(self, name: str) -> dict[str, nn.Parameter]:
        """An adapter's LoRA tensors (``name``: its adapter name), or :data:`DECODER`: every weight the decoder may
        read (the base and the reader, not the compressor's LoRA)."""
        found = self._sets.get(name)
        if found is None:
            if name == DECODER:
                compressor = set(map(id, self.parameters(ADAPTER_NAME).values()))
                found = {n: p for n, p in self.parts.peft.named_parameters() if id(p) not in compressor}
            else:
                found = lora_parameters(self.parts.peft, name)
            self._sets[name] = found
        return found

    def sac_parameters(self) -> dict[str, nn.Parameter]:
        """The compressor's parameters: its LoRA, the anchor (role) and special embeddings."""
        parts = self.parts
        return {
            "role_tokens": parts.role_tokens,
            "special_tokens": parts.special_tokens,
            **self.parameters(ADAPTER_NAME),
        }

    def reader_parameters(self) -> dict[str, nn.Parameter]:
        """The reader adapter's LoRA tensors (empty when the model has no reader)."""
        return dict(self.parameters(READER_NAME)) if self.parts.config.has_reader else {}

    def decoder_state(self) -> tuple[int, ...] | None:
        """What the decoder's weights are: the version counters of every one it may read, which torch moves on each
        in-place change (loading, training, edits); None while grad is on and one of them requires it (the
        attention sink is then computed afresh, so that the gradient reaches it)."""
        params = self.parameters(DECODER).values()
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return None
        return weights_version(params)

    def memory(self, kind: str) -> str:
        """Identifies what makes memories of ``kind``: base model + SAC adapter + SAC config for ``"sac"``,
        base model + reader + compaction settings for ``"compact"``."""
        config = self.parts.config
        if kind == COMPACT_KIND:
            params = self.reader_parameters()
            config_text = json.dumps(config.compaction_identity(), sort_keys=True)
        elif kind == SAC_KIND:
            params = {**self.sac_parameters(), **self.reader_parameters()}
            config_text = json.dumps(config.identity(), sort_keys=True)
        else:
            raise ValueError(f"no fingerprint for memories of kind {kind!r}")
        version = (*weights_version(params.values()), id(self.parts.role_tokens), config_text)
        cached = self._digests.get(kind)
        if cached is None or cached[0] != version:
            cached = self._digests[kind] = (version, self._digest(config_text, params))
        return cached[1]

    def decoder(self) -> str:
        """Identifies what decodes, whatever the compressor: the base model and the reader adapter, if any."""
        return self._digest("", self.reader_parameters())

    def _digest(self, config_text: str, params: dict[str, nn.Parameter]) -> str:
        base = self.parts.base_model
        h = hashlib.sha256()
        h.update(config_text.encode())
        base_config = base.config.to_dict()
        base_config.pop("_name_or_path", None)  # where the base was loaded from is not what it is
        h.update(json.dumps(base_config, sort_keys=True, default=str).encode())
        h.update(base.get_input_embeddings().weight[:8].detach().float().cpu().numpy().tobytes())
        for name in sorted(params):
            h.update(name.encode())
            h.update(params[name].detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]
