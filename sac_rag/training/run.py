"""Build a run from a :class:`TrainConfig`: data, device, model and task; then train."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from sac_rag.config import SACConfig
from sac_rag.device import default_device
from sac_rag.home import DEFAULT_BASE_MODEL, resolve_model_path
from sac_rag.model import SACModel
from sac_rag.training.config import TRAINED_SAC_FIELDS, TrainConfig, fresh_compressor
from sac_rag.training.data import QAPool, TextPool, load_examples, load_texts
from sac_rag.training.tasks import FullFTTask, SACTask, Task, load_fullft_teacher
from sac_rag.training.teacher_cache import CACHE_NAME, TeacherCache
from sac_rag.training.trainer import Trainer, TrainResult


def pick_device(name: str | None) -> torch.device:
    """``name``, else the default device (CUDA when available, else CPU)."""
    return torch.device(name) if name else default_device()


def load_pool(cfg: TrainConfig) -> QAPool | TextPool:
    """The run's data: QA examples (stage ``qa``) or plain texts (stage ``lm``) from ``cfg.train_files``."""
    if cfg.stage == "qa":
        examples = load_examples(cfg.train_files, cfg.limit_examples)
        return QAPool(examples, seed=cfg.seed, eval_size=cfg.eval_size, max_distractors=cfg.max_distractors)
    texts = [t for path in cfg.train_files for t in load_texts(path, cfg.limit_examples)]
    texts = list(dict.fromkeys(texts))[: cfg.limit_examples or None]
    return TextPool(texts, seed=cfg.seed, eval_size=cfg.eval_size)


def _check_init_config(cfg: TrainConfig) -> None:
    """Refuse compressor settings that contradict the init checkpoint's (all at their defaults they are not
    asked for; the base model and the sink, ``config.INIT_OVERRIDES``, may change it)."""
    fresh = fresh_compressor()
    if all(getattr(cfg.sac, n) == getattr(fresh, n) for n in TRAINED_SAC_FIELDS):
        return
    own = SACConfig.load(cfg.init_checkpoint)
    differ = [n for n in TRAINED_SAC_FIELDS if getattr(cfg.sac, n) != getattr(own, n)]
    if differ:
        raise ValueError(
            f"the run sets {', '.join(f'{n}={getattr(cfg.sac, n)!r}' for n in differ)}, but the init checkpoint "
            f"{cfg.init_checkpoint} has {', '.join(f'{n}={getattr(own, n)!r}' for n in differ)}"
        )


def build_task(cfg: TrainConfig, device: torch.device) -> Task:
    """The model to train, in fp32 master weights (``precision='bf16'`` autocasts the compute)."""
    torch.manual_seed(cfg.seed)  # the fresh SAC embeddings and LoRA A are random
    sac = cfg.sac
    base = sac.base_model or DEFAULT_BASE_MODEL
    if cfg.task == "fullft":
        path = resolve_model_path(base)
        config = replace(sac, base_model=base)
        return FullFTTask(_load_base(base, device), AutoTokenizer.from_pretrained(path), config)
    if cfg.init_checkpoint:
        _check_init_config(cfg)
        model = SACModel.from_pretrained(cfg.init_checkpoint, base=sac.base_model, dtype=torch.float32, device=device)
        if sac.attention_sink:
            model.config.attention_sink = True
    else:
        model = SACModel.from_base(base, sac, dtype=torch.float32, device=device)
    if cfg.reader:
        model.add_reader(cfg.reader)
    teacher = None
    if cfg.distill_teacher:
        student_base = model.config.base_model
        teacher = load_fullft_teacher(cfg.distill_teacher, _load_base(student_base, device), student_base)
    return SACTask(
        model,
        teacher_cache=_teacher_cache(cfg, model),
        max_distractor_tokens=cfg.max_passage_tokens,
        lm_max_tokens=cfg.lm_max_tokens,
        distill_weight=cfg.distill_weight,
        distill_temperature=cfg.distill_temperature,
        teacher=teacher,
        train_reader=cfg.reader_lr > 0,
    )


def _teacher_cache(cfg: TrainConfig, model: SACModel) -> TeacherCache | None:
    """The run's cache of top-k teacher targets, for the teacher it distils from (None: no top-k distillation)."""
    if not cfg.distill_top_k:
        return None
    teacher = f"decoder-{model.decoder_fingerprint()}"
    if cfg.distill_teacher:
        adapter = hashlib.sha256((Path(cfg.distill_teacher) / "adapter_model.safetensors").read_bytes()).hexdigest()
        teacher = f"fullft-{adapter[:16]}+{teacher}"
    path = cfg.distill_cache or Path(cfg.output_dir) / CACHE_NAME
    return TeacherCache(path, teacher=teacher, k=cfg.distill_top_k)


def _load_base(name: str, device: torch.device) -> PreTrainedModel:
    """A fresh float32 copy of the base LM ``name`` (a library alias, Hugging Face id or local directory)."""
    path = resolve_model_path(name)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").to(device).eval()


def train(cfg: TrainConfig, task: Task | None = None, **run_kwargs) -> TrainResult:
    """Train as ``cfg`` says (``task`` overrides the model built from it, e.g. a tiny one in tests)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    pool = load_pool(cfg)
    task = task or build_task(cfg, device)
    return Trainer(cfg, task, pool, device).run(**run_kwargs)
