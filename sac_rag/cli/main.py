"""Entry point of the ``sac-rag`` command: one sub-command per job."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sac-rag", description="RAG over SAC-compressed passage memories")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="compress a passage with the default model and answer questions from it")
    demo.add_argument("--max-new-tokens", type=int, default=32)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from sac_rag.cli.demo import run_single_passage_demo

        run_single_passage_demo(args.max_new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
