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
    """The decoder's cache. ``memory_bias [layers, kv_heads, n]``: a logit bias on its first ``n`` entries
    (the memories placed before the text), or None when no memory carries one."""

    memory_bias: torch.Tensor | None = None


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
            if cache.memory_bias is None:
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
        cache.memory_bias = _prompt_bias(composed)
        hidden = None
        for step in composed.steps:
            if isinstance(step, PlacedMemory):
                for layer in range(step.keys.shape[0]):
                    cache.update(step.keys[layer][None], step.values[layer][None], layer)
            else:
                hidden = self._hidden(self._embed_feed(step, device), step.positions, cache)
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


def _prompt_bias(composed: ComposedPrompt) -> torch.Tensor | None:
    """The logit bias over every cache entry up to the prompt's last memory (zeros for unbiased memories and
    for text between them), or None when no memory carries a bias."""
    steps = composed.steps
    if not any(isinstance(s, PlacedMemory) and s.bias is not None for s in steps):
        return None
    last = max(i for i, s in enumerate(steps) if isinstance(s, PlacedMemory))
    shape = next(s.keys.shape[:2] for s in steps if isinstance(s, PlacedMemory))
    device = next(s.keys.device for s in steps if isinstance(s, PlacedMemory))
    pieces = [
        memory_bias(s) if isinstance(s, PlacedMemory) else torch.zeros(*shape, len(s.items), device=device)
        for s in steps[: last + 1]
    ]
    return torch.cat(pieces, dim=2)
