"""``sac-rag ask QUESTION --store DIR``: answer from the stored memories of the nearest passages."""

from __future__ import annotations

import argparse
import json
import sys

from sac_rag.cli.args import add_json_flag, add_model_flags, embedder_spec, positive_int, question
from sac_rag.config import DEFAULT_MAX_NEW_TOKENS


def register(sub) -> None:
    p = sub.add_parser("ask", help="answer a question from a store's passage memories")
    p.add_argument("question", type=question, help="the question (checked here, before anything opens)")
    p.add_argument("--store", required=True, help="store directory")
    p.add_argument("-k", type=positive_int, default=5, help="passages to retrieve (default 5)")
    add_model_flags(p, "the SAC checkpoint/base model the store was built with")
    p.add_argument(
        "--embedder", type=embedder_spec, default=None, help="embedder (default: the one the store was built with)"
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"answer length limit (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    p.add_argument("--stream", action="store_true", help="print the answer while it is generated")
    p.add_argument("--raw-text", action="store_true", help="answer from the passages as plain text instead")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.model import SACModel
    from sac_rag.pipeline import SACRAG
    from sac_rag.pipeline.report import format_figures, format_sources
    from sac_rag.scale import open_store

    # opened once, before the model loads (a bad store path fails first); SACRAG checks the model against it
    with open_store(args.store, embedder=args.embedder) as store:
        model = SACModel.load(args.model, memory_kind=args.memory_kind)
        rag = SACRAG(store, model, max_new_tokens=args.max_new_tokens)
        if args.stream and not args.json:
            for piece in rag.stream(args.question, args.k, raw_text=args.raw_text):
                print(piece, end="", flush=True)
            print()
            result = rag.last_result
        else:
            result = rag.query(args.question, args.k, raw_text=args.raw_text)
            if not args.json:
                print(result.answer.strip())
    if args.json:
        sources = [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in result.sources]
        json.dump({"answer": result.answer, "sources": sources, "figures": result.figures.to_dict()}, sys.stdout)
        print()
    else:
        print("sources:")
        print(format_sources(result))
        print(format_figures(result.figures))
    return 0
