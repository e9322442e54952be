"""The compared methods: each turns a QA example into a decoder and a prompt (segment list).

All methods decode with the same decoder (the base model, or the base with the SAC model's reader
adapter) except ``full_ft`` (a separate LoRA adapter fine-tuned on raw-context QA, decoded with it on).
Token budgets of the ``truncate`` and ``drop`` baselines are the number of K/V entries SAC keeps for the
same passage at the same ratio.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel

from sac_rag.compaction.compactor import COMPACT_DTYPES, compact_analysis, refit_anchors
from sac_rag.compaction.score import PassageAnalysis
from sac_rag.decoding.generate import MemoryDecoder
from sac_rag.memory.chunk import HEADER, MemoryChunk
from sac_rag.memory.compose import Segment
from sac_rag.memory.rope import RotaryShifter
from sac_rag.model import SACModel
from sac_rag.qa.datasets import QAExample
from sac_rag.text.anchors import anchor_indices
from sac_rag.text.prompt import bos_ids, context_ids, encode, header_length, question_ids

PASSAGE_SEPARATOR = "\n\n"  # between the passages of a multi-passage text prompt, as the RAG pipeline joins them

BASE_METHODS = ("raw", "no_context", "truncate", "drop", "full_kv")
COMPACT_METHODS = ("compact", "select", "compact_bf16", "select_bf16", "sac_refit")
ALL_METHODS = (*BASE_METHODS, *COMPACT_METHODS, "sac", "full_ft")
TEXT_METHODS = ("raw", "no_context", "truncate", "drop")
# a text method named with this suffix is decoded by the plain base even when the SAC model has a reader
PLAIN_DECODER = "@base"
# a memory method named with this suffix composes a question's memories with one context header (the first memory's;
# the others leave theirs out) instead of each keeping its own
SHARED_HEADER = "@shared_header"
HEADED_METHODS = ("full_kv", "compact", "select", "compact_bf16", "select_bf16")  # memories with a context header


@dataclass
class Prompt:
    """What a method hands the decoder for one example."""

    segments: list[Segment]
    entries: int  # K/V entries the prompt puts in the cache before the first generated token
    encode_s: float | None = None  # passage encoding time (index time: not part of TTFT); None when reused


class Method(ABC):
    """A way to answer a question about a passage. ``key`` identifies its predictions on disk."""

    key: str
    label: str
    ratio: int | None = None
    decoder: MemoryDecoder

    def __init__(self, model: SACModel, *, reader: bool = True, shared_header: bool = False) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.decoder = model.generator(reader=reader, shared_header=shared_header).decoder
        self.reader = reader and model.config.has_reader  # decoded with the model's reader adapter

    @abstractmethod
    def prompt(self, example: QAExample) -> Prompt:
        """The segments to decode from for ``example``."""

    def _question(self, example: QAExample) -> list[int]:
        return question_ids(self.tokenizer, example.question, self.model.config)

    def _context(self, example: QAExample) -> list[int]:
        """The context sequence of the example's passages, joined as the RAG pipeline joins them."""
        return context_ids(self.tokenizer, PASSAGE_SEPARATOR.join(example.prompt_passages), self.model.config)

    def _passage_pieces(self, example: QAExample) -> list[list[int]]:
        """The context sequence cut at passage boundaries: the first passage's context sequence, then each
        further passage's ids after the separator."""
        first, *rest = example.prompt_passages
        return [context_ids(self.tokenizer, first, self.model.config)] + [
            encode(self.tokenizer, PASSAGE_SEPARATOR + p) for p in rest
        ]

    def _text_prompt(self, ids: list[int]) -> Prompt:
        return Prompt([ids], len(ids))


class RawContext(Method):
    """The whole passage as text: ``context_ids + question_ids`` (the official raw-context layout)."""

    key, label = "raw", "Raw context (base)"

    def prompt(self, example: QAExample) -> Prompt:
        return self._text_prompt(self._context(example) + self._question(example))


