"""Lay memories and text out in one position space (docs/sac.md sections 8 and 12).

A prompt is a list of segments: MemoryChunks, token-id lists, the learned [LM] embedding and the attention
sink. Position ids start at 1 (as in the official context, whose BOS is at position 1). A memory of
``length`` tokens placed at ``p`` covers ``p .. p + length - 1``; its keys are rotated there. [LM]
shares the position of the token before it (the official layout puts it at L, the last context
token's position); text continues after.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sac_rag.compression.lora import weights_version
from sac_rag.memory.chunk import HEADER, MemoryChunk
from sac_rag.memory.rope import RotaryShifter

FIRST_POSITION = 1


class LMMarker:
    """Stands for the learned [LM] embedding in a segment list."""

    def __repr__(self) -> str:
        return "[LM]"


LM = LMMarker()


@dataclass(frozen=True)
class Sink:
    """The attention sink: ``token_id`` (the BOS token) run through the decoder at :data:`FIRST_POSITION`.

    It gives the decoder the K/V of the sequence start that the anchor layout never keeps, computed by
    the decoder itself, without shifting the memories that follow (they still start at the first position).
    """

    token_id: int


Segment = MemoryChunk | list | LMMarker | Sink

#: The decoder's K/V of a sink token alone at :data:`FIRST_POSITION`, as a one-entry memory.
SinkMemory = Callable[[int], MemoryChunk]


@dataclass
class Feed:
    """Tokens (ids) or [LM] markers to run through the decoder at the given position ids."""

    items: list  # int token ids or LM
    positions: list[int]


class SinkFeed(Feed):
    """The attention sink as :func:`layout` gives it: its token at :data:`FIRST_POSITION`, fed on its own.
    :func:`compose` places the decoder's K/V of it like a memory instead, when it is given them."""


@dataclass
class PlacedMemory:
    """One memory (or the attention sink) placed in the position space, as the decoder's cache takes it.

    Per layer: ``keys`` and ``values`` ``[1, kv_heads, n_layer, head_dim]`` (keys rotated into place; in the
    decoder's dtype and device; views of one tensor, which the cache joins with the next text's K/V in one
    concatenation per layer) and, for a memory with a logit bias, ``bias`` ``[kv_heads, n_layer]`` (float32;
    None: no bias). A biased memory leaves out, per layer, the padding columns that no head of that layer
    uses, so its layers may hold different numbers of entries.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    bias: tuple[torch.Tensor, ...] | None = None


def place(
    chunk: MemoryChunk, position: int, shifter: RotaryShifter, dtype: torch.dtype, device, skip: int = 0
) -> PlacedMemory:
    """The chunk's K/V with keys rotated so that its first token sits at ``position``; with ``skip``, without the
    entries of the passage's first ``skip`` tokens (positions below ``skip``)."""
    delta = position - chunk.offset
    if chunk.bias is not None:
        return _place_biased(chunk, delta, shifter, dtype, device, skip)
    keys = shifter.shift(chunk.keys.to(device), delta).to(dtype)
    values = chunk.values.to(device=device, dtype=dtype)
    if skip:
        kept = (chunk.positions >= skip).nonzero().squeeze(1)
        first = int(kept[0]) if len(kept) else chunk.n_anchors
        if len(kept) == chunk.n_anchors - first:  # a suffix of the entries (full K/V: every token, in order)
            keys, values = keys.narrow(2, first, len(kept)), values.narrow(2, first, len(kept))
        else:
            kept = kept.to(device)
            keys, values = keys.index_select(2, kept), values.index_select(2, kept)
    return PlacedMemory(keys.unsqueeze(1).unbind(0), values.unsqueeze(1).unbind(0))


