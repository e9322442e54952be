"""Compaction memories: a passage's own K/V, cut per head to a byte budget and refitted.

The decoder reads the passage once (its full K/V), scores every entry by a repeat pass
(:mod:`~sac_rag.compaction.score`), keeps the best entries over all heads under one threshold
(:mod:`~sac_rag.compaction.select`) and refits their bias and values so that the kept entries answer
like the whole passage (:mod:`~sac_rag.compaction.refit`). Nothing is trained and the question is never
seen: the memory is built once, stored, and composed with any others.

An int8 memory (``dtype=torch.int8``) spends the same bytes on twice as many entries, quantised as the
store's int8 codec does (:mod:`sac_rag.memory.quant`): its keys are quantised before the refit, so the
bias and values are fitted to the keys the decoder will read, and its values after it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace

import torch
from torch import nn
from tqdm.auto import tqdm

from sac_rag.compaction.refit import refit
from sac_rag.compaction.score import PassageAnalysis, analyse_passage
from sac_rag.compaction.select import entry_budget, gather_kept, select_entries
from sac_rag.config import COMPACT_DTYPE_NAMES
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.quant import int8_round_trip

KIND = "compact"
REFIT_BATCH_BYTES = 256 << 20  # float64 work per refit batch of heads
#: Passages longer than this (tokens, BOS and prefix included) make :meth:`Compactor.make` warn on a CPU
#: (:class:`SlowCompactionWarning`): the refit's work grows with the square of the length.
LONG_PASSAGE_TOKENS = 768


class SlowCompactionWarning(UserWarning):
    """A compact memory of a long passage is being built on a CPU, where its cost grows faster than its length
    (docs/benchmarks.md, "Compact memories of long passages"). Filter it with :mod:`warnings` once that is known."""


COMPACT_DTYPES = {name: getattr(torch, name) for name in COMPACT_DTYPE_NAMES}


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in COMPACT_DTYPES.values():
        raise ValueError(f"compact memories are {' or '.join(COMPACT_DTYPE_NAMES)}, got {dtype}")


def compact_analysis(
    analysis: PassageAnalysis, keep: float, *, refit_values: bool = True, dtype: torch.dtype = torch.bfloat16
) -> MemoryChunk:
    """The compact memory of an analysed passage: the best entries for ``keep`` of the full K/V's bytes, their
    K/V stored as ``dtype`` (bfloat16 or int8), with their bias and values refitted (``refit_values``) or as they
    are (selection alone, bias 0)."""
    layers, heads, length, dim = analysis.keys.shape
    kept = select_entries(analysis.scores, entry_budget((layers, heads, dim), length, keep, dtype))
    memory = compact_entries(analysis, kept, refit_values=refit_values, dtype=dtype)
    memory.meta["keep"] = keep
    return memory


def compact_entries(
    analysis: PassageAnalysis,
    kept: torch.Tensor,
    *,
    refit_values: bool = True,
    dtype: torch.dtype = torch.bfloat16,
) -> MemoryChunk:
    """The memory holding the ``kept [layers, kv_heads, T]`` entries of an analysed passage, refitted or not;
    with ``dtype=torch.int8`` its K/V are the int8 codec's (keys quantised before the refit, values after)."""
    _check_dtype(dtype)
    quantised = dtype == torch.int8
    mask, index, (keys, values) = gather_kept(kept, analysis.keys, analysis.values)
    if quantised:
        keys = int8_round_trip(keys).to(keys.dtype)
    if refit_values:
        bias, values = _refit_heads(analysis, keys, values, mask)
    else:
        bias = torch.zeros(mask.shape).masked_fill(~mask, -math.inf)
    if quantised:
        values = int8_round_trip(values).to(values.dtype)
    meta = {"kind": KIND, "refit": refit_values, **({"dtype": "int8"} if quantised else {})}
    return MemoryChunk(keys, values, index, analysis.length, analysis.offset, "", meta, bias.to(torch.float32))


def refit_anchors(memory: MemoryChunk, analysis: PassageAnalysis) -> MemoryChunk:
    """A SAC memory whose anchors' bias and values are refitted to stand for the whole passage but its first
    token (BOS, which the attention sink supplies): the refit applied to a trained compressor's anchors."""
    if memory.length != analysis.length:
        raise ValueError(f"the memory covers {memory.length} tokens, the analysis {analysis.length}")
    layers, heads, n, _ = memory.keys.shape
    mask = torch.ones(layers, heads, n, dtype=torch.bool)
    without_bos = torch.ones(layers, heads, analysis.length, dtype=torch.bool)
    without_bos[..., 0] = False
    keys = memory.keys.float().cpu()
    bias, values = _refit_heads(analysis, keys, memory.values.float().cpu(), mask, without_bos)
    meta = {**memory.meta, "refit": True}
    return replace(memory, values=values.to(memory.values), meta=meta, bias=bias)


