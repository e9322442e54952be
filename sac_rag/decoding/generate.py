"""Greedy decoding from a prompt of memories, text and [LM] (SAC_SPEC section 8)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import torch
from torch import nn
from transformers import DynamicCache

from sac_rag.decoding.attention import biased_attention
from sac_rag.memory.compose import ComposedPrompt, Feed, PlacedMemory, Segment, compose, memory_bias
from sac_rag.memory.rope import RotaryShifter


class MemoryCache(DynamicCache):
    """The decoder's cache. ``memory_bias``: per layer, a ``[kv_heads, n_layer]`` logit bias on that layer's
    first ``n_layer`` entries (memories and any text between them), or None when no memory carries one.
    With a bias, layers may hold different numbers of entries (unused padding is left out)."""

    memory_bias: list[torch.Tensor] | None = None


class MemoryDecoder:
    """Runs the base decoder (adapter off) over composed memories and generates greedily.

    ``decoder_mode`` returns a context manager inside which ``transformer`` runs with the
    compressor's adapter disabled; it is entered per forward call, so a paused stream never
    leaves the shared weights in decoder mode.
    """

    def __init__(
        self,
        transformer: nn.Module,
        lm_head: nn.Module,
        embed: nn.Module,
        lm_embedding: torch.Tensor,
        shifter: RotaryShifter,
        decoder_mode: Callable[[], AbstractContextManager],
    ) -> None:
        self.transformer = transformer
        self.lm_head = lm_head
        self.embed = embed
        self.lm_embedding = lm_embedding
        self.shifter = shifter
        self.decoder_mode = decoder_mode

    def _embed_feed(self, feed: Feed, device) -> torch.Tensor:
        ids = torch.tensor([t if isinstance(t, int) else 0 for t in feed.items], device=device)
        embeds = self.embed(ids)
        is_lm = torch.tensor([not isinstance(t, int) for t in feed.items], device=device)
        if is_lm.any():
            embeds = torch.where(is_lm[:, None], self.lm_embedding.to(embeds.dtype), embeds)
        return embeds

    def _hidden(self, embeds: torch.Tensor, positions: list[int], cache: MemoryCache) -> torch.Tensor:
        pos = torch.tensor([positions], device=embeds.device)
        with self.decoder_mode():
            if not cache.memory_bias or not cache.memory_bias[0].shape[1]:  # no biased memory before this text
                out = self.transformer(inputs_embeds=embeds[None], position_ids=pos, cache=cache, use_cache=True)
                return out.last_hidden_state[0]
            with biased_attention(self.transformer.config):
                out = self.transformer(
                    inputs_embeds=embeds[None],
                    position_ids=pos,
                    cache=cache,
                    use_cache=True,
                    memory_bias=cache.memory_bias,
                )
            return out.last_hidden_state[0]

    def _forward(self, embeds: torch.Tensor, positions: list[int], cache: MemoryCache) -> torch.Tensor:
        return self.lm_head(self._hidden(embeds, positions, cache)[-1]).float()

    def compose(self, segments: list[Segment]) -> ComposedPrompt:
        """``segments`` laid out in one position space, memories' keys rotated into place (see
        :func:`~sac_rag.memory.compose.compose`), in this decoder's dtype and device."""
        return compose(segments, self.shifter, self.lm_embedding.dtype, self.lm_embedding.device)

    def run(self, prompt: list[Segment] | ComposedPrompt) -> tuple[MemoryCache, torch.Tensor, Feed]:
        """Run the decoder over a prompt, as segments or composed (differentiable unless the caller disables grad).

        Returns the filled cache, the final hidden states of the last text/[LM] feed
        (``[len(feed.items), hidden]``, before the LM head) and that feed.
        """
        composed = prompt if isinstance(prompt, ComposedPrompt) else self.compose(prompt)
        device = self.lm_embedding.device
        cache = MemoryCache()
        biased = any(isinstance(s, PlacedMemory) and s.bias is not None for s in composed.steps)
        if biased:
            layers, heads = next(s.keys.shape[:2] for s in composed.steps if isinstance(s, PlacedMemory))
            cache.memory_bias = [torch.zeros(heads, 0, device=device) for _ in range(layers)]
        hidden = None
        for step in composed.steps:
            if isinstance(step, PlacedMemory):
                if biased:
                    _add_biased(cache, step)
                else:
                    for layer in range(step.keys.shape[0]):
                        cache.update(step.keys[layer][None], step.values[layer][None], layer)
            else:
                hidden = self._hidden(self._embed_feed(step, device), step.positions, cache)
                if biased:
                    _extend_bias(cache, len(step.items))
        return cache, hidden, composed.steps[-1]

    def prefill(self, prompt: list[Segment] | ComposedPrompt) -> tuple[MemoryCache, torch.Tensor, int]:
        """Build the cache for a prompt; return it, the last position's logits, and the next position id."""
        cache, hidden, last_feed = self.run(prompt)
        return cache, self.lm_head(hidden[-1]).float(), last_feed.positions[-1] + 1

    @torch.inference_mode()
    def greedy(self, prompt: list[Segment] | ComposedPrompt, max_new_tokens: int, stop_ids: set[int]) -> Iterator[int]:
        """Yield greedy token ids; a stop id is yielded and ends the stream (as the official loop)."""
        if max_new_tokens < 1:
            return
        cache, logits, position = self.prefill(prompt)
        del prompt  # the cache holds what is needed: placed memories can go once the cache grows past them
        for step in range(max_new_tokens):
            token = int(torch.argmax(logits))
            yield token
            if token in stop_ids or step == max_new_tokens - 1:
                return
            embeds = self.embed(torch.tensor([token], device=self.lm_embedding.device))
            logits = self._forward(embeds, [position], cache)
            position += 1


def _add_biased(cache: MemoryCache, memory: PlacedMemory) -> None:
    """Put a memory into a cache whose entries carry a bias, layer by layer, leaving out the padding columns
    that no head of that layer uses (so a layer whose heads keep few entries gets a short cache)."""
    bias = memory_bias(memory)
    layers = []
    for layer in range(memory.keys.shape[0]):
        used = torch.isfinite(bias[layer]).any(dim=0)
        keys, values, layer_bias = memory.keys[layer], memory.values[layer], bias[layer]
        if not bool(used.all()):
            keys, values, layer_bias = keys[:, used], values[:, used], layer_bias[:, used]
        cache.update(keys[None], values[None], layer)
        layers.append(layer_bias)
    cache.memory_bias = [torch.cat(pair, dim=1) for pair in zip(cache.memory_bias, layers)]


def _extend_bias(cache: MemoryCache, tokens: int) -> None:
    """Text fed into a cache with biased memories: zero bias on its entries (they count when memories follow)."""
    cache.memory_bias = [torch.nn.functional.pad(b, (0, tokens)) for b in cache.memory_bias]