def _place_biased(
    chunk: MemoryChunk, delta: int, shifter: RotaryShifter, dtype: torch.dtype, device, skip: int
) -> PlacedMemory:
    """A biased chunk's entries, per layer only the columns that some head of the layer uses (its layout, made once
    per chunk, device and dtype): only the keys are rotated per placement; values and bias are views of the layout
    (with ``skip``, the bias of the entries of the first ``skip`` tokens is ``-inf``)."""
    lay = _layout(chunk, dtype, device)
    if callable(lay.keys):
        _, heads, _, dim = lay.values[0].shape
        keys = lay.keys(shifter, delta)
        if keys.shape != (heads * sum(lay.widths), dim):
            raise ValueError(f"a layout of {heads} x {sum(lay.widths)} entries got keys shaped {tuple(keys.shape)}")
        keys = keys.view(1, heads, -1, dim)
    else:
        keys = shifter.shift_fused(lay.keys, delta)
    bias = _masked_first_tokens(chunk, lay.bias, skip, device) if skip else lay.bias
    return PlacedMemory(keys.to(dtype).split(lay.widths, dim=2), lay.values, bias)


def _masked_first_tokens(
    chunk: MemoryChunk, bias: tuple[torch.Tensor, ...], skip: int, device
) -> tuple[torch.Tensor, ...]:
    """A layout's per-layer ``bias`` ``[heads, width]`` with ``-inf`` on the entries of the chunk's first ``skip``
    tokens. A layout holds, in each layer, the columns some head of the layer uses (:func:`_make_layout`)."""
    used = torch.isfinite(chunk.bias).any(dim=1).to(device)  # [layers, n]
    positions = chunk.positions.to(device).expand(chunk.bias.shape).transpose(0, 1)  # [heads, layers, n]
    per_layer = [p[:, u] for p, u in zip(positions.unbind(1), used.unbind(0))]
    return tuple(b.masked_fill(p < skip, -math.inf) for b, p in zip(bias, per_layer))


#: Makes a layout's keys rotated by ``delta`` positions, ``[rows, head_dim]`` in the layout's order, from entries kept
#: otherwise (a store's int8 entries, :func:`sac_rag.store.codec.unpack_chunk`): the layout then never holds them
#: unrotated. ``(shifter, delta) -> keys``; a new tensor every call.
KeyMaker = Callable[[RotaryShifter, int], torch.Tensor]


@dataclass(frozen=True)
class _Layout:
    """A biased chunk gathered for placing: per layer only the columns that some head of the layer uses, in
    (head, layer, column) order, so that each layer's entries are one view ``[1, heads, width, head_dim]`` of the
    whole (split off in one call). ``keys`` ``[1, heads, columns, head_dim]`` unrotated, in the chunk's dtype, or what
    makes them rotated (:data:`KeyMaker`); ``values`` and ``bias`` per layer, as :class:`PlacedMemory` holds them;
    ``widths``: each layer's columns. ``source``: what it was made from (:func:`_source`; a stale layout is made
    again)."""

    source: tuple
    keys: torch.Tensor | KeyMaker
    values: tuple[torch.Tensor, ...]
    bias: tuple[torch.Tensor, ...]
    widths: tuple[int, ...]


# id(chunk) -> {(dtype, device): layout}, dropped with the chunk
_LAYOUTS: dict[int, dict[tuple, _Layout]] = {}


def _source(chunk: MemoryChunk) -> tuple:
    """What the chunk's layout is made from: its tensors and their versions, or, while its keys and values are still
    to be made (:attr:`~sac_rag.memory.chunk.MemoryChunk.pending`), what will make them (the maker that laid it out
    from the same entries, :func:`attach_layout`)."""
    # inference tensors keep no version counter; they cannot be changed in place outside inference mode
    pending = chunk.pending
    tensors = (chunk.bias,) if pending is not None else (chunk.keys, chunk.values, chunk.bias)
    held = tuple((t, None if t.is_inference() else weights_version([t])[0]) for t in tensors)
    return held if pending is None else ((pending, None), *held)


def _same_source(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y and u == v for (x, u), (y, v) in zip(a, b))


