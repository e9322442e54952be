"""``sac-rag index PATH... --store DIR``: split documents into passages, embed and compress them into a store."""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

from sac_rag.cli.args import MEMORY_DTYPES, add_json_flag, add_model_flags, at_least, embedder_spec, positive_int
from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE
from sac_rag.corpus.passages import DEFAULT_PASSAGE_TOKENS
from sac_rag.store import DEFAULT_MEMORY_DTYPE


def register(sub) -> None:
    p = sub.add_parser(
        "index",
        help="add .txt/.md/.jsonl files (or directories of them) to a store",
        description="Index files into a store. A file indexed again replaces its passages (however its path "
        "is spelled): changed passages are updated and those it no longer has are removed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (.txt, .md, .jsonl with 'text')")
    p.add_argument("--store", required=True, help="store directory (created if missing)")
    add_model_flags(p, "SAC checkpoint dir or base model (default: the offline default)")
    p.add_argument(
        "--embedder", type=embedder_spec, default=None,
        help="sentence-transformers model name/path (default: offline MiniLM)",
    )  # fmt: skip
    p.add_argument(
        "--passage-tokens", type=at_least(8), default=DEFAULT_PASSAGE_TOKENS, help="max tokens per passage (>= 8)"
    )
    p.add_argument(
        "--memory-dtype",
        default=None,
        choices=MEMORY_DTYPES,
        help=f"of a new store (default: int8 for int8 compact memories, else {DEFAULT_MEMORY_DTYPE}); must match",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=COMPRESS_BATCH_SIZE, help="passages compressed per forward pass"
    )
    p.add_argument("--commit-every", type=positive_int, default=64, help="passages per durable commit (default 64)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run on a Ray cluster (docs/scale.md)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        from sac_rag.cli.commands.scale import index_on_ray

        return index_on_ray(args)
    from sac_rag.corpus import read_documents
    from sac_rag.model import SACModel
    from sac_rag.store import MemoryStore

    documents = read_documents(args.paths)  # every file read and checked before the store is touched
    model = SACModel.load(args.model, memory_kind=args.memory_kind)
    # a new store takes passages of --passage-tokens (and at least its default); an existing one must take them
    store = MemoryStore.open_or_create(
        Path(args.store), model, args.embedder, args.memory_dtype, max_passage_tokens=args.passage_tokens
    )
    try:
        report = _index(store, documents, model, args)
    except BaseException:
        if store.created:  # a failed first run leaves no empty store behind (unless another writer uses it)
            store.remove_if_empty()
        store.close()
        raise
    store.close()
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['documents']} documents -> {report['passages']} passages; {args.store} holds "
            f"{report['stored']} (+{report['added']}) after {report['seconds']:.1f}s, "
            f"{report['removed']} stale removed; "
            f"memory {report['bytes_per_passage'] / 1024:.1f} KiB/passage ({report['memory_dtype']}) vs full KV "
            f"{report['full_kv_bf16_bytes_per_passage'] / 1024:.1f} KiB (bf16)"
        )
    return 0


def _index(store, documents, model, args: argparse.Namespace) -> dict:
    from sac_rag.corpus import index_documents
    from sac_rag.text.prompt import encode

    before = set(store.ids())
    t0 = time.perf_counter()
    result = index_documents(
        store, documents, args.passage_tokens, batch_size=args.batch_size, commit_every=args.commit_every,
        progress=args.progress, tokenize=functools.partial(encode, model.tokenizer),  # each passage tokenised once
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    stats = store.stats()
    return {
        "store": str(store.path),
        "documents": result.documents,
        "passages": result.passages,
        "removed": result.removed,
        "stored": stats["passages"],
        "added": len(set(store.ids()) - before),
        "seconds": seconds,
        **{k: stats[k] for k in ("memory_dtype", "bytes_per_passage", "full_kv_bf16_bytes_per_passage")},
    }
