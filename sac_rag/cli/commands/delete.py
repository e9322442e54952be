"""``sac-rag delete ID... --store DIR``: remove passages by id (all or none), optionally compacting after."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("delete", help="remove passages by id from a store")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.add_argument("--store", required=True)
    p.add_argument("--compact", action="store_true", help="then rewrite the shards without the deleted memories")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.store import MemoryStore

    with MemoryStore.open(args.store) as store:
        removed = store.delete(args.ids)
        print(f"deleted {removed} passages; {len(store)} left")
        if args.compact:
            result = store.compact()
            print(f"compacted: shards {result['shard_bytes_before']} -> {result['shard_bytes_after']} bytes")
    return 0