def _layout(chunk: MemoryChunk, dtype: torch.dtype, device) -> _Layout:
    """The chunk's layout, kept per chunk (and dtype, device) while its tensors stay the same; made afresh and not
    kept when a gradient must reach the chunk's tensors."""
    source = _source(chunk)
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t, _ in source):
        return _make_layout(chunk, dtype, device, source)
    key = (dtype, device)
    held = _LAYOUTS.get(id(chunk))
    lay = None if held is None else held.get(key)
    if lay is None or not _same_source(lay.source, source):
        with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in and out of inference mode
            lay = _make_layout(chunk, dtype, device, source)
        _keep(chunk, key, lay)
    return lay


def _keep(chunk: MemoryChunk, key: tuple, lay: _Layout) -> None:
    held = _LAYOUTS.get(id(chunk))
    if held is None:
        held = _LAYOUTS[id(chunk)] = {}
        weakref.finalize(chunk, _LAYOUTS.pop, id(chunk), None)
    held[key] = lay


def _make_layout(chunk: MemoryChunk, dtype: torch.dtype, device, source: tuple) -> _Layout:
    bias = chunk.bias.to(device)
    used = torch.isfinite(bias).any(dim=1)  # [layers, n]
    layers, heads, n, _ = chunk.shape
    h, layer, column = used[None].expand(heads, layers, n).nonzero().unbind(1)  # in (head, layer, column) order
    rows = (layer * heads + h) * n + column  # of the chunk's [layers * heads * n] entries
    keys = chunk.keys.to(device).flatten(0, 2).index_select(0, rows)
    values = chunk.values.to(device).flatten(0, 2).index_select(0, rows).to(dtype)
    bias = bias.reshape(-1).index_select(0, rows).to(torch.float32)
    return _laid_out(source, heads, used.sum(-1).tolist(), keys, values, bias)


def _laid_out(
    source: tuple,
    heads: int,
    widths: Sequence[int],
    keys: torch.Tensor | KeyMaker,
    values: torch.Tensor,
    bias: torch.Tensor,
) -> _Layout:
    """The layout of K/V ``[rows, head_dim]`` (or a :data:`KeyMaker` of the keys) and bias ``[rows]`` gathered in
    (head, layer, column) order, each layer using ``widths[layer]`` columns of each of ``heads`` heads."""
    widths = tuple(int(w) for w in widths)
    kv = (values,) if callable(keys) else (keys, values)
    if any(t.shape != (heads * sum(widths), values.shape[-1]) for t in kv) or bias.shape != (heads * sum(widths),):
        raise ValueError(f"K/V {[tuple(t.shape) for t in kv]} and bias {tuple(bias.shape)} do not lay out {widths}")
    if not callable(keys):
        keys = keys.view(1, heads, -1, keys.shape[-1])
    values = values.view(1, heads, -1, values.shape[-1])
    return _Layout(source, keys, values.split(widths, dim=2), bias.view(heads, -1).split(widths, dim=1), widths)


