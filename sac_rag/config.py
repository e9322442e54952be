"""SACConfig: the hyper-parameters that define a SAC compressor (saved as ``sac_config.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sac_rag.io import atomic_write_text

CONFIG_NAME = "sac_config.json"
FORMAT_VERSION = 1


@dataclass
class SACConfig:
    """Configuration of a SAC compressor.

    Defaults follow the official release at ratio 5: chunks of 510 tokens, LoRA rank 128 with scale
    ``lora_alpha / lora_rank = 2`` on ``q_proj`` and ``v_proj``.
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
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
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

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank

    @property
    def mem_size(self) -> int:
        """The largest number of anchors one full chunk holds (rows of the anchor-embedding table)."""
        from sac_rag.text.anchors import anchor_local_indices

        return len(anchor_local_indices(self.chunk_size, self.ratio))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SACConfig:
        d = dict(d)
        version = d.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"sac_config format_version {version} is newer than this sac_rag supports")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SACConfig keys: {sorted(unknown)}")
        return cls(**d)

    def save(self, directory: str | Path) -> None:
        atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> SACConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a sac_rag checkpoint directory")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is not a valid sac_rag config: {e}") from e
