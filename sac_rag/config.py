"""SACConfig: the hyper-parameters that define a SAC compressor (saved as ``sac_config.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sac_rag.io import atomic_write_text

CONFIG_NAME = "sac_config.json"
FORMAT_VERSION = 1
# sac_rag's extensions of the official design; off (at their defaults) they leave a model's identity unchanged
EXTENSION_FIELDS = (
    "attention_sink",
    "reader_rank",
    "reader_alpha",
    "reader_targets",
    "causal_compressor",
)
MEMORY_KINDS = ("sac", "compact")
COMPACT_DTYPE_NAMES = ("int8", "bfloat16")  # what a compact memory's K/V may be budgeted and quantised as
DEFAULT_MAX_NEW_TOKENS = 64  # most tokens an answer generates, unless the caller says otherwise
# what memories a model makes, not how its SAC compressor behaves: never part of the compressor's identity
MEMORY_FIELDS = ("memory_kind", "compact_keep", "compact_refit", "compact_dtype")
# Configs once had a free-form ``extra`` dict, always empty: saved configs still carry ``"extra": {}``, and the
# identity text keeps it so that the fingerprints of existing compressors (and their stores) do not change.
LEGACY_IDENTITY = {"extra": {}}


@dataclass
class SACConfig:
    """Configuration of a SAC compressor.

    Defaults follow the official release at ratio 5: chunks of 510 tokens, LoRA rank 128 with scale
    ``lora_alpha / lora_rank = 2`` on ``q_proj`` and ``v_proj``, no attention sink and no reader.

    Fields:
        ratio: keep every ``ratio``-th token of a chunk as an anchor (docs/sac.md section 4).
        chunk_size: tokens per bidirectionally encoded chunk.
        lora_rank, lora_alpha, lora_targets: the compressor's LoRA (scale ``lora_alpha / lora_rank``).
        context_prefix, question_prefix, answer_prefix: the official prompt strings (docs/sac.md section 2).
        base_model: the base LM's portable name (a library alias, Hugging Face id or local directory).
        attention_sink: sac_rag extension; the decoder reads the BOS token's K/V (its own, at position 1)
            before the composed SAC memories, the attention sink the anchor layout never keeps.
        reader_rank, reader_alpha, reader_targets: sac_rag extension; a second LoRA ("reader") over the
            same base weights, active whenever the decoder runs (memories, raw text, full per-passage KV).
            ``reader_rank = 0``: no reader, the decoder is the plain base (the official design).
            ``reader_alpha / reader_rank`` scales it; ``reader_targets`` names the projections it adapts.
        causal_compressor: sac_rag extension; inside a chunk each token attends to earlier tokens only
            (the base model's own attention pattern) instead of to the whole chunk (the official design).
        memory_kind: sac_rag extension; what :meth:`SACModel.compress` builds. ``"sac"``: the compressor's
            anchor K/V (the official design). ``"compact"``: the decoder's own K/V, cut per head to
            ``compact_keep`` of the full K/V's bytes and refitted (:mod:`sac_rag.compaction`); it needs no
            trained compressor.
        compact_keep: the fraction of a passage's full K/V bytes (bfloat16) a compact memory may take,
            biases, positions and counts included (0.2: 5x smaller).
        compact_refit: refit the kept entries' logit bias and values to the whole passage (attention
            matching); ``False`` keeps the selected entries as they are (KVzip).
        compact_dtype: what a compact memory's K/V are budgeted and quantised as: ``"int8"`` (the store's int8
            codec: twice the entries for the same bytes) or ``"bfloat16"``. Write int8 compact memories to an
            int8 store, or they take twice ``compact_keep``.
    """

    ratio: int = 5
    chunk_size: int = 510
    lora_rank: int = 128
    lora_alpha: float = 256.0
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    context_prefix: str = "### Context:\n"
    question_prefix: str = "\n### Question:\n"
    answer_prefix: str = "\n### Answer:\n"
    base_model: str | None = None
    attention_sink: bool = False
    reader_rank: int = 0
    reader_alpha: float = 64.0
    reader_targets: tuple[str, ...] = ("q_proj", "v_proj")
    causal_compressor: bool = False
    memory_kind: str = "sac"
    compact_keep: float = 0.2
    compact_refit: bool = True
    compact_dtype: str = "int8"

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.reader_targets = tuple(self.reader_targets)
        if not isinstance(self.ratio, int) or self.ratio < 1:
            raise ValueError(f"ratio must be a positive integer, got {self.ratio!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        if self.ratio > self.chunk_size:
            raise ValueError(f"ratio ({self.ratio}) cannot exceed chunk_size ({self.chunk_size})")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank!r}")
        if not self.lora_targets:
            raise ValueError("lora_targets must name at least one projection")
        if self.memory_kind not in MEMORY_KINDS:
            raise ValueError(f"memory_kind must be one of {', '.join(MEMORY_KINDS)}, got {self.memory_kind!r}")
        if isinstance(self.compact_keep, bool) or not isinstance(self.compact_keep, (int, float)):
            raise ValueError(f"compact_keep must be a number in (0, 1], got {self.compact_keep!r}")
        self.compact_keep = float(self.compact_keep)
        if not 0 < self.compact_keep <= 1:
            raise ValueError(f"compact_keep must be in (0, 1], got {self.compact_keep!r}")
        if self.compact_dtype not in COMPACT_DTYPE_NAMES:
            names = ", ".join(COMPACT_DTYPE_NAMES)
            raise ValueError(f"compact_dtype must be one of {names}, got {self.compact_dtype!r}")
        for name in ("attention_sink", "causal_compressor", "compact_refit"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.reader_rank, int) or self.reader_rank < 0:
            raise ValueError(f"reader_rank must be an integer >= 0 (0: no reader), got {self.reader_rank!r}")
        if self.reader_rank and not self.reader_targets:
            raise ValueError("reader_targets must name at least one projection")

    @property
    def has_reader(self) -> bool:
        """Whether the decoder runs with a reader adapter (else it is the plain base)."""
        return self.reader_rank > 0

    @property
    def lora_scale(self) -> float:
        """The compressor LoRA's scale, ``lora_alpha / lora_rank``."""
        return self.lora_alpha / self.lora_rank

    @property
    def mem_size(self) -> int:
        """The largest number of anchors one full chunk holds (rows of the anchor-embedding table)."""
        from sac_rag.text.anchors import anchor_local_indices

        return len(anchor_local_indices(self.chunk_size, self.ratio))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["reader_targets"] = list(self.reader_targets)
        d["format_version"] = FORMAT_VERSION
        return d

    def identity(self) -> dict:
        """What identifies the compressor's behaviour: :meth:`to_dict` without the base model's name (its
        config and weights identify it), without the memory kind's settings (:data:`MEMORY_FIELDS`) and
        without extension fields left at their defaults, with the
        legacy empty ``extra`` (:data:`LEGACY_IDENTITY`) so that existing fingerprints stay as they were."""
        d = {**self.to_dict(), **LEGACY_IDENTITY}
        d.pop("base_model", None)
        defaults = SACConfig().to_dict()
        for name in EXTENSION_FIELDS:
            if d[name] == defaults[name]:
                del d[name]
        for name in MEMORY_FIELDS:
            del d[name]
        return d

    def compaction_identity(self) -> dict:
        """What identifies compact memories besides the decoder: the kind and its settings."""
        identity = {"memory_kind": "compact", "compact_keep": self.compact_keep, "compact_refit": self.compact_refit}
        if self.compact_dtype != "bfloat16":  # bfloat16 memories were the only kind at first: their fingerprints stay
            identity["compact_dtype"] = self.compact_dtype
        return identity

    @classmethod
    def from_dict(cls, d: dict) -> SACConfig:
        """The config of :meth:`to_dict` (older files' empty ``extra`` accepted and dropped)."""
        d = dict(d)
        version = d.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"sac_config format_version {version} is newer than this sac_rag supports")
        if d.pop("extra", {}):
            raise ValueError("SACConfig no longer has 'extra' metadata: keep free-form notes beside the checkpoint")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SACConfig keys: {sorted(unknown)}")
        return cls(**d)

    def save(self, directory: str | Path) -> None:
        """Write ``sac_config.json`` into ``directory`` (atomically)."""
        atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> SACConfig:
        """Read ``directory``'s ``sac_config.json``, naming the file when it is missing or invalid."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a sac_rag checkpoint directory")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is not a valid sac_rag config: {e}") from e