def layout_rows(padded: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Of ``padded [layers, heads, n]`` (laid out per column as a chunk's entries, e.g. their row numbers), what the
    layout of a chunk whose layers use their first ``widths[layer]`` columns keeps (its heads' entries first, as a
    store's chunk holds them), in the layout's order."""
    used = torch.arange(padded.shape[2], device=padded.device)[None, :] < widths.to(padded.device)[:, None]
    return padded.transpose(0, 1).masked_select(used)


def attach_layout(
    chunk: MemoryChunk,
    widths: Sequence[int],
    keys: torch.Tensor | KeyMaker,
    values: torch.Tensor,
    bias: torch.Tensor,
) -> None:
    """Lay a biased chunk out for placing now, from what its maker has, instead of on its first placement.

    ``widths[layer]``: the columns some head of that layer uses, each head's entries first (as the store's codec
    lays them out from their counts): the first ``widths[layer]`` columns, the rest padding. ``keys``, ``values``
    ``[rows, head_dim]`` and ``bias`` ``[rows]`` (float32): what :func:`layout_rows` keeps of the chunk's (the keys
    unrotated: they are rotated per placement; or a :data:`KeyMaker` that makes them rotated, in ``values``' dtype and
    device, at each placement). The layout serves a decoder of the K/V's dtype and device (another
    makes its own from the chunk). It is kept like a gathered layout: while the chunk lives and its tensors stay the
    same, or, while its keys and values are still to be made (:attr:`MemoryChunk.pending`), while the same maker is
    to make them."""
    layers, heads, n, _ = chunk.shape
    if chunk.bias is None or bias.dtype != torch.float32:
        raise ValueError("only a chunk with a float32 bias is laid out")
    if len(widths) != layers or not all(0 <= w <= n for w in widths):
        raise ValueError(f"widths {list(widths)} do not fit a chunk shaped {list(chunk.shape)}")
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in and out of inference mode
        lay = _laid_out(_source(chunk), heads, widths, keys, values, bias)
    _keep(chunk, (values.dtype, values.device), lay)


def layout(segments: list[Segment]) -> list[tuple[Segment, int]]:
    """Each segment with the position id of its first element; consecutive text/[LM] merged into Feeds
    (the sink is a :class:`SinkFeed` of its own)."""
    steps: list = []
    p = FIRST_POSITION
    for seg in segments:
        if isinstance(seg, MemoryChunk):
            steps.append((seg, p))
            p += seg.length
            continue
        if isinstance(seg, Sink):
            if steps:
                raise ValueError("an attention sink must open the prompt")
            steps.append((SinkFeed([seg.token_id], [FIRST_POSITION]), FIRST_POSITION))
            continue
        if isinstance(seg, LMMarker):
            items, positions = [LM], [max(p - 1, FIRST_POSITION)]
        else:
            items = [int(t) for t in seg]
            positions = list(range(p, p + len(items)))
            p += len(items)
        if not items:
            continue
        if steps and type(steps[-1][0]) is Feed:
            steps[-1][0].items.extend(items)
            steps[-1][0].positions.extend(positions)
        else:
            steps.append((Feed(items, positions), positions[0]))
    return steps


@dataclass
class ComposedPrompt:
    """A prompt as the decoder reads it: text/[LM] feeds and memories (the sink among them) placed in one position
    space. ``length``: the positions it covers; ``memories``: how many memories it holds."""

    steps: list[PlacedMemory | Feed]
    length: int
    memories: int


def compose(
    segments: list[Segment],
    shifter: RotaryShifter,
    dtype: torch.dtype,
    device,
    sink: SinkMemory | None = None,
    shared_header: bool = False,
) -> ComposedPrompt:
    """Lay ``segments`` out (:func:`layout`) and place every memory (:func:`place`); with ``sink``, the attention
    sink too (its K/V from ``sink``, at the first position), else it stays a feed for the decoder to run.

    ``shared_header``: every memory after the prompt's first leaves out the entries of its context header (BOS and
    the context prefix, ``meta["header"]`` tokens), so the memories hold one header, as passages joined as text do
    (per-passage memories each open with one). It brings composed memories closer to the raw text but did not raise
    the F1 of answers over several passages (docs/compaction.md, "Several memories: one context header"), so it is
    off unless asked for."""
    steps = layout(segments)
    if not steps:
        raise ValueError("the prompt is empty: give text or memories to decode from")
    if isinstance(steps[-1][0], MemoryChunk):
        raise ValueError("a prompt must end with text or [LM] after its last memory")
    out: list[PlacedMemory | Feed] = []
    placed = 0
    for seg, position in steps:
        if isinstance(seg, MemoryChunk):
            skip = seg.meta.get(HEADER, 0) if shared_header and placed else 0
            out.append(place(seg, position, shifter, dtype, device, skip))
            placed += 1
        elif isinstance(seg, SinkFeed) and sink is not None:
            out.append(place(sink(seg.items[0]), FIRST_POSITION, shifter, dtype, device))
        else:
            out.append(seg)
    memories = sum(isinstance(s, MemoryChunk) for s in segments)
    return ComposedPrompt(out, composed_length(segments), memories)


def composed_length(segments: list[Segment]) -> int:
    """Tokens the prompt represents (memories count their original length, [LM] and the sink nothing)."""
    return sum(
        s.length if isinstance(s, MemoryChunk) else 0 if isinstance(s, (LMMarker, Sink)) else len(s) for s in segments
    )
