"""``sac-rag delete ID... --store DIR``: remove passages by id (all or none), optionally compacting after."""

from __future__ import annotations

import argparse
import json

from sac_rag.cli.args import add_json_flag, store_id


def register(sub) -> None:
    p = sub.add_parser("delete", help="remove passages by id from a store")
    p.add_argument("ids", nargs="+", type=store_id, metavar="ID", help="passage ids (integers in [0, 2**63))")
    p.add_argument("--store", required=True)
    p.add_argument("--compact", action="store_true", help="then rewrite the shards without the deleted memories")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.scale import open_store

    with open_store(args.store) as store:
        report = {"deleted": store.delete(args.ids), "left": 0, "compacted": None}
        report["left"] = len(store)
        if args.compact:
            report["compacted"] = store.compact()
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"deleted {report['deleted']} passages; {report['left']} left")
    if report["compacted"]:
        result = report["compacted"]
        print(f"compacted: shards {result['shard_bytes_before']} -> {result['shard_bytes_after']} bytes")
    return 0
