"""Test support: tiny random SAC models built in about a second, and what the integration tests share.

The library's tests and each integration package's own tests (``integrations/*/tests``) build their models
here, so that a package's tests run with nothing but ``sac-rag`` and that package installed. Nothing here
downloads anything: the tokenizer is trained on a few sentences, the models are random.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from sac_rag.bridge import SACSession
from sac_rag.config import SACConfig
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel

if TYPE_CHECKING:
    from sac_rag.store import MemoryStore

# ----------------------------------------------------------------- tiny tokenizer and models
#: What the tiny tokenizer is trained on.
TOKENIZER_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France.",
    "### Context:\n### Question:\n### Answer:\n",
    "Semantic anchor compression keeps every fifth token's keys and values as memory.",
    "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge.",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-",
]


@functools.cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of 320 tokens trained on :data:`TOKENIZER_CORPUS` (cached)."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TOKENIZER_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _common(vocab: int, **overrides: Any) -> dict:
    cfg = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    cfg.update(overrides)
    return cfg


def tiny_llama(seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    """A random 2-layer Llama over :func:`tiny_tokenizer` (``overrides``: LlamaConfig fields)."""
    torch.manual_seed(seed)
    config = LlamaConfig(**_common(len(tiny_tokenizer()), **overrides))
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


def tiny_qwen2(seed: int = 0, **overrides: Any) -> Qwen2ForCausalLM:
    """A random 2-layer Qwen2 over :func:`tiny_tokenizer` (``overrides``: Qwen2Config fields)."""
    torch.manual_seed(seed)
    config = Qwen2Config(**_common(len(tiny_tokenizer()), **overrides))
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config).eval()


BUILDERS: dict[str, Callable[..., Any]] = {"llama": tiny_llama, "qwen2": tiny_qwen2}


def randomize_sac(model: SACModel, seed: int = 1, scale: float = 0.05) -> None:
    """Give every SAC parameter (LoRA A and B included) random non-zero values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.sac_parameters().values():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def tiny_model(arch: str = "llama", ratio: int = 5, rank: int = 8, randomize: bool = True, **cfg: Any) -> SACModel:
    """A :class:`SACModel` over a tiny random base (``cfg``: more :class:`SACConfig` fields, e.g. ``memory_kind``)."""
    config = SACConfig(ratio=ratio, lora_rank=rank, lora_alpha=2 * rank, base_model=f"tiny-{arch}", **cfg)
    model = SACModel.from_base(BUILDERS[arch](), config=config, tokenizer=tiny_tokenizer())
    if randomize:
        randomize_sac(model)
    return model


def text_of_tokens(n: int, seed: int = 0) -> str:
    """A text whose tiny-tokenizer encoding is exactly n tokens (n >= 1)."""
    tok = tiny_tokenizer()
    g = torch.Generator().manual_seed(seed)
    words = TOKENIZER_CORPUS[0].split() + TOKENIZER_CORPUS[2].split() + TOKENIZER_CORPUS[3].split()
    out: list[str] = []
    while len(tok(" ".join(out), add_special_tokens=False)["input_ids"]) < n:
        out.append(words[int(torch.randint(len(words), (1,), generator=g))])
    ids = tok(" ".join(out), add_special_tokens=False)["input_ids"][:n]
    text = tok.decode(ids)
    if len(tok(text, add_special_tokens=False)["input_ids"]) != n:
        raise AssertionError(f"could not make a text of exactly {n} tokens")
    return text


# ----------------------------------------------------------------- what the integration tests share
CORPUS = [
    "Paris is the capital of France. The quick brown fox jumps over the lazy dog.",
    "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge.",
    "Semantic anchor compression keeps every fifth token's keys and values as memory.",
    "The lazy dog sleeps all day while the brown fox runs in the forest.",
]
METADATA = [{"source": f"doc{i}.txt", "page": i, "tags": ["a", "b"]} for i in range(len(CORPUS))]
#: A passage that is not in :data:`CORPUS` (e.g. a user's upload).
UPLOADED = "A user-uploaded note: the cafeteria on the third floor opens at nine."
#: Store ids a passage may carry without coming from the session's store: a real id of another passage,
#: one the store does not hold, and malformed ones. None may raise or pull stored memory.
FOREIGN_STORE_IDS = [1, 999999, "abc", -5]


