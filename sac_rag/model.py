"""SACModel: the high-level API. One set of base weights serves as compressor (its LoRA on) and decoder
(the plain base, or the base with a reader LoRA for our own models)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Unpack

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sac_rag.checkpoint.fingerprint import Fingerprints
from sac_rag.checkpoint.native import load_reader_weights, load_sac_weights, read_reader_adapter, save_sac_weights
from sac_rag.checkpoint.official import load_official_adapter
from sac_rag.compaction.compactor import COMPACT_DTYPES, Compactor
from sac_rag.compaction.compactor import KIND as COMPACT_KIND
from sac_rag.compaction.score import REPEAT_PROMPT
from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE, AnchorKV, encode_anchor_kv
from sac_rag.compression.lora import (
    ADAPTER_NAME,
    READER_NAME,
    AdapterSwitch,
    add_reader,
    attach_lora,
)
from sac_rag.config import CONFIG_NAME, MEMORY_KINDS, SACConfig
from sac_rag.decoding.generate import MemoryDecoder, SinkCache
from sac_rag.decoding.generator import GenerationOptions, Generator, PromptSegment
from sac_rag.device import default_device
from sac_rag.home import DEFAULT_BASE_MODEL, resolve_model_path
from sac_rag.memory.chunk import HEADER, MemoryChunk
from sac_rag.memory.geometry import kv_shape
from sac_rag.memory.maker import MemoryMaker
from sac_rag.memory.rope import RotaryShifter
from sac_rag.memory.sac import FULL_KV_KIND, SAC_KIND, EncodedMemories
from sac_rag.text.prompt import context_sequences, encode, header_length


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class SACModel(nn.Module):
    """A SAC compressor and its decoder over one base causal LM.

    Build it with :meth:`from_base` (fresh SAC parts), :meth:`from_pretrained` (a saved
    checkpoint) or :meth:`default` (the offline default). Then :meth:`compress` passages into
    :class:`MemoryChunk` s and :meth:`generate` / :meth:`stream` answers from them.
    """

    def __init__(self, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: SACConfig) -> None:
        super().__init__()
        base_name = config.base_model or getattr(base.config, "_name_or_path", None) or type(base).__name__
        config.base_model = base_name
        self.config = config
        self.tokenizer = tokenizer
        for p in base.parameters():
            p.requires_grad_(False)
        self.shifter = RotaryShifter.from_model(base)  # refuses non-RoPE / dynamic-RoPE bases early
        with torch.random.fork_rng(devices=[]):  # PEFT draws lora_A from the global generator
            torch.manual_seed(0)
            self.peft = attach_lora(base, config, base_name=base_name)
            if config.has_reader:
                add_reader(self.peft, config, base_name=base_name)
        self._adapter_switch = AdapterSwitch(self.peft)
        hidden = base.config.hidden_size
        param = next(base.parameters())
        # Fresh parts are deterministic (fixed seed; float64 statistics in numpy, whose reductions do not
        # depend on the thread count), so every process gets the same untrained compressor and fingerprint.
        embed = base.get_input_embeddings().weight.detach().cpu().double().numpy()
        gen = torch.Generator().manual_seed(0)
        role = torch.randn(config.mem_size, hidden, generator=gen) * 0.02
        special = torch.randn(2, hidden, generator=gen) * float(embed.std()) + float(embed.mean())
        self.role_tokens = nn.Parameter(role.to(device=param.device, dtype=param.dtype))
        self.special_tokens = nn.Parameter(special.to(device=param.device, dtype=param.dtype))
        self._lock = threading.RLock()
        self._fingerprints = Fingerprints(self)
        self._sinks = SinkCache(self._fingerprints.decoder_state)
        # by (reader, shared_header), until add_reader changes the adapters
        self._generators: dict[tuple[bool, bool], Generator] = {}

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_base(
        cls,
        base: str | Path | PreTrainedModel = DEFAULT_BASE_MODEL,
        config: SACConfig | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> SACModel:
        """A SAC model with fresh (untrained) SAC parts over ``base``: an HF id, a local dir, or a model."""
        config = SACConfig.from_dict(config.to_dict()) if config else SACConfig()  # never mutate the caller's
        device = torch.device(device) if device else None
        if isinstance(base, PreTrainedModel):
            model = base
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(base.config._name_or_path)
            if dtype is not None or device is not None:
                model = model.to(device=device, dtype=dtype)
        else:
            name = str(base)
            path = resolve_model_path(name)
            device = device or default_device()
            dtype = dtype or _default_dtype(device)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").to(device)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            config.base_model = name
        model.eval()
        return cls(model, tokenizer, config)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        base: str | PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> SACModel:
        """Load a checkpoint written by :meth:`save_pretrained` (its base model by name, unless ``base`` is given)."""
        config = SACConfig.load(directory)
        model = cls.from_base(base or config.base_model, config, tokenizer, dtype=dtype, device=device)
        load_sac_weights(model, directory)
        return model

    @classmethod
    def default(cls, *, memory_kind: str | None = None, **kwargs) -> SACModel:
        """The offline default: SmolLM2-135M-Instruct with the reader and SAC compressor shipped in the package,
        if any. Its memories are compact (the decoder's own K/V at 1/5 of the bytes, refitted: they answer
        like the full text); ``memory_kind="sac"`` selects the shipped SAC compressor's anchors instead."""
        from sac_rag.pretrained import default_checkpoint

        ckpt = default_checkpoint()
        model = cls.from_pretrained(ckpt, **kwargs) if ckpt else cls.from_base(DEFAULT_BASE_MODEL, **kwargs)
        if memory_kind is not None:
            model.set_memory_kind(memory_kind)
        return model

    def set_memory_kind(self, kind: str) -> None:
        """Make :meth:`compress` build memories of ``kind`` (``"sac"`` or ``"compact"``) from now on; the model's
        :attr:`fingerprint` (what a store records) follows."""
        if kind not in MEMORY_KINDS:
            raise ValueError(f"memory kind must be one of {', '.join(MEMORY_KINDS)}, got {kind!r}")
        self.config.memory_kind = kind

    @classmethod
    def load(cls, spec: str | Path | None = None, *, memory_kind: str | None = None, **kwargs) -> SACModel:
        """A model from a command-line style spec: ``None`` or ``"default"``, the offline default
        (:meth:`default`); a directory holding ``sac_config.json``, that checkpoint (:meth:`from_pretrained`);
        anything else, fresh SAC parts over that base model, a library alias, Hugging Face id or local
        directory (:meth:`from_base`). ``memory_kind`` overrides the kind of memories it makes; ``kwargs``
        (``dtype``, ``device``) go to the loader."""
        model = cls._load(spec, **kwargs)
        if memory_kind is not None:
            model.set_memory_kind(memory_kind)
        return model

    @classmethod
    def _load(cls, spec: str | Path | None, **kwargs) -> SACModel:
        if spec is None or spec == "default":
            return cls.default(**kwargs)
        if not isinstance(spec, (str, Path)) or not str(spec).strip():
            raise ValueError(f"model must be a checkpoint directory or a model name, got {spec!r}")
        spec = str(spec)
        if _looks_like_path(spec) and not Path(spec).expanduser().exists():
            raise FileNotFoundError(f"model {spec}: no such checkpoint directory")
        if (Path(spec).expanduser() / CONFIG_NAME).is_file():
            return cls.from_pretrained(Path(spec).expanduser(), **kwargs)
        return cls.from_base(spec, **kwargs)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``sac_config.json``, the PEFT adapter and the SAC embeddings as safetensors (atomically)."""
        save_sac_weights(self, directory)

    def load_official_adapter(self, path: str | Path) -> None:
        """Load an official SAC ``adapter.pt`` / ``instruction_adapter.pt`` (refusing incomplete or foreign files)."""
        load_official_adapter(self, path)

    # ----------------------------------------------------------------- parts
    @property
    def base_model(self) -> PreTrainedModel:
        return self.peft.get_base_model()

    @property
    def transformer(self) -> nn.Module:
        """The decoder stack without the LM head (LoRA layers inside, switched by :meth:`adapter`)."""
        return self.base_model.model

    @property
    def device(self) -> torch.device:
        return self.role_tokens.device

    @property
    def dtype(self) -> torch.dtype:
        return self.role_tokens.dtype

    @property
    def kv_shape(self) -> tuple[int, int, int]:
        """``(layers, kv_heads, head_dim)`` of the base model's K/V (a memory's keys are
        ``[layers, kv_heads, anchors, head_dim]``)."""
        return kv_shape(self.base_model.config)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's tokenizer (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sac_parameters(self) -> dict[str, nn.Parameter]:
        """The compressor's parameters: its LoRA, the anchor (role) and special embeddings."""
        return self._fingerprints.sac_parameters()

    def reader_parameters(self) -> dict[str, nn.Parameter]:
        """The reader adapter's LoRA tensors (empty when the model has no reader)."""
        return self._fingerprints.reader_parameters()

    def add_reader(self, source: str | Path | None = None, *, rank: int = 32, alpha: float | None = None) -> None:
        """Give the decoder a reader adapter: the PEFT LoRA adapter in ``source`` (e.g. a Full-FT run's
        ``final/``), or a fresh one of ``rank`` (alpha ``2 * rank`` unless given) on the compressor's targets."""
        if self.config.has_reader:
            raise ValueError("this model already has a reader adapter")
        if source is not None:
            lora, weights = read_reader_adapter(Path(source))
            rank, alpha, targets = lora.r, lora.lora_alpha, tuple(sorted(lora.target_modules))
        else:
            weights, targets = None, self.config.lora_targets
        self.config.reader_rank = rank
        self.config.reader_alpha = float(alpha if alpha is not None else 2 * rank)
        self.config.reader_targets = targets
        add_reader(self.peft, self.config, base_name=self.config.base_model)
        self._adapter_switch = AdapterSwitch(self.peft)
        self._fingerprints.adapters_changed()
        self._generators.clear()
        if weights is not None:
            load_reader_weights(self, weights, Path(source))

    @contextmanager
    def adapter(self, enabled: bool, *, reader: bool = True):
        """Run as the compressor (``enabled``: its LoRA on) or as the decoder (the reader adapter when the
        model has one and ``reader`` is left on, else the plain base); serialises model use across threads."""
        with self._lock:
            active = ADAPTER_NAME if enabled else READER_NAME if reader and self.config.has_reader else None
            with self._adapter_switch.use(active):
                yield

    @property
    def fingerprint(self) -> str:
        """Identifies what makes the memories of the configured ``memory_kind`` (see :meth:`memory_fingerprint`)."""
        return self.memory_fingerprint(self.config.memory_kind)

    def memory_fingerprint(self, kind: str) -> str:
        """Identifies what makes memories of ``kind``: base model + SAC adapter + SAC config for ``"sac"``,
        base model + reader + compaction settings for ``"compact"``; recomputed only when a parameter changed."""
        return self._fingerprints.memory(kind)

    def decoder_fingerprint(self) -> str:
        """Identifies what decodes, whatever the compressor: the base model and the reader adapter, if any."""
        return self._fingerprints.decoder()

    # ----------------------------------------------------------------- compression
    def encode_sequences(
        self,
        sequences: Sequence[Sequence[int]],
        *,
        full_kv: bool = False,
        offset: int = 1,
        batch_size: int = COMPRESS_BATCH_SIZE,
        progress: bool = False,
    ) -> list[AnchorKV]:
        """Anchor K/V of token sequences (differentiable: training calls this with grad enabled); chunks are
        encoded bidirectionally unless the config says ``causal_compressor``.

        ``full_kv=True`` keeps every token's K/V from the decoder instead (causal; the plain base, or the
        base with the reader adapter when the model has one).
        """
        with self.adapter(not full_kv):
            return encode_anchor_kv(
                self.transformer,
                self.base_model.get_input_embeddings(),
                None if full_kv else self.role_tokens,
                sequences,
                chunk_size=max(len(s) for s in sequences) if full_kv else self.config.chunk_size,
                ratio=1 if full_kv else self.config.ratio,
                offset=offset,
                batch_size=batch_size,
                pad_id=self.tokenizer.pad_token_id or 0,
                causal=full_kv or self.config.causal_compressor,
                progress=progress,
            )

    @torch.inference_mode()
    def compress(
        self,
        texts: Sequence[str] | str,
        *,
        batch_size: int = COMPRESS_BATCH_SIZE,
        add_context_prefix: bool = True,
        position_offset: int = 1,
        progress: bool = False,
        kind: str | None = None,
        token_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[MemoryChunk]:
        """Compress each text into one :class:`MemoryChunk` of ``kind`` (default: the configured
        ``memory_kind``): ``"sac"``, SAC anchors (split into ``chunk_size`` chunks as the spec says), or
        ``"compact"``, a compaction of the decoder's own K/V (:meth:`memory_maker` makes them).

        With ``add_context_prefix`` (the default) a text is encoded as the official context,
        ``[BOS] + "### Context:\\n" + text``. ``position_offset`` is the position id of its first token.
        ``token_ids`` (one sequence per text): the texts' ids by this model's tokenizer, no special tokens
        (``sac_rag.text.prompt.encode``), when the caller has them already; they are used as they are, so a
        text is not tokenised again.
        """
        kind = kind or self.config.memory_kind
        if kind not in MEMORY_KINDS:
            raise ValueError(f"kind must be one of {', '.join(MEMORY_KINDS)}, got {kind!r}")
        sequences = context_sequences(self.tokenizer, self.config, texts, add_context_prefix, token_ids)
        memories = self._make(kind, sequences, add_context_prefix, position_offset, batch_size, progress)
        fingerprint = self.memory_fingerprint(kind)
        return [replace(m, fingerprint=fingerprint) for m in memories]

    @torch.inference_mode()
    def encode_full_kv(
        self,
        texts: Sequence[str] | str,
        *,
        batch_size: int = COMPRESS_BATCH_SIZE,
        add_context_prefix: bool = True,
        position_offset: int = 1,
        progress: bool = False,
    ) -> list[MemoryChunk]:
        """Every token's K/V from the decoder (causal; plain base or reader): full per-passage KV reuse.

        The uncompressed reference (TurboRAG-style): composes like SAC memories, but no [LM] follows it.
        """
        sequences = context_sequences(self.tokenizer, self.config, texts, add_context_prefix)
        return self._make(FULL_KV_KIND, sequences, add_context_prefix, position_offset, batch_size, progress)

    def _make(
        self, kind: str, sequences: list[list[int]], header: bool, position_offset: int, batch_size: int, progress: bool
    ) -> list[MemoryChunk]:
        """Memories of ``kind`` made from context sequences; those that hold every token's entries (all but SAC
        anchors) record the context header they open with (``header``: the sequences have one), which a memory
        composed after another leaves out."""
        memories = self.memory_maker(kind).make(
            sequences, position_offset=position_offset, batch_size=batch_size, progress=progress
        )
        if header and kind != SAC_KIND:
            length = header_length(self.tokenizer, self.config)
            for memory in memories:
                memory.meta[HEADER] = length
        return memories

    def memory_maker(self, kind: str) -> MemoryMaker:
        """What makes memories of ``kind`` with this model: ``"sac"`` (the compressor's anchors), ``"compact"``
        (:meth:`compactor` with the config's settings) or ``"full_kv"`` (every token's K/V from the decoder)."""
        if kind == COMPACT_KIND:
            return self.compactor()
        if kind in (SAC_KIND, FULL_KV_KIND):
            full_kv = kind == FULL_KV_KIND
            return EncodedMemories(
                self.encode_sequences, full_kv=full_kv, ratio=self.config.ratio, chunk_size=self.config.chunk_size
            )
        raise ValueError(f"no memories of kind {kind!r}: expected {', '.join((*MEMORY_KINDS, FULL_KV_KIND))}")

    def compactor(self, *, keep: float | None = None, refit: bool | None = None, dtype: str | None = None) -> Compactor:
        """Builds compact memories with this model's decoder (the reader on, as it will answer) at ``keep``
        of the full K/V's bytes, refitted or not, their K/V as ``dtype`` ("int8" or "bfloat16") (defaults: the
        config's ``compact_keep``, ``compact_refit``, ``compact_dtype``). Its memories carry no fingerprint;
        :meth:`compress` stamps them when the config asks for this kind."""
        return Compactor(
            self.transformer,
            lambda: self.adapter(False),
            encode(self.tokenizer, REPEAT_PROMPT),
            keep=self.config.compact_keep if keep is None else keep,
            refit_values=self.config.compact_refit if refit is None else refit,
            dtype=COMPACT_DTYPES[self.config.compact_dtype if dtype is None else dtype],
        )

    # ----------------------------------------------------------------- answering
    def generator(self, *, reader: bool = True, shared_header: bool = False) -> Generator:
        """Lays out, composes and answers prompts over memories with this model's decoder: compressor LoRA
        off, the reader adapter on if the model has one (``reader=False``: the plain base, e.g. to measure what
        the reader costs). Built once and kept (it holds nothing of a question), so a question's trip through
        layout, composition and generation uses one decoder; its ``decoder`` runs prompts for training and
        evaluation. ``shared_header``: composed memories after the first leave out their context header (see
        :func:`~sac_rag.memory.compose.compose`; off by default)."""
        generator = self._generators.get((reader, shared_header))
        if generator is None:
            decoder = MemoryDecoder(
                self.transformer,
                self.base_model.get_output_embeddings(),
                self.base_model.get_input_embeddings(),
                lambda: self.special_tokens[1],
                self.shifter,
                lambda: self.adapter(False, reader=reader),
                sinks=self._sinks,
                variant=reader and self.config.has_reader,
                shared_header=shared_header,
            )
            limit = getattr(self.base_model.config, "max_position_embeddings", None)
            generator = self._generators[(reader, shared_header)] = Generator(
                decoder, self.tokenizer, self.config, self._check_memory, limit
            )
        return generator

    def _check_memory(self, chunk: MemoryChunk) -> None:
        layers, heads, dim = self.kv_shape
        k = chunk.shape
        if (k[0], k[1], k[3]) != (layers, heads, dim):
            raise ValueError(
                f"memory shaped {tuple(k)} does not fit this model ({layers} layers, {heads} kv heads, head_dim {dim})"
            )
        if not chunk.fingerprint:
            return
        kind = chunk.meta.get("kind", SAC_KIND)
        expected = self.memory_fingerprint(kind) if kind in MEMORY_KINDS else None
        if chunk.fingerprint != expected:
            raise ValueError(
                f"{kind} memory was made by {chunk.fingerprint}, this model makes {expected}: "
                "re-compress the passage with this model"
            )

    def generate(
        self,
        prompt: str | Sequence[PromptSegment],
        memories: Sequence[MemoryChunk] | None = None,
        **options: Unpack[GenerationOptions],
    ) -> str:
        """Greedy answer text to ``prompt`` over ``memories`` (see :meth:`Generator.build_prompt
        <sac_rag.decoding.generator.Generator.build_prompt>`: a question with memories, or a list of text and
        memories); ``options``: ``max_new_tokens`` (default 64), ``stop_token_ids``."""
        return self.generator().generate(prompt, memories, **options)

    def stream(
        self,
        prompt: str | Sequence[PromptSegment],
        memories: Sequence[MemoryChunk] | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Iterator[str]:
        """Yield the answer as text pieces while it is generated (greedy, same tokens as :meth:`generate`)."""
        return self.generator().stream(prompt, memories, **options)


def _looks_like_path(spec: str) -> bool:
    """A spec spelled as a path (``/``, ``./``, ``~``, two or more ``/``), not a hub name like ``org/model``."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1