class NoContext(Method):
    """The question alone: ``[BOS] + question_ids``."""

    key, label = "no_context", "No context"

    def prompt(self, example: QAExample) -> Prompt:
        return self._text_prompt(bos_ids(self.tokenizer) + self._question(example))


class _Budgeted(Method):
    """Raw tokens cut to SAC's budget at ``ratio``: as many tokens as SAC keeps anchors."""

    name = ""  # key prefix
    title = ""  # label prefix

    def __init__(self, model: SACModel, ratio: int, *, reader: bool = True) -> None:
        super().__init__(model, reader=reader)
        self.ratio = ratio
        self.key = f"{self.name}_r{ratio}"
        self.label = f"{self.title} (r={ratio})"

    def _kept(self, ids: list[int]) -> list[int]:
        return anchor_indices(len(ids), self.model.config.chunk_size, self.ratio)

    @abstractmethod
    def _select(self, ids: list[int]) -> list[int]: ...

    def prompt(self, example: QAExample) -> Prompt:
        """Each passage cut to the budget on its own, so every passage of a multi-passage prompt keeps its share."""
        kept = [i for piece in self._passage_pieces(example) for i in self._select(piece)]
        return self._text_prompt(kept + self._question(example))


class Truncate(_Budgeted):
    """The first tokens of the context sequence (BOS and prefix included), as many as SAC keeps."""

    name, title = "truncate", "Truncated to SAC budget"

    def _select(self, ids: list[int]) -> list[int]:
        return ids[: len(self._kept(ids))]


class UniformDrop(_Budgeted):
    """Uniform token dropping: the raw tokens at SAC's anchor indices (every ``ratio``-th token)."""

    name, title = "drop", "Uniform token drop"

    def _select(self, ids: list[int]) -> list[int]:
        return [ids[i] for i in self._kept(ids)]


class _Memorised(Method):
    """Methods that encode the passage once into a MemoryChunk (cached per context)."""

    def __init__(self, model: SACModel, cache_size: int = 32, *, shared_header: bool = False) -> None:
        super().__init__(model, shared_header=shared_header)
        self._cache: OrderedDict[str, MemoryChunk] = OrderedDict()
        self._cache_size = cache_size

    @abstractmethod
    def _encode(self, context: str) -> MemoryChunk: ...

    def _memory(self, context: str) -> tuple[MemoryChunk, float | None]:
        if context in self._cache:
            self._cache.move_to_end(context)
            return self._cache[context], None
        t0 = time.perf_counter()
        memory = self._encode(context)
        elapsed = time.perf_counter() - t0
        self._cache[context] = memory
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return memory, elapsed

    def prompt(self, example: QAExample) -> Prompt:
        """One memory per passage (each encoded on its own), composed in the passages' order."""
        made = [self._memory(p) for p in example.prompt_passages]
        segments = self.model.generator().build_prompt(example.question, memories=[memory for memory, _ in made])
        # cache entries per (layer, kv head): text tokens, [LM], and each memory's held entries on average
        entries = sum(
            len(s) if isinstance(s, list) else round(s.entries_per_head) if isinstance(s, MemoryChunk) else 1
            for s in segments
        )
        times = [t for _, t in made if t is not None]
        return Prompt(segments, entries, sum(times) if times else None)


class FullKV(_Memorised):
    """Full per-passage KV reuse: every token's K/V from the decoder, shifted into place."""

    key, label = "full_kv", "Full per-passage KV reuse"

    def _encode(self, context: str) -> MemoryChunk:
        return self.model.encode_full_kv([context])[0]


class PassageAnalyses:
    """The decoder's analysis of recent passages (full K/V, entry scores, reference queries), shared by every
    compaction method of a run: each passage is analysed once, whatever the budgets and variants compared."""

    def __init__(self, model: SACModel, size: int = 16) -> None:
        self.model = model
        self.compactor = model.compactor()
        self._items: OrderedDict[str, PassageAnalysis] = OrderedDict()
        self._size = size

    def get(self, context: str) -> PassageAnalysis:
        if context not in self._items:
            self._items[context] = self.compactor.analyse(context_ids(self.model.tokenizer, context, self.model.config))
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        self._items.move_to_end(context)
        return self._items[context]


