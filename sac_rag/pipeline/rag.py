"""SACRAG: question -> retrieved passages -> their stored SAC memories composed -> answer, with figures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from sac_rag.config import DEFAULT_MAX_NEW_TOKENS
from sac_rag.decoding.text import TextStream
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.geometry import full_kv_nbytes
from sac_rag.model import SACModel
from sac_rag.store import Hit, PassageStore
from sac_rag.store.validate import check_positive, compressor_mismatch


@dataclass
class Figures:
    """What answering one question took.

    ``passage_tokens``: tokens the retrieved passages hold; ``prefilled_tokens``: tokens the decoder
    actually ran before answering (the question alone with SAC, passages + question from raw text);
    ``anchors``: K/V entries composed per (layer, kv head) (SAC anchors; compaction entries, on average);
    ``bytes_read``: memory bytes read from the store;
    ``full_kv_bytes``: a full KV cache of the passages' tokens in bfloat16 (what raw text rebuilds
    for every question, and what SAC's memories stand in for); ``answer_tokens``: tokens generated
    (a final EOS included). ``compose_s`` builds the prompt and places the memories (keys rotated into
    position), ``prefill_s`` runs from there until the first answer piece, ``decode_s`` to the end.
    """

    mode: str
    passages: int = 0
    passage_tokens: int = 0
    prefilled_tokens: int = 0
    anchors: int = 0
    bytes_read: int = 0
    full_kv_bytes: int = 0
    answer_tokens: int = 0
    retrieval_s: float = 0.0
    load_s: float = 0.0
    compose_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.retrieval_s + self.load_s + self.compose_s + self.prefill_s + self.decode_s

    def to_dict(self) -> dict:
        return {**asdict(self), "total_s": self.total_s}


@dataclass
class RAGResult:
    """An answer, the passages it was drawn from (best first) and the figures of the run."""

    answer: str
    sources: list[Hit]
    figures: Figures = field(repr=False)


class SACRAG:
    """Retrieval-augmented answering over a store of SAC memories (a :class:`~sac_rag.store.PassageStore`: a
    :class:`~sac_rag.store.MemoryStore` or a sharded store, as :func:`sac_rag.scale.open_store` opens them).

    ``query`` answers from the stored memories of the top ``k`` passages (or, with
    ``raw_text=True``, from the same passages as plain text, for comparison); ``stream`` yields the
    answer in pieces and leaves the full result in :attr:`last_result`. ``model`` defaults to the one
    the store was opened with.
    """

    def __init__(
        self, store: PassageStore, model: SACModel | None = None, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> None:
        self.store = store
        self.model = model if model is not None else store.model
        if self.model is None:
            raise ValueError("SACRAG needs the SACModel the store was built with")
        mismatch = compressor_mismatch(self.model, store.fingerprint)
        if mismatch:
            raise ValueError(f"{store.path}: {mismatch}")
        self.max_new_tokens = check_positive(max_new_tokens, "max_new_tokens")
        self.last_result: RAGResult | None = None

    def query(
        self, question: str, k: int = 5, *, raw_text: bool = False, max_new_tokens: int | None = None
    ) -> RAGResult:
        """Answer ``question`` from the ``k`` passages nearest to it."""
        for _ in self.stream(question, k, raw_text=raw_text, max_new_tokens=max_new_tokens):
            pass
        return self.last_result

    def stream(
        self, question: str, k: int = 5, *, raw_text: bool = False, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """Yield the answer in text pieces as it is generated; then :attr:`last_result` holds the result.

        The store's ``search`` checks ``question`` and ``k`` (the one place a query is checked), before the
        model runs.
        """
        n = self._n(max_new_tokens)
        figures = Figures(mode="raw_text" if raw_text else "sac")
        t0 = time.perf_counter()
        sources = self.store.search(question, k)
        figures.retrieval_s = time.perf_counter() - t0
        if not sources and len(self.store) == 0:
            raise ValueError(f"the store {self.store.path} is empty: index some passages first")
        figures.passages = len(sources)
        if raw_text:
            prompt, memories = self._raw_prompt(question, sources, figures), None
        else:
            prompt, memories = question, self._memories(sources, figures)
        t0 = time.perf_counter()
        generator = self.model.generator()
        segments = generator.build_prompt(prompt, memories)
        composed = generator.compose(segments)
        figures.compose_s = time.perf_counter() - t0
        figures.prefilled_tokens = sum(len(s) for s in segments if isinstance(s, list))
        pieces: list[str] = []
        t0 = time.perf_counter()
        tokens = TextStream(self.model.tokenizer, generator.stream_ids(composed, max_new_tokens=n))
        del composed  # held by the decoder only until the cache has it
        for piece in tokens:
            if not pieces:
                figures.prefill_s, t0 = time.perf_counter() - t0, time.perf_counter()
            pieces.append(piece)
            yield piece
        elapsed = time.perf_counter() - t0
        if pieces:
            figures.decode_s = elapsed
        else:
            figures.prefill_s = elapsed
        figures.answer_tokens = len(tokens.ids)
        self.last_result = RAGResult("".join(pieces), sources, figures)

    def _n(self, max_new_tokens: int | None) -> int:
        return self.max_new_tokens if max_new_tokens is None else check_positive(max_new_tokens, "max_new_tokens")

    def _memories(self, sources: list[Hit], figures: Figures) -> list[MemoryChunk]:
        t0 = time.perf_counter()
        memories = self.store.memories([h.id for h in sources])
        figures.load_s = time.perf_counter() - t0
        figures.passage_tokens = sum(m.length for m in memories)
        figures.anchors = round(sum(m.entries_per_head for m in memories))
        figures.bytes_read = sum(m.meta.get("stored_nbytes", m.nbytes) for m in memories)
        figures.full_kv_bytes = sum(m.full_kv_nbytes(torch.bfloat16) for m in memories)
        return memories

    def _raw_prompt(self, question: str, sources: list[Hit], figures: Figures) -> list[str]:
        """The official context and question sequences, with the passages as text joined by a blank line."""
        config = self.model.config
        passages = "\n\n".join(h.text for h in sources)
        figures.passage_tokens = self.model.count_tokens(passages)
        figures.full_kv_bytes = full_kv_nbytes(self.model.kv_shape, figures.passage_tokens, torch.bfloat16)
        return [config.context_prefix, passages, config.question_prefix, question, config.answer_prefix]
