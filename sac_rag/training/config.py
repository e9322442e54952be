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
# SACConfig fields a run may change on an init checkpoint (left at their defaults: the checkpoint's own)
INIT_OVERRIDES = ("base_model", "attention_sink")
# the SACConfig fields an init checkpoint's own config must agree with, unless the run leaves them all at their defaults
TRAINED_SAC_FIELDS = tuple(f.name for f in fields(SACConfig) if f.name not in INIT_OVERRIDES)


def fresh_compressor() -> SACConfig:
    """The compressor a run trains when it starts from none: the official design at LoRA rank 32 (scale 2),
    sized for CPU runs (the shipped default compressor has it)."""
    return SACConfig(lora_rank=32, lora_alpha=64.0)


def nest_sac_keys(d: dict) -> dict:
    """``d`` (a train config's keys) with the SACConfig fields it has at the top level moved into ``sac``.

    Older ``train_config.json`` files have them there: every compressor field in files from before ``sac``
    existed; ``base_model`` and ``attention_sink`` in files from before they moved into it, whose ``sac``
    holds them at their defaults (a top-level ``null``, "the library's or the init checkpoint's", is what
    that default means, so it is dropped). A field set both ways, to different values, is refused.
    """
    d = dict(d)
    sac = dict(d.pop("sac", None) or {})
    unset = fresh_compressor().to_dict()
    for f in fields(SACConfig):
        if f.name not in d:
            continue
        value = d.pop(f.name)
        if value is None and f.name in INIT_OVERRIDES:
            continue
        nested = _json(sac.get(f.name, unset[f.name]))
        if nested not in (_json(value), unset[f.name]):
            raise ValueError(
                f"{f.name} is set twice: {value!r} at the top level (as older train_config.json files have it) "
                f"and {sac[f.name]!r} in sac"
            )
        sac[f.name] = value
    if sac:
        d["sac"] = sac
    return d


def _json(value):
    return list(value) if isinstance(value, tuple) else value


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    ``task`` is ``sac`` (train a SAC compressor) or ``fullft`` (the raw-context LoRA reference).
    ``stage`` is ``lm`` (continuation pretraining from plain text) or ``qa`` (QA fine-tuning).
    A step is one optimizer update over ``grad_accum`` examples (batch size 1 each, as the official code).

    ``sac`` is the one home of the model's settings: the compressor a fresh run trains (ratio, chunk size,
    LoRA rank/alpha/targets, prompt strings; default :func:`fresh_compressor`), the base model it runs over
    (``base_model``; None: the library's default base), the attention sink and the shape of a fresh reader
    (``reader_rank`` > 0: a new reader LoRA for the decoder). With ``init_checkpoint`` the checkpoint's own
    config is trained: ``base_model`` and ``attention_sink`` (:data:`INIT_OVERRIDES`), when set, change it
    (another name for the base, the sink switched on; left at their defaults they are the checkpoint's), and
    every other field must agree with it or all be left at their defaults.

    ``reader`` is where a trained reader comes from: the decoder gets the PEFT adapter in that directory (its
    rank, alpha and targets are the adapter's, so ``sac.reader_rank`` stays 0); ``reader_lr`` trains it.
    """

    output_dir: str
    task: str = "sac"
    stage: str = "qa"
    train_files: list[str] = field(default_factory=list)
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
    device: str | None = None  # None: sac_rag.device.default_device()
    threads: int | None = None
    limit_examples: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sac, SACConfig):
            raise TypeError(f"sac must be a SACConfig, got {type(self.sac).__name__}")
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
        if self.task == "fullft" and (self.reader or self.reader_lr or self.sac.attention_sink or self.sac.has_reader):
            raise ValueError("reader, reader_lr, sac.attention_sink and sac.reader_rank apply to task 'sac' only")
        if self.reader and self.sac.has_reader:
            raise ValueError(
                "reader gives the decoder a trained adapter with its own rank, alpha and targets: "
                "leave sac.reader_rank at 0 (it asks for a fresh reader)"
            )
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

    def to_dict(self) -> dict:
        """JSON-ready fields, ``sac`` as a nested :meth:`SACConfig.to_dict`."""
        return {**asdict(self), "sac": self.sac.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of :meth:`to_dict`. SACConfig fields may also come at the top level, as older files have
        them (:func:`nest_sac_keys`); ``sac`` starts from :func:`fresh_compressor`."""
        d = nest_sac_keys(d)
        sac = {**fresh_compressor().to_dict(), **d.pop("sac", {})}
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
