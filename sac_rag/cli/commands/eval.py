"""``sac-rag eval``: SAC against its baselines on QA data, resumable; see docs/evaluation.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from sac_rag.cli.args import at_least, positive_int

DEFAULT_METHODS = ("raw", "no_context", "sac", "compact", "select", "truncate", "drop", "full_kv", "full_ft")


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate SAC against baselines (EM/F1, ROUGE-1, time to first token)",
        description="Answer QA questions with every method on the same base model, score them and write "
        "results.json, results.md, plots and predictions.jsonl into --out. Re-running with the same --out "
        "skips the predictions already made (add methods or questions freely).",
    )
    p.add_argument("--data", nargs="+", required=True, help="MRQA .jsonl(.gz) or SQuAD .json files")
    p.add_argument("--limit", type=positive_int, default=None, help="first N questions of each file")
    p.add_argument(
        "--sac",
        action="append",
        default=None,
        metavar="CHECKPOINT_DIR",
        help="a SAC checkpoint directory, or 'default' (repeatable; default: default)",
    )
    p.add_argument("--full-ft", action="append", default=[], metavar="DIR", help="PEFT LoRA adapter (raw-context QA)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help=f"any of {' '.join(DEFAULT_METHODS)} or an installed extra method (entry point group "
        "sac_rag.eval_methods); default: all, installed extras included (full_ft only with --full-ft)",
    )
    p.add_argument(
        "--ratios",
        type=positive_int,
        nargs="+",
        default=None,
        help="budgets of truncate/drop/compact/select: 1/R of the passage (default: SAC's)",
    )
    p.add_argument(
        "--distractors",
        type=at_least(0),
        default=0,
        metavar="N",
        help="set each question's passage among N other passages of its file, each encoded on its own and "
        "composed (the multi-passage setting; reported as '<dataset> +N distractors'; default 0)",
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=24)
    p.add_argument("--out", required=True, help="output directory (predictions are appended here)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.eval.build import build_methods, load_sac
    from sac_rag.eval.distractors import with_distractors
    from sac_rag.eval.evaluate import evaluate, load_examples
    from sac_rag.eval.plugins import installed_methods

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    examples = with_distractors(load_examples(args.data, args.limit), args.distractors)
    names = args.methods or [m for m in DEFAULT_METHODS if m != "full_ft" or args.full_ft] + list(installed_methods())
    sac_models = [load_sac(spec) for spec in args.sac or ["default"]]
    methods = build_methods(names, sac_models, full_ft=args.full_ft, ratios=args.ratios or ())
    # the files by name: a results file names no path of the machine it ran on
    info = {"data": [Path(d).name for d in args.data], "limit": args.limit, "sac": args.sac or ["default"]}
    if args.distractors:
        info["distractors"] = args.distractors
    summary, files = evaluate(
        methods,
        examples,
        args.out,
        max_new_tokens=args.max_new_tokens,
        progress=not args.no_progress,
        info=info,
    )
    from sac_rag.eval.report import markdown

    print(markdown(summary))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
