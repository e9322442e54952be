"""Lay memories and text out in one position space (SAC_SPEC sections 8 and 12).

A prompt is a list of segments: MemoryChunks, token-id lists and the learned [LM] embedding.
Position ids start at 1 (as in the official context, whose BOS is at position 1). A memory of
``length`` tokens placed at ``p`` covers ``p .. p + length - 1``; its keys are rotated there. [LM]
shares the position of the token before it (the official layout puts it at L, the last context
token's position); text continues after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sac_rag.memory.chunk import MemoryChunk
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


@dataclass
class PlacedMemory:
    keys: torch.Tensor  # [layers, kv, n, d], rotated to their place
    values: torch.Tensor
    bias: torch.Tensor | None = None  # [layers, kv, n] logit bias (float32), None: no bias


@dataclass
class Feed:
    """Tokens (ids) or [LM] markers to run through the decoder at the given position ids."""

    items: list  # int token ids or LM
    positions: list[int]


def place(chunk: MemoryChunk, position: int, shifter: RotaryShifter, dtype: torch.dtype, device) -> PlacedMemory:
    """The chunk's K/V with keys rotated so that its first token sits at ``position``."""
    keys = shifter.shift(chunk.keys.to(device), position - chunk.offset)
    bias = None if chunk.bias is None else chunk.bias.to(device=device, dtype=torch.float32)
    return PlacedMemory(keys.to(dtype), chunk.values.to(device=device, dtype=dtype), bias)


def layout(segments: list[Segment]) -> list[tuple[Segment, int]]:
    """Each segment with the position id of its first element; consecutive text/[LM] merged into Feeds."""
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
            items, positions = [seg.token_id], [FIRST_POSITION]
        elif isinstance(seg, LMMarker):
            items, positions = [LM], [max(p - 1, FIRST_POSITION)]
        else:
            items = [int(t) for t in seg]
            positions = list(range(p, p + len(items)))
            p += len(items)
        if not items:
            continue
        if steps and isinstance(steps[-1][0], Feed):
            steps[-1][0].items.extend(items)
            steps[-1][0].positions.extend(positions)
        else:
            steps.append((Feed(items, positions), positions[0]))
    return steps


@dataclass
class ComposedPrompt:
    """A prompt as the decoder reads it: text/[LM] feeds and memories placed in one position space, each run
    of consecutive memories rotated into place and concatenated. ``length``: the positions it covers;
    ``memories``: how many memories it holds."""

    steps: list[PlacedMemory | Feed]
    length: int
    memories: int


def compose(segments: list[Segment], shifter: RotaryShifter, dtype: torch.dtype, device) -> ComposedPrompt:
    """Lay ``segments`` out (:func:`layout`) and place every memory (:func:`place`)."""
    steps = layout(segments)
    if not steps:
        raise ValueError("the prompt is empty: give text or memories to decode from")
    if isinstance(steps[-1][0], MemoryChunk):
        raise ValueError("a prompt must end with text or [LM] after its last memory")
    out: list[PlacedMemory | Feed] = []
    pending: list[PlacedMemory] = []
    for seg, position in steps:
        if isinstance(seg, MemoryChunk):
            pending.append(place(seg, position, shifter, dtype, device))
            continue
        if pending:
            out.append(_concat(pending))
            pending = []
        out.append(seg)
    memories = sum(isinstance(s, MemoryChunk) for s in segments)
    return ComposedPrompt(out, composed_length(segments), memories)


def _concat(memories: list[PlacedMemory]) -> PlacedMemory:
    """Consecutive placed memories as one (one ``cat`` per run, not one per memory)."""
    if len(memories) == 1:
        return memories[0]
    bias = None
    if any(m.bias is not None for m in memories):
        bias = torch.cat([memory_bias(m) for m in memories], dim=2)
    return PlacedMemory(
        torch.cat([m.keys for m in memories], dim=2), torch.cat([m.values for m in memories], dim=2), bias
    )


def memory_bias(memory: PlacedMemory) -> torch.Tensor:
    """``memory``'s logit bias ``[layers, kv, n]`` (zeros for a memory without one)."""
    if memory.bias is not None:
        return memory.bias
    return torch.zeros(memory.keys.shape[:3], dtype=torch.float32, device=memory.keys.device)


def composed_length(segments: list[Segment]) -> int:
    """Tokens the prompt represents (memories count their original length, [LM] and the sink nothing)."""
    return sum(
        s.length if isinstance(s, MemoryChunk) else 0 if isinstance(s, (LMMarker, Sink)) else len(s) for s in segments
    )
