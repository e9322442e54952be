"""Greedy decoding from a prompt of memories, text and [LM] (SAC_SPEC section 8)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import torch
from torch import nn
from transformers import DynamicCache

from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.compose import Feed, PlacedMemory, Segment, layout, place
from sac_rag.memory.rope import RotaryShifter


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

    def _hidden(self, embeds: torch.Tensor, positions: list[int], cache: DynamicCache) -> torch.Tensor:
        pos = torch.tensor([positions], device=embeds.device)
        with self.decoder_mode():
            out = self.transformer(inputs_embeds=embeds[None], position_ids=pos, cache=cache, use_cache=True)
            return out.last_hidden_state[0]

    def _forward(self, embeds: torch.Tensor, positions: list[int], cache: DynamicCache) -> torch.Tensor:
        return self.lm_head(self._hidden(embeds, positions, cache)[-1]).float()

    def run(self, segments: list[Segment]) -> tuple[DynamicCache, torch.Tensor, Feed]:
        """Run the decoder over a prompt (differentiable unless the caller disables grad).

        Returns the filled cache, the final hidden states of the last text/[LM] feed
        (``[len(feed.items), hidden]``, before the LM head) and that feed.
        """
        steps = layout(segments)
        if not steps:
            raise ValueError("the prompt is empty: give text or memories to decode from")
        if isinstance(steps[-1][0], MemoryChunk):
            raise ValueError("a prompt must end with text or [LM] after its last memory")
        device = self.lm_embedding.device
        dtype = self.lm_embedding.dtype
        cache = DynamicCache()
        hidden = None
        pending: list[PlacedMemory] = []  # consecutive memories go into the cache in one concatenation
        for seg, position in steps:
            if isinstance(seg, MemoryChunk):
                pending.append(place(seg, position, self.shifter, dtype, device))
                continue
            if pending:
                _extend(cache, pending)
                pending = []
            hidden = self._hidden(self._embed_feed(seg, device), seg.positions, cache)
        return cache, hidden, steps[-1][0]

    def prefill(self, segments: list[Segment]) -> tuple[DynamicCache, torch.Tensor, int]:
        """Build the cache for a prompt; return it, the last position's logits, and the next position id."""
        cache, hidden, last_feed = self.run(segments)
        return cache, self.lm_head(hidden[-1]).float(), last_feed.positions[-1] + 1

    @torch.inference_mode()
    def greedy(self, segments: list[Segment], max_new_tokens: int, stop_ids: set[int]) -> Iterator[int]:
        """Yield greedy token ids; a stop id is yielded and ends the stream (as the official loop)."""
        if max_new_tokens < 1:
            return
        cache, logits, position = self.prefill(segments)
        for step in range(max_new_tokens):
            token = int(torch.argmax(logits))
            yield token
            if token in stop_ids or step == max_new_tokens - 1:
                return
            embeds = self.embed(torch.tensor([token], device=self.lm_embedding.device))
            logits = self._forward(embeds, [position], cache)
            position += 1


def _extend(cache: DynamicCache, memories: list[PlacedMemory]) -> None:
    """Append placed memories to every layer of the cache (one ``cat`` per layer, not one per memory)."""
    keys = torch.cat([m.keys for m in memories], dim=2) if len(memories) > 1 else memories[0].keys
    values = torch.cat([m.values for m in memories], dim=2) if len(memories) > 1 else memories[0].values
    for layer in range(keys.shape[0]):
        cache.update(keys[layer][None], values[layer][None], layer)
