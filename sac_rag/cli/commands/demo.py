"""``sac-rag demo``: a store over Wikipedia articles (from gensim's test data), questions answered from it.

The store lives under ``$SAC_RAG_HOME/stores`` and is built once per model and memory kind; later runs
reuse it (an interrupted build resumes where it stopped). Each question is answered from the stored
memories (compact by default, SAC anchors with ``--memory-kind sac``), then from the same passages as raw
text, to show the time saved.
"""

from __future__ import annotations

import argparse
import time

from sac_rag.cli.args import MEMORY_DTYPES, add_model_flags, positive_int
from sac_rag.store import memory_dtype_for

QUESTIONS = (
    "What is the capital of Algeria?",
    "Who wrote Animal Farm?",
    "Who were the first humans to land on the Moon?",
    "When was Albert Einstein born?",
    "Which novel is Aldous Huxley best known for?",
    "Who was the 16th President of the United States?",
)


def register(sub) -> None:
    p = sub.add_parser("demo", help="build (or reuse) a Wikipedia store and answer questions from its memories")
    p.add_argument("--passages", type=positive_int, default=240, help="passages to index (default 240)")
    p.add_argument("-k", type=positive_int, default=3, help="passages retrieved per question (default 3)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, help="answer length limit (default 32)")
    add_model_flags(p, "SAC checkpoint dir or base model (default: the offline default)")
    p.add_argument("--store", default=None, help="store directory (default: under $SAC_RAG_HOME/stores)")
    p.add_argument(
        "--memory-dtype", default=None, choices=MEMORY_DTYPES, help="of the store (default: the model's memories')"
    )
    p.add_argument("--question", action="append", help="ask this instead of the built-in questions (repeatable)")
    p.set_defaults(func=run)


def build_store(model, path, n_passages: int, memory_dtype: str):
    """Open the demo store, indexing the first ``n_passages`` Wikipedia passages that are not in it yet."""
    from sac_rag.corpus import to_passages
    from sac_rag.corpus.demo_corpus import wikipedia_articles
    from sac_rag.store import MemoryStore

    store = MemoryStore.open_or_create(path, model, memory_dtype=memory_dtype)
    passages = to_passages(wikipedia_articles(), 160, model.count_tokens).head(n_passages)
    missing = len(set(passages.ids) - set(store.ids()))
    if missing:
        print(f"indexing {missing} of {len(passages)} Wikipedia passages (gensim test data) into {path} ...")
        t0 = time.perf_counter()
        store.upsert(passages.texts, passages.metadata, passages.ids)
        seconds = time.perf_counter() - t0
        print(f"indexed in {seconds:.1f}s ({missing / seconds:.1f} passages/s, embedding + compression)")
    else:
        print(f"reusing the store at {path}")
    stats = store.stats()
    print(
        f"store: {stats['passages']} passages, {stats['tokens_per_passage']:.0f} tokens and "
        f"{stats['anchors_per_passage']:.0f} entries per (layer, kv head) per passage (anchors, or kept tokens), "
        f"{stats['bytes_per_passage'] / 1024:.1f} KiB memory "
        f"per passage ({stats['memory_dtype']}) vs {stats['full_kv_bf16_bytes_per_passage'] / 1024:.1f} KiB full KV"
    )
    return store


def run(args: argparse.Namespace) -> int:
    from sac_rag.home import sac_home
    from sac_rag.model import SACModel
    from sac_rag.pipeline import SACRAG
    from sac_rag.pipeline.report import format_figures, format_sources

    t0 = time.perf_counter()
    model = SACModel.load(args.model, memory_kind=args.memory_kind)
    cfg = model.config
    kind = (
        f"compact, 1/{1 / cfg.compact_keep:.0f} of the full K/V"
        if cfg.memory_kind == "compact"
        else f"SAC r={cfg.ratio}"
    )
    print(f"model: {cfg.base_model} ({kind} memories, {model.fingerprint}), loaded in {time.perf_counter() - t0:.1f}s")
    memory_dtype = args.memory_dtype or memory_dtype_for(model)
    path = args.store or sac_home() / "stores" / f"demo-wikipedia-{model.fingerprint}-{memory_dtype}"
    with build_store(model, path, args.passages, memory_dtype) as store:
        rag = SACRAG(store, model, max_new_tokens=args.max_new_tokens)
        rag.query("warm-up", 1, max_new_tokens=1)  # first-call costs (embedder, kernels) out of the timings
        saved = []
        for question in args.question or QUESTIONS:
            sac = rag.query(question, args.k)
            raw = rag.query(question, args.k, raw_text=True)
            print(f"\nQ: {question}\nA (memories):     {sac.answer.strip()!r}")
            print(format_sources(sac))
            print(format_figures(sac.figures))
            print(f"A (raw text):     {raw.answer.strip()!r}")
            print(format_figures(raw.figures))
            before = raw.figures.prefill_s
            after = sac.figures.load_s + sac.figures.compose_s + sac.figures.prefill_s
            saved.append((before, after))
            print(
                f"  time to first token: {after:.3f}s from memories vs {before:.3f}s from raw text "
                f"(saved {before - after:.3f}s)"
            )
    total_raw, total_sac = sum(b for b, _ in saved), sum(a for _, a in saved)
    print(
        f"\n{len(saved)} questions: reading the passages took {total_sac:.2f}s from memories vs "
        f"{total_raw:.2f}s as raw text ({total_raw / max(total_sac, 1e-9):.1f}x faster)"
    )
    return 0
