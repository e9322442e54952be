"""Argument types shared by the sub-commands: argparse names the flag when a value is refused (exit code 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from sac_rag.config import MEMORY_KINDS
from sac_rag.store import MEMORY_DTYPES as STORE_DTYPES
from sac_rag.store.validate import check_query

MEMORY_DTYPES = tuple(STORE_DTYPES)  # the --memory-dtype choices: the store codec's names


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}" if high is None else f"integer in [{low}, {high}]"
    parse.bounds = (low, high)  # type: ignore[attr-defined]  # read by the tests that enumerate flags
    return parse


def number(low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number of at least ``low`` (more than ``low`` with ``above``), at most
    ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    parse.__name__ = f"number {'>' if above else '>='} {low}" + ("" if high is None else f" and <= {high}")
    parse.bounds = (low, high)  # type: ignore[attr-defined]
    return parse


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low``."""
    return integer(low)


positive_int = at_least(1)
#: A passage id, as stores keep them: an integer in [0, 2**63).
store_id = integer(0, 2**63 - 1)


def question(text: str) -> str:
    """An argparse ``type`` for a question: the store's own check of a query (a non-empty string of valid
    Unicode), at the command's entry, so a bad question stops the command before any store or model opens."""
    try:
        return check_query(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def embedder_spec(text: str) -> str:
    """An argparse ``type`` for ``--embedder``: a sentence-transformers model name, or a directory that exists
    (a value spelled as a path, ``/...``, ``./...``, ``~/...``, must name one)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a model name or directory, got an empty string")
    path = Path(text).expanduser()
    if not path.exists() and text.startswith(("/", ".", "~")):
        raise argparse.ArgumentTypeError(f"{text}: no such directory (give a sentence-transformers model or its dir)")
    return text


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
