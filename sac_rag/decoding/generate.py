"""Greedy decoding from a prompt of memories, text and [LM] (docs/sac.md section 8)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from sac_rag.decoding.attention import MemoryBias, biased_attention
from sac_rag.decoding.phases import Phases, timed
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.compose import FIRST_POSITION, ComposedPrompt, Feed, PlacedMemory, Segment, compose
from sac_rag.memory.rope import RotaryShifter


class MemoryLayer(DynamicLayer):
    """A cache layer that takes memories as pieces (views of their placed K/V) and joins them with the next states
    it is given in one concatenation: each layer's past is built once, together with the question's own K/V."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Hold ``keys``, ``values`` ``[1, kv_heads, n, head_dim]`` after the entries already cached."""
        self.pending.append((keys, values))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.pending:
            return super().update(key_states, value_states, *args, **kwargs)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = [(self.keys, self.values)] if self.keys.numel() else []
        parts = [*held, *self.pending, (key_states, value_states)]
        self.pending = []
        self.keys = torch.cat([k for k, _ in parts], dim=-2)
        self.values = torch.cat([v for _, v in parts], dim=-2)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return super().get_seq_length() + sum(k.shape[-2] for k, _ in self.pending)


class MemoryCache(DynamicCache):
    """The decoder's cache. Memories enter as per-layer pieces (:meth:`add_memory`) that the next forward joins
    with its own K/V (:class:`MemoryLayer`). With ``biased`` (the prompt holds memories with a logit bias), it also
    keeps per layer the bias of that layer's first entries: memories and any text between them, zero where they
    carry none; layers may then hold different numbers of entries. ``phases``: where a timed run records the
    cache's own work (joining pieces)."""

    def __init__(self, *, biased: bool = False) -> None:
        Cache.__init__(self, layer_class_to_replicate=MemoryLayer)  # as DynamicCache, with layers that join pieces
        self._bias: list[list[torch.Tensor]] | None = [] if biased else None
        self._covered: list[int] = []
        self._rows: list[torch.Tensor] | None = None
        self.phases: Phases | None = None

    def add_memory(self, memory: PlacedMemory) -> None:
        """Put a placed memory after the entries already cached (no copy until the next forward)."""
        while len(self.layers) < len(memory.keys):
            self.layers.append(MemoryLayer())
        if self._bias is not None:
            self._add_bias(memory)
        for layer, (keys, values) in enumerate(zip(memory.keys, memory.values)):
            self.layers[layer].add(keys, values)
        self._rows = None

    def _add_bias(self, memory: PlacedMemory) -> None:
        while len(self._bias) < len(memory.keys):
            self._bias.append([])
            self._covered.append(0)
        first = memory.keys[0]
        heads, device = first.shape[1], first.device
        text = self.layers[0].get_seq_length() - self._covered[0]  # fed since the last memory: the same in every layer
        gap = torch.zeros(heads, text, device=device) if text else None
        zeros: dict[int, torch.Tensor] = {}  # a memory without bias: zeros, one tensor per width
        for layer, keys in enumerate(memory.keys):
            entries = keys.shape[2]
            pieces = self._bias[layer]
            if gap is not None:
                pieces.append(gap)
            if memory.bias is not None:
                pieces.append(memory.bias[layer])
            else:
                if entries not in zeros:
                    zeros[entries] = torch.zeros(heads, entries, device=device)
                pieces.append(zeros[entries])
            self._covered[layer] += text + entries

    def bias_rows(self, dtype: torch.dtype) -> list[torch.Tensor] | None:
        """Per layer, the bias ``[kv_heads, n_layer]`` of its first ``n_layer`` entries in ``dtype``, made once per
        prompt (None: no memory with a bias is cached)."""
        if not self._covered or not self._covered[0]:
            return None
        if self._rows is None or self._rows[0].dtype != dtype:
            self._rows = [torch.cat(pieces, dim=1).to(dtype) for pieces in self._bias]
        return self._rows

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        with timed(self.phases, "cache"):
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)


class SinkCache:
    """The attention sink's K/V, computed once per decoder state and placed like a memory in every prompt.

    ``state()`` says what the weights are (it changes whenever a weight does), or None when they may change
    under the caller (a parameter that requires grad, with grad on): the sink is then computed afresh,
    differentiably. Entries are kept per key (the sink token, the decoder variant, dtype, device, threads)."""

    def __init__(self, state: Callable[[], Hashable | None]) -> None:
        self.state = state
        self._entries: dict[Hashable, tuple[Hashable, MemoryChunk]] = {}

    def get(self, key: Hashable, compute: Callable[[], MemoryChunk]) -> MemoryChunk:
        state = self.state()
        if state is None:
            return compute()
        entry = self._entries.get(key)
        if entry is None or entry[0] != state:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in and out of inference mode
                entry = self._entries[key] = (state, compute())
        return entry[1]


