"""``sac-rag train``: train a SAC compressor (stage ``lm`` or ``qa``) or the Full-FT reference.

Re-running the same command on the same ``--output`` resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from sac_rag.cli.args import integer, number

HELP = {
    "task": "sac: a SAC compressor; fullft: the raw-context LoRA reference",
    "stage": "lm: continuation pretraining on plain text; qa: QA fine-tuning",
    "train_files": "QA files (MRQA .jsonl(.gz), SQuAD .json) or, for --stage lm, .txt files too",
    "init_checkpoint": "start from this SAC checkpoint (e.g. the stage-1 output's final/)",
    "base_model": "the base LM: a library alias, Hugging Face id or local directory "
    "(default: the --init-checkpoint's, else the library's default base)",
    "attention_sink": "true/false: the decoder reads the BOS token's K/V before the memories "
    "(default: as the --init-checkpoint has it, which a run may switch on but not off; off for a fresh compressor)",
    "reader_rank": "give the decoder a fresh reader LoRA of this rank (default 0: none; --reader gives a trained one)",
    "reader_alpha": "the fresh reader's LoRA alpha",
    "reader_targets": "projections the fresh reader adapts",
    "reader": "give the decoder this PEFT adapter as its reader (e.g. a --task fullft run's final/)",
    "reader_lr": "train the reader jointly at this learning rate (default 0: frozen)",
    "distill_teacher": "distil from the base with this Full-FT adapter (a --task fullft run's final/) "
    "reading the raw context; default: the base model as is",
    "distill_top_k": "distil from the teacher's top k tokens only, computed once per example and cached "
    "(default 0: its whole distribution, recomputed at every step)",
    "distill_cache": "the directory of those cached targets (default: teacher_topk/ in --output); "
    "runs with the same teacher can share one",
    "causal_compressor": "true/false: inside a chunk each token attends to earlier tokens only, "
    "not to the whole chunk as in the official design",
    "lora_targets": "projections the compressor's LoRA adapts",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


#: The range of every numeric field a flag sets, checked by the parser (exit 2) before anything loads.
RANGES: dict[str, Callable[[str], object]] = {
    "steps": integer(1), "grad_accum": integer(1), "lr": number(0, above=True), "embedding_lr": number(0),
    "weight_decay": number(0), "warmup_steps": integer(0), "min_lr_ratio": number(0, 1),
    "max_grad_norm": number(0, above=True), "seed": integer(0, 2**32 - 1), "max_distractors": integer(0),
    "max_passage_tokens": integer(1), "lm_max_tokens": integer(2), "reader_lr": number(0),
    "distill_weight": number(0), "distill_temperature": number(0, above=True), "distill_top_k": integer(0),
    "eval_size": integer(0), "eval_every": integer(1), "eval_generate": integer(0),
    "checkpoint_minutes": number(0, above=True), "max_minutes": number(0, above=True), "threads": integer(1),
    "limit_examples": integer(1), "ratio": integer(1), "chunk_size": integer(1), "lora_rank": integer(1),
    "lora_alpha": number(0, above=True), "compact_keep": number(0, 1, above=True), "reader_rank": integer(0),
    "reader_alpha": number(0, above=True),
}  # fmt: skip


def _type(name: str, annotation) -> Callable[[str], object]:
    """The argparse type of a config field (annotations are strings: ``int``, ``float | None``, ...): a number in
    its range from :data:`RANGES` (a field missing there: at least 0; a test lists such fields)."""
    text = str(annotation)
    if text.startswith("bool"):
        return _bool
    if "float" in text:
        return RANGES.get(name, number(0))
    return RANGES.get(name, integer(0)) if text.startswith("int") else str


def register(sub) -> None:
    from sac_rag.config import SACConfig
    from sac_rag.training.config import TrainConfig, fresh_compressor

    p = sub.add_parser("train", help="train a SAC compressor or the Full-FT reference (resumable)")
    p.add_argument("--output", "-o", required=True, help="run directory (checkpoints, metrics.jsonl, final/)")
    p.add_argument("--config", help="a train_config.json to start from (flags override it)")
    defaults = TrainConfig.__dataclass_fields__
    for f in fields(TrainConfig):
        if f.name in ("output_dir", "sac"):
            continue
        if f.name == "train_files":
            p.add_argument("--train-files", nargs="+", help=HELP[f.name])
            continue
        kind = _type(f.name, f.type)
        default = defaults[f.name].default
        p.add_argument(_flag(f.name), type=kind, default=None, help=HELP.get(f.name, f"default: {default}"))
    compressor = fresh_compressor()
    for f in fields(SACConfig):  # the model's settings (TrainConfig.sac): every field a flag of its own name
        default = f"default: {getattr(compressor, f.name)!r}"
        help = HELP.get(f.name, "")
        help = help if "default" in help else "; ".join(filter(None, (help, default)))
        many = {"nargs": "+"} if str(f.type).startswith("tuple") else {"type": _type(f.name, f.type)}
        p.add_argument(_flag(f.name), **many, default=None, help=help)
    p.add_argument("--checkpoint-every", type=integer(1), default=None, help="also checkpoint every N steps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.config import SACConfig
    from sac_rag.training.config import CONFIG_NAME, TrainConfig, nest_sac_keys
    from sac_rag.training.run import train

    out = Path(args.output)
    values: dict = {}
    if args.config:
        values.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    elif (out / CONFIG_NAME).is_file():
        values.update(TrainConfig.load(out).to_dict())  # resuming: the saved run's settings
    values = nest_sac_keys(values)  # a --config file may be an older one, SACConfig fields at the top level
    sac = values.setdefault("sac", {})
    for names, into in (([f.name for f in fields(TrainConfig)], values), ([f.name for f in fields(SACConfig)], sac)):
        for name in names:
            v = getattr(args, name, None)
            if v is not None:
                into[name] = v
    values["output_dir"] = str(out)
    cfg = TrainConfig.from_dict(values)
    if args.attention_sink is False and cfg.init_checkpoint and SACConfig.load(cfg.init_checkpoint).attention_sink:
        print(f"--attention-sink false: a run cannot switch off the attention sink of {cfg.init_checkpoint}")
        return 2
    if (out / CONFIG_NAME).is_file():
        changed = cfg.same_run(TrainConfig.load(out))
        if changed:
            print(f"refusing to resume {out}: {changed} differ from the saved run (use a new --output)")
            return 2
    result = train(cfg, checkpoint_every=args.checkpoint_every)
    print(f"trained {result.state.step} steps ({result.state.examples} examples) in {result.state.elapsed_s:.0f}s")
    print(f"model: {result.final_dir}")
    return 0