def _refit_heads(
    analysis: PassageAnalysis,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    full_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias and values of every head, refitted in batches of heads with similar entry counts (each batch
    padded to its own largest head, most heads keep few entries) whose work fits the byte budget."""
    layers, heads, length, dim = analysis.keys.shape
    queries, full_keys, full_values = (t.flatten(0, 1) for t in (analysis.queries, analysis.keys, analysis.values))
    kept_keys, kept_values, flat_mask = keys.flatten(0, 1), values.flatten(0, 1), mask.flatten(0, 1)
    flat_full = None if full_mask is None else full_mask.flatten(0, 1)
    counts = flat_mask.sum(-1)
    order = torch.argsort(counts)
    bias = torch.full(flat_mask.shape, -math.inf)
    new_values = kept_values.clone()
    per_entry = 8 * queries.shape[1]  # float64 bytes per (query, entry) of one head's work
    for batch in _batches(order, counts, lambda width: per_entry * (length + 2 * width)):
        width = int(counts[batch[-1]])
        fit = refit(
            queries[batch],
            full_keys[batch],
            full_values[batch],
            kept_keys[batch, :width],
            kept_values[batch, :width],
            flat_mask[batch, :width],
            full_mask=None if flat_full is None else flat_full[batch],
        )
        bias[batch, :width] = fit.bias
        new_values[batch, :width] = fit.values
    shape = (layers, heads, keys.shape[2])
    return bias.view(shape), new_values.view(*shape, dim)


def _batches(order: torch.Tensor, counts: torch.Tensor, cost: Callable[[int], int]) -> list[torch.Tensor]:
    """Consecutive runs of ``order`` (heads by ascending entry count): a run's widest head keeps at most
    twice (plus 8) the entries of its narrowest, so padding wastes little, and its work, each head costing
    ``cost(widest count of the run)``, stays within :data:`REFIT_BATCH_BYTES` (one head at least)."""
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        if end == len(order):
            batches.append(order[start:end])
            break
        widest = int(counts[order[end]])
        too_wide = widest > 2 * int(counts[order[start]]) + 8
        if too_wide or (end - start + 1) * cost(widest) > REFIT_BATCH_BYTES:
            batches.append(order[start:end])
            start = end
    return batches


class Compactor:
    """Builds compact memories with a decoder (``decoder_mode`` makes ``transformer`` the decoder).

    ``repeat_ids``: the repeat prompt's token ids; ``keep``: the fraction of the full K/V's bytes a memory
    may take; ``refit_values``: refit bias and values (else selection alone); ``dtype``: what the memory's K/V
    are budgeted and quantised as (bfloat16 or int8, see :data:`COMPACT_DTYPES`).
    """

    kind = KIND

    def __init__(
        self,
        transformer: nn.Module,
        decoder_mode: Callable[[], AbstractContextManager],
        repeat_ids: Sequence[int],
        *,
        keep: float,
        refit_values: bool = True,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep!r}")
        _check_dtype(dtype)
        self.transformer = transformer
        self.decoder_mode = decoder_mode
        self.repeat_ids = list(repeat_ids)
        self.keep = keep
        self.refit_values = refit_values
        self.dtype = dtype

    def analyse(self, ids: Sequence[int], offset: int = 1) -> PassageAnalysis:
        """The passage's full K/V, entry scores and reference queries (see :func:`analyse_passage`)."""
        return analyse_passage(self.transformer, ids, self.repeat_ids, offset=offset, decoder_mode=self.decoder_mode)

    def compact(self, ids: Sequence[int], offset: int = 1) -> MemoryChunk:
        """The compact memory of one token sequence (BOS first) whose first token sits at ``offset``."""
        return compact_analysis(self.analyse(ids, offset), self.keep, refit_values=self.refit_values, dtype=self.dtype)

    def make(
        self,
        sequences: Sequence[Sequence[int]],
        *,
        position_offset: int = 1,
        batch_size: int = 1,
        progress: bool = False,
    ) -> list[MemoryChunk]:
        """The compact memory of each sequence, one passage at a time (``batch_size`` is not used: a passage's
        analysis is batched over its own heads). Warns (:class:`SlowCompactionWarning`) when a sequence is longer than
        :data:`LONG_PASSAGE_TOKENS` and the decoder runs on a CPU."""
        longest = max((len(ids) for ids in sequences), default=0)
        if longest > LONG_PASSAGE_TOKENS and next(self.transformer.parameters()).device.type == "cpu":
            warnings.warn(
                f"compacting a passage of {longest} tokens on a CPU: a compact memory's build cost grows faster than "
                "its passage (SmolLM2-135M, one thread: about 7 s for 512 tokens, 20 s for 1,024, 88 s for 2,048); "
                "nodes of 256-512 tokens suit compact memories (docs/integrations.md, 'Node size')",
                SlowCompactionWarning,
                stacklevel=2,
            )
        bar = tqdm(sequences, desc="compacting passages", unit="passage", disable=not progress)
        return [self.compact(ids, position_offset) for ids in bar]
