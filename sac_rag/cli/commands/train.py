"""``sac-rag train``: train a SAC compressor (stage ``lm`` or ``qa``) or the Full-FT reference.

Re-running the same command on the same ``--output`` resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

HELP = {
    "task": "sac: a SAC compressor; fullft: the raw-context LoRA reference",
    "stage": "lm: continuation pretraining on plain text; qa: QA fine-tuning",
    "train_files": "QA files (MRQA .jsonl(.gz), SQuAD .json) or, for --stage lm, .txt files too",
    "init_checkpoint": "start from this SAC checkpoint (e.g. the stage-1 output's final/)",
    "attention_sink": "true/false: the decoder reads the BOS token's K/V before the memories "
    "(default: as the --init-checkpoint has it; off for a fresh compressor)",
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


def _type(annotation) -> Callable[[str], object]:
    """The argparse type of a config field (annotations are strings: ``int``, ``float | None``, ...)."""
    text = str(annotation)
    if text.startswith("bool"):
        return _bool
    return float if "float" in text else int if text.startswith("int") else str


def register(sub) -> None:
    from sac_rag.config import SACConfig
    from sac_rag.training.config import TRAINED_SAC_FIELDS, TrainConfig, fresh_compressor

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
        kind = _type(f.type)
        default = defaults[f.name].default
        p.add_argument(_flag(f.name), type=kind, default=None, help=HELP.get(f.name, f"default: {default}"))
    compressor = fresh_compressor()
    for f in fields(SACConfig):  # the compressor of a fresh run (TrainConfig.sac)
        if f.name in TRAINED_SAC_FIELDS:
            default = getattr(compressor, f.name)
            help = f"{HELP[f.name]}; " if f.name in HELP else ""
            many = {"nargs": "+"} if str(f.type).startswith("tuple") else {"type": _type(f.type)}
            p.add_argument(_flag(f.name), **many, default=None, help=f"{help}default: {default!r}")
    p.add_argument("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.training.config import CONFIG_NAME, TRAINED_SAC_FIELDS, TrainConfig
    from sac_rag.training.pipeline import train

    out = Path(args.output)
    values: dict = {}
    if args.config:
        values.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    elif (out / CONFIG_NAME).is_file():
        values.update(TrainConfig.load(out).to_dict())  # resuming: the saved run's settings
    for name in [f.name for f in fields(TrainConfig)] + list(TRAINED_SAC_FIELDS):
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v  # compressor fields flat: TrainConfig.from_dict puts them into sac
    values["output_dir"] = str(out)
    cfg = TrainConfig.from_dict(values)
    if (out / CONFIG_NAME).is_file():
        changed = cfg.same_run(TrainConfig.load(out))
        if changed:
            print(f"refusing to resume {out}: {changed} differ from the saved run (use a new --output)")
            return 2
    result = train(cfg, checkpoint_every=args.checkpoint_every)
    print(f"trained {result.state.step} steps ({result.state.examples} examples) in {result.state.elapsed_s:.0f}s")
    print(f"model: {result.final_dir}")
    return 0