class MemoryDecoder:
    """Runs the base decoder (adapter off) over composed memories and generates greedily.

    ``lm_embedding``: the [LM] embedding, or a callable that returns it. ``decoder_mode`` returns a context
    manager inside which ``transformer`` runs with the compressor's adapter disabled; it is entered per
    forward call, so a paused stream never leaves the shared weights in decoder mode. ``sinks``: where the
    attention sink's K/V is kept between prompts (None: computed for each prompt); ``variant``: what else
    it depends on for this decoder; ``shared_header``: composed memories hold one context header (see
    :func:`~sac_rag.memory.compose.compose`).
    """

    def __init__(
        self,
        transformer: nn.Module,
        lm_head: nn.Module,
        embed: nn.Module,
        lm_embedding: torch.Tensor | Callable[[], torch.Tensor],
        shifter: RotaryShifter,
        decoder_mode: Callable[[], AbstractContextManager],
        sinks: SinkCache | None = None,
        variant: Hashable = None,
        shared_header: bool = False,
    ) -> None:
        self.transformer = transformer
        self.lm_head = lm_head
        self.embed = embed
        self._lm_embedding = lm_embedding
        self.shifter = shifter
        self.decoder_mode = decoder_mode
        self.sinks = sinks
        self.variant = variant
        self.shared_header = shared_header

    @property
    def lm_embedding(self) -> torch.Tensor:
        """The [LM] embedding, read at each use when given as a callable (a view of a trainable parameter taken
        once could outlive a device move, or be taken under inference mode and refuse a gradient later)."""
        return self._lm_embedding() if callable(self._lm_embedding) else self._lm_embedding

    def _embed_feed(self, feed: Feed, device) -> torch.Tensor:
        ids = torch.tensor([t if isinstance(t, int) else 0 for t in feed.items], device=device)
        embeds = self.embed(ids)
        is_lm = torch.tensor([not isinstance(t, int) for t in feed.items], device=device)
        if is_lm.any():
            embeds = torch.where(is_lm[:, None], self.lm_embedding.to(embeds.dtype), embeds)
        return embeds

    def _hidden(
        self, embeds: torch.Tensor, positions: list[int], cache: MemoryCache, phases: Phases | None = None
    ) -> torch.Tensor:
        pos = torch.tensor([positions], device=embeds.device)
        rows = cache.bias_rows(embeds.dtype)  # None: no biased memory before this text, the model's own attention
        extra = {} if rows is None else {"memory_bias": MemoryBias(rows)}
        if phases is not None:
            extra["phases"] = phases
        with self.decoder_mode(), biased_attention(self.transformer.config) if extra else nullcontext():
            out = self.transformer(inputs_embeds=embeds[None], position_ids=pos, cache=cache, use_cache=True, **extra)
        return out.last_hidden_state[0]

    def _forward(self, embeds: torch.Tensor, positions: list[int], cache: MemoryCache) -> torch.Tensor:
        return self.lm_head(self._hidden(embeds, positions, cache)[-1]).float()

    def sink_memory(self, token_id: int) -> MemoryChunk:
        """The attention sink as a one-entry memory: the decoder's K/V of ``token_id`` alone at the first position,
        the same for every prompt (kept in :attr:`sinks` while the weights stay the same)."""
        if self.sinks is None:
            return self._run_sink(token_id)
        key = (token_id, self.variant, self.lm_embedding.dtype, self.lm_embedding.device, torch.get_num_threads())
        return self.sinks.get(key, lambda: self._run_sink(token_id))

    def _run_sink(self, token_id: int) -> MemoryChunk:
        feed = Feed([token_id], [FIRST_POSITION])
        cache = MemoryCache()
        self._hidden(self._embed_feed(feed, self.lm_embedding.device), feed.positions, cache)
        keys = torch.stack([layer.keys[0] for layer in cache.layers])
        values = torch.stack([layer.values[0] for layer in cache.layers])
        positions = torch.zeros(1, dtype=torch.long, device=keys.device)
        return MemoryChunk(keys, values, positions, 1, FIRST_POSITION, meta={"kind": "sink"})

    def compose(self, segments: list[Segment], *, phases: Phases | None = None) -> ComposedPrompt:
        """``segments`` laid out in one position space, memories' keys rotated into place and the attention sink
        placed like a memory (see :func:`~sac_rag.memory.compose.compose`), in this decoder's dtype and device."""

        def sink(token_id: int) -> MemoryChunk:
            with timed(phases, "sink"):
                return self.sink_memory(token_id)

        return compose(
            segments, self.shifter, self.lm_embedding.dtype, self.lm_embedding.device, sink, self.shared_header
        )

    def run(
        self, prompt: list[Segment] | ComposedPrompt, *, phases: Phases | None = None
    ) -> tuple[MemoryCache, torch.Tensor, Feed]:
        """Run the decoder over a prompt, as segments or composed (differentiable unless the caller disables grad).

        Returns the filled cache, the final hidden states of the last text/[LM] feed
        (``[len(feed.items), hidden]``, before the LM head) and that feed. ``phases``: where the time goes
        (compose, sink, cache, attention, forward: the rest of the decoder's forward passes).
        """
        with timed(phases, "compose"):
            composed = prompt if isinstance(prompt, ComposedPrompt) else self.compose(prompt, phases=phases)
        device = self.lm_embedding.device
        cache = MemoryCache(biased=any(isinstance(s, PlacedMemory) and s.bias is not None for s in composed.steps))
        cache.phases = phases
        hidden = None
        for step in composed.steps:
            if isinstance(step, PlacedMemory):
                with timed(phases, "cache"):
                    cache.add_memory(step)
            else:
                with timed(phases, "forward"):
                    hidden = self._hidden(self._embed_feed(step, device), step.positions, cache, phases)
        cache.phases = None
        return cache, hidden, composed.steps[-1]

    def prefill(
        self, prompt: list[Segment] | ComposedPrompt, *, phases: Phases | None = None
    ) -> tuple[MemoryCache, torch.Tensor, int]:
        """Build the cache for a prompt; return it, the last position's logits, and the next position id."""
        cache, hidden, last_feed = self.run(prompt, phases=phases)
        with timed(phases, "head"):
            logits = self.lm_head(hidden[-1]).float()
        return cache, logits, last_feed.positions[-1] + 1

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
