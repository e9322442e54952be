"""``sac-rag verify --store DIR [--repair]``: check every byte that can change an answer or a source.

Exit 1 naming each damaged file (and passage); ``--repair`` redoes what is damaged from what is intact
(see docs/store.md, "Integrity") and exits 0 when the store verifies afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys

from sac_rag.cli.args import add_json_flag, add_model_flags, embedder_spec


def register(sub) -> None:
    p = sub.add_parser("verify", help="check a store's files; exit code 1 if any is damaged")
    p.add_argument("--store", required=True)
    p.add_argument(
        "--repair",
        action="store_true",
        help="re-compress, re-embed and rebuild what is damaged from what is intact (passages whose text is "
        "damaged are removed and named: index their files again)",
    )
    add_model_flags(p, "the compressor, to re-compress damaged memories (with --repair)")
    p.add_argument(
        "--embedder", type=embedder_spec, default=None, help="embedder, to re-embed damaged embeddings (with --repair)"
    )
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sac_rag.scale import open_store
    from sac_rag.store import StoreCorrupted

    try:
        store = open_store(args.store, embedder=args.embedder)
    except StoreCorrupted as e:  # damage that stops the store from opening is a finding, not a failure
        return _print({"ok": False, "problems": [str(e)], "warnings": [], "checked": {}}, None, args.json)
    if args.repair and (args.model is not None or _needs_model(store)):
        from sac_rag.model import SACModel

        store.close()  # reopened with the compressor, which must be the one the store was built with
        store = open_store(args.store, SACModel.load(args.model, memory_kind=args.memory_kind), args.embedder)
    with store:
        if not args.repair:
            return _print(store.verify(progress=sys.stderr.isatty()).to_dict(), None, args.json)
        repair = store.repair(progress=sys.stderr.isatty())
        return _print(repair.after.to_dict(), repair.to_dict(), args.json)


def _needs_model(store) -> bool:
    """Whether repairing needs the compressor (some memory must be re-compressed)."""
    damage = store.verify().damage
    unsummed = {kind for kind, _ in damage.get("unsummed", [])}
    return any(damage.get(kind) for kind in ("memory", "shard", "shard_file", "no_memory", "no_shard")) or bool(
        unsummed & {"memory", "shard"}
    )


def _print(report: dict, repair: dict | None, as_json: bool) -> int:
    if as_json:
        print(json.dumps({**report, "repair": repair} if repair is not None else report))
        return 0 if report["ok"] else 1
    if repair is not None:
        print(
            f"repaired: {repair['copied']} memories copied, {repair['recompressed']} re-compressed, "
            f"{repair['reembedded']} embeddings redone, shards replaced {repair['shards_replaced']}, index rebuilt"
        )
        if repair["removed"]:
            print(f"removed passages {repair['removed']}: their text was damaged; index their files again")
        if repair["redigested"]:
            print(f"checksums recomputed for passages {repair['redigested']} (their text matches its hash)")
        if repair["triggers_restored"]:
            print("checksum triggers restored")
        for entry in repair["entries_replaced"]:
            print(f"replaced {entry}")
        for what in repair["unrecoverable"]:
            print(f"not recoverable from the store: {what}", file=sys.stderr)
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report["problems"]:
        print(f"damaged: {problem}", file=sys.stderr)
    checked = ", ".join(f"{n} {what}" for what, n in report["checked"].items())
    print(f"{'ok' if report['ok'] else 'DAMAGED'}: checked {checked}")
    return 0 if report["ok"] else 1
