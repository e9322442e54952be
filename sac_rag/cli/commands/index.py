"""``sac-rag index PATH... --store DIR``: split documents into passages, embed and compress them into a store."""

from __future__ import annotations

import argparse
import time

from sac_rag.corpus.passages import DEFAULT_PASSAGE_TOKENS


def register(sub) -> None:
    p = sub.add_parser("index", help="add .txt/.md/.jsonl files (or directories of them) to a store")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (.txt, .md, .jsonl with 'text')")
    p.add_argument("--store", required=True, help="store directory (created if missing)")
    p.add_argument("--model", default=None, help="SAC checkpoint dir or base model (default: the offline default)")
    p.add_argument("--embedder", default=None, help="sentence-transformers model name/path (default: offline MiniLM)")
    p.add_argument("--passage-tokens", type=int, default=DEFAULT_PASSAGE_TOKENS, help="max tokens per passage")
    p.add_argument("--memory-dtype", default="bfloat16", choices=["bfloat16", "float16", "float32", "int8"])
    p.add_argument("--batch-size", type=int, default=8, help="passages compressed per forward pass")
    p.add_argument("--commit-every", type=int, default=64, help="passages per durable commit (default 64)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run on a Ray cluster (docs/scale.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        from sac_rag.cli.commands.scale import index_on_ray

        return index_on_ray(args)
    from sac_rag.corpus import read_documents, to_passages
    from sac_rag.model import SACModel
    from sac_rag.store import MemoryStore

    documents = read_documents(args.paths)  # every file read and checked before the store is touched
    model = SACModel.load(args.model)
    passages = to_passages(documents, args.passage_tokens, model.count_tokens)
    if not passages:
        raise ValueError("the given files hold no text")
    with MemoryStore.open_or_create(args.store, model, args.embedder, memory_dtype=args.memory_dtype) as store:
        store.flush_every = args.commit_every
        before = len(store)
        t0 = time.perf_counter()
        store.upsert(
            passages.texts, passages.metadata, passages.ids, batch_size=args.batch_size, progress=args.progress
        )
        seconds = time.perf_counter() - t0
        stats = store.stats()
    per_passage = stats["bytes_per_passage"] / 1024
    full_kv = stats["full_kv_bf16_bytes_per_passage"] / 1024
    print(
        f"{len(documents)} documents -> {len(passages)} passages; {args.store} holds {stats['passages']} "
        f"(+{stats['passages'] - before}) after {seconds:.1f}s; memory {per_passage:.1f} KiB/passage "
        f"({stats['memory_dtype']}) vs full KV {full_kv:.1f} KiB (bf16)"
    )
    return 0
