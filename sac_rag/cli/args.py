"""Argument types shared by the sub-commands: argparse names the flag when a value is refused (exit code 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sac_rag.config import MEMORY_KINDS

MEMORY_DTYPES = ("bfloat16", "float16", "float32", "int8")


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = at_least(1)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_model_flags(parser: argparse.ArgumentParser, help: str) -> None:
    """``--model`` (a checkpoint dir or base model; ``help`` says what for) and ``--memory-kind``."""
    parser.add_argument("--model", default=None, help=help)
    parser.add_argument(
        "--memory-kind",
        choices=MEMORY_KINDS,
        default=None,
        help="memories to make or read: compact (the decoder's own K/V, cut and refitted) or sac (the SAC "
        "compressor's anchors); default: the model's own (compact for the offline default)",
    )
