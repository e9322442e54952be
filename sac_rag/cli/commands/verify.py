"""``sac-rag verify --store DIR``: check every shard checksum and memory CRC; exit 1 naming any damaged file."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("verify", help="check a store's files; exit code 1 if any is damaged")
    p.add_argument("--store", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.store import MemoryStore

    with MemoryStore.open(args.store) as store:
        report = store.verify(progress=sys.stderr.isatty())
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"damaged: {problem}", file=sys.stderr)
    checked = ", ".join(f"{n} {what}" for what, n in report.checked.items())
    print(f"{'ok' if report.ok else 'DAMAGED'}: checked {checked}")
    return 0 if report.ok else 1
