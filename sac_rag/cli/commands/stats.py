"""``sac-rag stats --store DIR``: counts, sizes and compression figures of a store."""

from __future__ import annotations

import argparse
import json

from sac_rag.cli.args import add_json_flag


def register(sub) -> None:
    p = sub.add_parser("stats", help="show a store's counts, sizes and compression figures")
    p.add_argument("--store", required=True)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.scale import open_store

    with open_store(args.store) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats))
    else:
        width = max(map(len, stats))
        for key, value in stats.items():
            value = json.dumps(value) if isinstance(value, (dict, list)) else value
            print(f"{key:<{width}}  {value:.1f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0