class Compacted(_Memorised):
    """A compaction memory of the passage at ``1/ratio`` of its full K/V's bytes (bias, positions, counts and
    scales included), built by the decoder: per-head selection, with the attention-matching refit (``refit``)
    or without it (KVzip selection alone), its K/V as ``dtype`` ("int8" or "bfloat16"). No [LM] follows it."""

    def __init__(
        self,
        model: SACModel,
        ratio: int,
        analyses: PassageAnalyses,
        *,
        refit: bool = True,
        dtype: str = "bfloat16",
        shared_header: bool = False,
    ) -> None:
        super().__init__(model, shared_header=shared_header)
        self.ratio = ratio
        self.refit = refit
        self.dtype = COMPACT_DTYPES[dtype]
        self.analyses = analyses
        # bfloat16 memories keep the keys they had before int8 ones existed, so earlier predictions stay valid
        tag = "" if dtype == "bfloat16" else f"_{dtype}"
        self.key = f"{'compact' if refit else 'select'}{tag}_r{ratio}"
        self.label = f"{'Selection + refit' if refit else 'Selection only (KVzip)'}, {dtype} (1/{ratio} bytes)"

    def _encode(self, context: str) -> MemoryChunk:
        memory = compact_analysis(self.analyses.get(context), 1 / self.ratio, refit_values=self.refit, dtype=self.dtype)
        memory.meta[HEADER] = header_length(self.tokenizer, self.model.config)  # the analysis read a context sequence
        return memory


class SAC(_Memorised):
    """SAC memory of the passage (the model's compressor), then [LM] and the question."""

    def __init__(self, model: SACModel, name: str) -> None:
        super().__init__(model)
        self.ratio = model.config.ratio
        self.key = f"sac_r{self.ratio}_{name}_{model.memory_fingerprint('sac')[:8]}"
        self.label = f"SAC r={self.ratio} ({name})"

    def _encode(self, context: str) -> MemoryChunk:
        return self.model.compress([context], kind="sac")[0]


class SACRefit(SAC):
    """The SAC memory with its anchors' bias and values refitted to the whole passage (attention matching,
    with the decoder's own analysis of the passage, shared with the compaction methods)."""

    def __init__(self, model: SACModel, name: str, analyses: PassageAnalyses) -> None:
        super().__init__(model, name)
        self.analyses = analyses
        self.key = f"sac_refit_r{self.ratio}_{name}_{model.memory_fingerprint('sac')[:8]}"
        self.label = f"SAC r={self.ratio} + refit ({name})"

    def _encode(self, context: str) -> MemoryChunk:
        return refit_anchors(super()._encode(context), self.analyses.get(context))


def _file_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.glob("adapter_*")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:8]


class FullFT(Method):
    """A plain PEFT LoRA adapter fine-tuned on raw-context QA, adapter on, raw-context prompt."""

    def __init__(self, model: SACModel, adapter_dir: str | Path, load_base: Callable[[], PreTrainedModel]) -> None:
        from peft import PeftModel

        super().__init__(model)
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json, not a PEFT adapter directory")
        peft = PeftModel.from_pretrained(load_base(), str(adapter_dir)).eval()
        base = peft.get_base_model()
        embed = base.get_input_embeddings()
        self.peft = peft  # keep the LoRA layers alive: they live inside base.model
        shifter = RotaryShifter.from_model(base)
        # text-only prompts: the [LM] embedding slot is never used, it only tells the device and dtype
        head = base.get_output_embeddings()
        self.decoder = MemoryDecoder(base.model, head, embed, embed.weight[0], shifter, nullcontext)
        self.key = f"full_ft_{adapter_dir.name}_{_file_digest(adapter_dir)}"
        self.label = f"Full-FT raw context ({adapter_dir.name})"

    def prompt(self, example: QAExample) -> Prompt:
        return self._text_prompt(self._context(example) + self._question(example))
