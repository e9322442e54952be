"""``sac-rag scale``: index on a Ray cluster (``index``), build an IVF index (``ivf``), search a sharded store.

``sac-rag scale index PATH... --store DIR --ray [ADDRESS]`` is what ``sac-rag index --ray`` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from sac_rag.cli.args import MEMORY_DTYPES, add_json_flag, at_least, embedder_spec, positive_int
from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE
from sac_rag.corpus.passages import DEFAULT_PASSAGE_TOKENS

LOCAL = "local"


def register(sub) -> None:
    p = sub.add_parser("scale", help="index on a Ray cluster, sharded stores, IVF indexes")
    commands = p.add_subparsers(dest="scale_command", required=True)

    index = commands.add_parser("index", help="compress and index files with a pool of Ray actors")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (.txt, .md, .jsonl)")
    index.add_argument("--store", required=True, help="store directory (created if missing)")
    index.add_argument(
        "--ray", nargs="?", const=LOCAL, default=LOCAL, metavar="ADDRESS",
        help="Ray cluster to join (e.g. auto, or ray://HEAD:10001); default: start a local one",
    )  # fmt: skip
    index.add_argument("--shards", type=positive_int, default=1, help="store parts (>1: a sharded store)")
    index.add_argument(
        "--workers", type=positive_int, default=2, help="compressing actors (one GPU each where there are GPUs)"
    )
    index.add_argument("--unit-size", type=positive_int, default=64, help="passages per work unit (one shard each)")
    index.add_argument("--model", default=None, help="SAC checkpoint dir or base model (default: the offline default)")
    index.add_argument("--embedder", type=embedder_spec, default=None, help="sentence-transformers model name/path")
    index.add_argument(
        "--passage-tokens", type=at_least(8), default=DEFAULT_PASSAGE_TOKENS, help="max tokens per passage"
    )
    index.add_argument(
        "--memory-dtype", default=None, choices=MEMORY_DTYPES, help="of a new store (default: the model's memories')"
    )
    index.add_argument(
        "--batch-size", type=positive_int, default=COMPRESS_BATCH_SIZE, help="passages compressed per forward pass"
    )
    add_json_flag(index)
    index.set_defaults(func=index_on_ray)

    build = commands.add_parser("ivf", help="build an IVF (or IVF-PQ) index over a sharded store")
    build.add_argument("--store", required=True, help="sharded store directory")
    build.add_argument("--nlist", type=positive_int, default=None, help="inverted lists (default: 4 * sqrt(passages))")
    build.add_argument("--pq-m", type=positive_int, default=None, help="PQ sub-quantisers (default: no PQ, IVF-Flat)")
    build.add_argument("--sample", type=positive_int, default=100_000, help="training vectors")
    add_json_flag(build)
    build.set_defaults(func=build_ivf)

    search = commands.add_parser("search", help="search a sharded store")
    search.add_argument("query")
    search.add_argument("--store", required=True, help="sharded store directory")
    search.add_argument("-k", type=positive_int, default=5, help="passages to return")
    search.add_argument("--nprobe", type=positive_int, default=16, help="IVF lists probed (when an IVF index is fresh)")
    add_json_flag(search)
    search.set_defaults(func=search_sharded)


def index_on_ray(args: argparse.Namespace) -> int:
    """Run an index job on Ray from ``sac-rag scale index`` or ``sac-rag index --ray`` arguments."""
    from sac_rag.scale import index_with_ray

    address = None if args.ray in (None, LOCAL) else args.ray
    report = index_with_ray(
        [Path(p) for p in args.paths],  # always files: a missing one is an error, never a text
        args.store,
        address,
        model=args.model,
        embedder=args.embedder,
        memory_dtype=args.memory_dtype,
        shards=getattr(args, "shards", 1),
        workers=getattr(args, "workers", 2),
        unit_size=getattr(args, "unit_size", 64),
        batch_size=args.batch_size,
        passage_tokens=args.passage_tokens,
    )
    if getattr(args, "json", False):
        print(json.dumps({**dataclasses.asdict(report), "passages_per_s": report.passages_per_s}))
        return 0
    print(
        f"{report.passages} passages ({report.compressed} new texts in {report.units} units) -> {report.store} "
        f"in {report.seconds:.1f}s with {report.workers} Ray workers: {report.passages_per_s:.1f} passages/s"
    )
    return 0


def build_ivf(args: argparse.Namespace) -> int:
    from sac_rag.scale import ShardedStore

    with ShardedStore.open(args.store) as store:
        state = store.build_ivf(args.nlist, args.pq_m, sample=args.sample)
    if args.json:
        print(json.dumps(state))
        return 0
    kind = f"IVF-PQ (m={state['pq_m']})" if state["pq_m"] else "IVF-Flat"
    print(f"{kind} with {state['nlist']} lists over {state['vectors']} passages in {args.store}/ivf")
    return 0


def search_sharded(args: argparse.Namespace) -> int:
    from sac_rag.scale import ShardedStore

    with ShardedStore.open(args.store, nprobe=args.nprobe) as store:
        hits = store.search(args.query, args.k)
    if args.json:
        print(json.dumps([dataclasses.asdict(hit) for hit in hits]))
        return 0
    for hit in hits:
        print(f"{hit.score:.3f}  [{hit.id}]  {hit.text[:100]}")
    return 0
