"""TrainConfig: everything that defines a training run (saved as ``train_config.json`` in the run directory)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sac_rag.config import SACConfig
from sac_rag.io import atomic_write_text

CONFIG_NAME = "train_config.json"
TASKS = ("sac", "fullft")
STAGES = ("qa", "lm")
# SACConfig fields a run takes from elsewhere: the base model, attention sink and reader are TrainConfig's own
# fields, since they also apply to (and may change) an init checkpoint
RUN_SAC_FIELDS = ("base_model", "attention_sink", "reader_rank", "reader_alpha", "reader_targets")
# the compressor fields a run sets (also accepted flat, as train_config.json files before ``sac`` have them)
TRAINED_SAC_FIELDS = tuple(f.name for f in fields(SACConfig) if f.name not in RUN_SAC_FIELDS)


def fresh_compressor() -> SACConfig:
    """The compressor a run trains when it starts from none: the official design at LoRA rank 32 (scale 2),
    sized for CPU runs (the shipped default compressor has it)."""
    return SACConfig(lora_rank=32, lora_alpha=64.0)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    ``task`` is ``sac`` (train a SAC compressor) or ``fullft`` (the raw-context LoRA reference).
    ``stage`` is ``lm`` (continuation pretraining from plain text) or ``qa`` (QA fine-tuning).
    A step is one optimizer update over ``grad_accum`` examples (batch size 1 each, as the official code).
    ``sac`` is the compressor a fresh run trains (ratio, chunk size, LoRA rank/alpha/targets, prompt strings;
    default :func:`fresh_compressor`); with ``init_checkpoint`` the checkpoint's own config is trained
    and ``sac`` must agree with it or be left at its default. The base model, attention sink and reader
    are set by ``base_model``, ``attention_sink`` and ``reader``.
    """

    output_dir: str
    task: str = "sac"
    stage: str = "qa"
    train_files: list[str] = field(default_factory=list)
    base_model: str | None = None  # None: the library's default base
    init_checkpoint: str | None = None  # start from a saved SAC checkpoint (e.g. stage 1's output)
    sac: SACConfig = field(default_factory=fresh_compressor)
    steps: int = 100
    grad_accum: int = 4
    lr: float = 3e-4  # LoRA
    embedding_lr: float = 1e-3  # anchor and special embeddings
    weight_decay: float = 0.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    max_grad_norm: float = 1.0
    seed: int = 0
    max_distractors: int = 2  # each QA example: gold passage + 0..max_distractors random other passages
    max_passage_tokens: int = 400  # longer passages are cut (keeps CPU steps bounded)
    lm_max_tokens: int = 256  # stage 1: text tokens per example, first half compressed
    attention_sink: bool | None = None  # decoder reads the BOS K/V before the memories; None: the init checkpoint's
    reader: str | None = None  # give the decoder this PEFT adapter as its reader (e.g. a fullft run's final/)
    reader_lr: float = 0.0  # >0: train the reader jointly at this rate; 0: the reader (if any) stays frozen
    distill_weight: float = 0.0  # >0: add KL(teacher || student) on the target tokens, teacher reads the raw context
    distill_teacher: str | None = None  # a Full-FT adapter dir (the teacher: base + it); None: the base as is
    distill_temperature: float = 1.0
    distill_top_k: int = 0  # >0: distil from the teacher's top k only, computed once per example and cached
    distill_cache: str | None = None  # that cache's directory; None: teacher_topk/ in output_dir
    eval_size: int = 32  # held-out questions (whole contexts held out of the train files)
    eval_every: int = 25
    eval_generate: int = 0  # also greedy EM/F1 on this many held-out questions at each eval
    checkpoint_minutes: float = 5.0
    max_minutes: float | None = None  # stop (with a checkpoint and the final model) after this wall time
    precision: str = "fp32"  # or bf16 (autocast)
    device: str | None = None  # None: cuda if available, else cpu
    threads: int | None = None
    limit_examples: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.task == "fullft" and self.stage != "qa":
            raise ValueError("the Full-FT reference trains on QA only (stage 'qa')")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError("steps and grad_accum must be >= 1")
        if not self.train_files:
            raise ValueError("no train_files given")
        if self.reader_lr < 0:
            raise ValueError(f"reader_lr must be >= 0, got {self.reader_lr}")
        if self.task == "fullft" and (self.reader or self.reader_lr or self.attention_sink):
            raise ValueError("reader, reader_lr and attention_sink apply to task 'sac' only")
        if self.distill_teacher and (self.task != "sac" or self.distill_weight <= 0):
            raise ValueError("distill_teacher needs task 'sac' and distill_weight > 0")
        if self.distill_top_k < 0:
            raise ValueError(f"distill_top_k must be >= 0, got {self.distill_top_k}")
        if (self.distill_top_k or self.distill_cache) and self.distill_weight <= 0:
            raise ValueError("distill_top_k and distill_cache need distill_weight > 0")
        if self.distill_cache and not self.distill_top_k:
            raise ValueError("distill_cache needs distill_top_k > 0 (only top-k targets are cached)")
        if self.distill_top_k and self.reader_lr > 0 and not self.distill_teacher:
            raise ValueError("a cached teacher must stay frozen: with reader_lr > 0 the reader teaches and changes")
        if not isinstance(self.sac, SACConfig):
            raise TypeError(f"sac must be a SACConfig, got {type(self.sac).__name__}")
        default = SACConfig()
        for name in RUN_SAC_FIELDS:
            if getattr(self.sac, name) != getattr(default, name):
                home = "reader" if name.startswith("reader") else name
                raise ValueError(f"set the run's {name} with TrainConfig.{home}, not in sac")

    def to_dict(self) -> dict:
        """JSON-ready fields, ``sac`` as a nested :meth:`SACConfig.to_dict`."""
        return {**asdict(self), "sac": self.sac.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of :meth:`to_dict`. Compressor fields may also come flat (``"ratio": 10``, as files
        written before ``sac`` existed have them); flat ones override those in ``sac``, and both start
        from :func:`fresh_compressor`."""
        d = dict(d)
        sac = {**fresh_compressor().to_dict(), **(d.pop("sac", None) or {})}
        sac.update({name: d.pop(name) for name in TRAINED_SAC_FIELDS if name in d})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
        return cls(**d, sac=SACConfig.from_dict(sac))

    def save(self, directory: str | Path) -> None:
        """Write ``train_config.json`` into ``directory`` (atomically)."""
        atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> TrainConfig:
        """Read ``directory``'s ``train_config.json`` (either layout, see :meth:`from_dict`)."""
        return cls.from_dict(json.loads((Path(directory) / CONFIG_NAME).read_text(encoding="utf-8")))

    def same_run(self, other: TrainConfig) -> list[str]:
        """Fields that differ from ``other`` and would change the trajectory (run-control fields excluded)."""
        control = {"max_minutes", "checkpoint_minutes", "threads", "device", "output_dir", "distill_cache"}
        a, b = self._flat(), other._flat()
        return sorted(k for k in a if k not in control and a[k] != b[k])

    def _flat(self) -> dict:
        d = self.to_dict()
        sac = d.pop("sac")
        return {**d, **{f"sac.{k}": v for k, v in sac.items()}}