class HashingEmbedder:
    """Deterministic lower-cased word hashing into ``dim`` buckets, L2-normalised: texts sharing words are near."""

    def __init__(self, dim: int = 128) -> None:
        self.dim = dim
        self.name = f"test-hashing-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-12)
        return out


def tiny_session(model: SACModel | None = None, **kwargs: Any) -> SACSession:
    """A session over ``model`` or a new tiny random Llama SAC model (built in about a second); 6 tokens per answer."""
    kwargs.setdefault("max_new_tokens", 6)
    return SACSession(model if model is not None else tiny_model(), **kwargs)


@contextmanager
def slow_model(session: SACSession, seconds: float = 0.4) -> Iterator[None]:
    """Make the session's compress and generate calls block for ``seconds`` (as a real model would)."""
    model = session.model
    originals = {name: getattr(model, name) for name in ("compress", "generate", "stream")}

    def slowed(fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            time.sleep(seconds)
            return fn(*args, **kwargs)

        return wrapper

    def slow_stream(*args: Any, **kwargs: Any) -> Iterator[str]:
        time.sleep(seconds)
        yield from originals["stream"](*args, **kwargs)

    model.compress = slowed(originals["compress"])
    model.generate = slowed(originals["generate"])
    model.stream = slow_stream
    try:
        yield
    finally:
        for name in originals:
            delattr(model, name)


async def ticks_during(coro: Any, period: float = 0.01) -> tuple[Any, int]:
    """Await ``coro`` while a ticker counts how often the event loop got to run it."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(period)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        return await coro, ticks
    finally:
        stop.set()
        await task


def expected_answer(model: SACModel, prompt: str, ref_texts: dict[str, str], max_new_tokens: int) -> str:
    """What ``model.generate`` answers to ``prompt`` with each reference replaced by a fresh compression of its text.

    Independent of the registry: references are found by exact string match and re-compressed.
    """
    pattern = re.compile("|".join(map(re.escape, ref_texts)))
    segments: list[str | MemoryChunk] = []
    pos = 0
    for m in pattern.finditer(prompt):
        if m.start() > pos:
            segments.append(prompt[pos : m.start()])
        segments.append(model.compress([ref_texts[m.group()]])[0])
        pos = m.end()
    if pos < len(prompt):
        segments.append(prompt[pos:])
    if all(isinstance(s, str) for s in segments):
        raise AssertionError("the prompt holds no reference")
    return model.generate(segments, max_new_tokens=max_new_tokens)


def corpus_store(session: SACSession, path: Any) -> MemoryStore:
    """A memory store at ``path`` holding :data:`CORPUS` (with :data:`METADATA`), compressed by the session's model."""
    from sac_rag.store import MemoryStore

    store = MemoryStore.create(path, session.model, embedder=HashingEmbedder())
    store.add(CORPUS, METADATA, progress=False)
    return store


def same_chunk(a: MemoryChunk, b: MemoryChunk) -> bool:
    """Whether two memories hold the same K/V for the same passage length."""
    return torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values) and a.length == b.length


def assert_memory_is_own_text(session: SACSession, reference: str, text: str) -> None:
    """The memory behind ``reference`` is ``text`` compressed by the session's model, and no stored passage's."""
    chunk = session.registry.entry(reference).chunk
    if not same_chunk(chunk, session.model.compress([text])[0]):
        raise AssertionError(f"{reference} is not the memory of {text!r}")
    stored = session.store.memories(session.store.ids())
    if any(same_chunk(chunk, s) for s in stored):
        raise AssertionError(f"{reference} holds a stored passage's memory")
