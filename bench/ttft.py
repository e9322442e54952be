"""Time to first token, total answer time and decode speed of a RAG query over k passages, and where the first
token's time goes.

Ways to give the decoder k retrieved passages (SQuAD dev contexts):
* raw text: ``[BOS] "### Context:\\n" p1 "\\n" p2 ... + question`` prefilled from scratch;
* full-KV reuse: each passage's complete K/V precomputed (``encode_full_kv``), shifted into place;
* SAC: each passage's anchor K/V precomputed (``compress(kind="sac")``), then [LM] and the question;
* compact: each passage's compaction memory (``compress(kind="compact")``: per-head selection + refit at
  ``compact_keep`` of the full K/V's bytes), then the question;
* question only: ``[BOS]`` + the question sequence the memory prompts end with (its template included), no
  passage: the floor every memory kind is measured against (the same tokens to run, nothing to attend to).
Memories are computed before timing (index time). TTFT = prefill + first greedy token; the total
answer time generates exactly ``--new-tokens`` tokens (no stop token), so every method decodes as much;
both come from the same runs (methods interleaved round-robin, medians over ``--repeats``), and the
decode speed is (new tokens - 1) / (total - TTFT) per run.

The breakdown times the prefill and first token of each memory kind again, in the CPU time of the calling thread
(``time.thread_time``: what the question cost, whatever else loads the machine; one torch thread does all the
work), per phase: compose (layout, keys rotated into place), sink (the attention sink's K/V), cache (memories
into the cache, joined with the question's K/V), attention (every layer's attention, over the memories and the
question, with the compaction bias), forward (the rest of the decoder's forward), head (LM head), sample
(argmax). ``lm`` is what [LM] costs SAC: its breakdown total less that of the same prompt without [LM].

``--from-store`` adds each memory kind as a store hands it out (methods ``<kind>_store``): its k memories written
once into a :class:`~sac_rag.store.MemoryStore` of the dtype a real store holds that kind in (int8 for int8 compact
memories, bfloat16 for SAC and full K/V: :func:`store_dtype`), and every timed run reads them afresh with
``store.memories(ids)`` (a question's read: shard views, checksums, decoding), inside its TTFT and, as the ``read``
phase, inside its breakdown; the rest of the prompt is the held memories' own.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import tempfile
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    QUESTION,
    answer_times,
    interleaved,
    parser,
    passages,
    report,
    setup,
    sized_passages,
    table,
    timed_answer,
    timed_prefill,
)
from sac_rag.decoding.phases import Phases, timed
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel
from sac_rag.store import MemoryStore
from sac_rag.store.codec import DEFAULT_MEMORY_DTYPE, memory_dtype_for, pack_memory
from sac_rag.store.digest import content_hash
from sac_rag.store.manifest import MemoryRow
from sac_rag.store.shards import tensors_crc
from sac_rag.text.prompt import bos_ids, context_ids, encode, question_ids

KINDS = ("full_kv", "sac", "compact")
PHASES = ("compose", "sink", "cache", "attention", "forward", "head", "sample")
STORE_PHASES = ("read", *PHASES)  # a store-read method's phases: the store read first


def raw_prompt(model: SACModel, texts: Sequence[str]) -> list[list[int]]:
    """The raw-text segments: all passages in one context, then the question."""
    ctx = context_ids(model.tokenizer, "\n".join(texts), model.config)
    return [ctx + question_ids(model.tokenizer, QUESTION, model.config)]


def store_dtype(model: SACModel, kind: str) -> str:
    """The dtype a real store holds ``kind``'s memories in: what :func:`memory_dtype_for` picks for a model making
    that kind (full K/V, which no store makes, in the default)."""
    if kind == "full_kv":
        return DEFAULT_MEMORY_DTYPE
    return memory_dtype_for(types.SimpleNamespace(config=dataclasses.replace(model.config, memory_kind=kind)))


def _no_embedding(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 4), np.float32)  # read by id only: no search


_no_embedding.name = "bench-ttft-none"


def write_store(
    model: SACModel, kind: str, memories: Sequence[MemoryChunk], path: str | Path
) -> tuple[MemoryStore, list[int]]:
    """A new store at ``path`` in :func:`store_dtype` holding ``memories`` as they are (not compressed again), one
    passage each; the store and the passages' ids, in order."""
    store = MemoryStore.create(path, model, _no_embedding, store_dtype(model, kind))
    tensors: dict[str, torch.Tensor] = {}
    rows, passages = [], []
    for n, chunk in enumerate(memories):
        h = content_hash(f"{kind} memory {n}")
        stored = {f"{h}.{s}": t for s, t in pack_memory(chunk, store.memory_dtype).items()}
        tensors.update(stored)
        nbytes = sum(t.numel() * t.element_size() for t in stored.values())
        per_head = round(chunk.entries_per_head)
        rows.append(
            MemoryRow(h, "", chunk.length, per_head, chunk.offset, nbytes, tensors_crc(stored.values()), chunk.meta)
        )
        passages.append((n + 1, h, f"{kind} memory {n}", {}, np.ones(4, np.float32) / 2))
    with store.writing():
        generation = store.record_group([(*store.write_shard(tensors), rows)], passages)
        store.rebuild_index(generation)
    return store, [n + 1 for n in range(len(memories))]


def from_store(store: MemoryStore, ids: list[int], prompt: list, phases: Phases | None = None) -> list:
    """``prompt`` with its memories read afresh from ``store`` (``ids``, in the prompt's order)."""
    with timed(phases, "read"):
        chunks = iter(store.memories(ids))
    return [next(chunks) if isinstance(s, MemoryChunk) else s for s in prompt]


def breakdown(decoder, prompts: dict[str, list | Callable], repeats: int) -> dict[str, dict[str, float]]:
    """Per prompt, the median thread CPU ms of each phase of its prefill and first token, and of the whole (a
    callable: one that makes the segments within the timing, e.g. :func:`from_store`)."""
    runs = interleaved({m: timed_prefill(decoder, s) for m, s in prompts.items()}, repeats)
    return {
        m: {p: 1000 * statistics.median(r.get(p, 0.0) for r in times) for p in (*STORE_PHASES, "total")}
        for m, times in runs.items()
    }


def measure(
    model: SACModel,
    texts: Sequence[str],
    ks: Sequence[int],
    new_tokens: int,
    repeats: int,
    store_dir: str | Path | None = None,
) -> tuple[list[dict], list[dict]]:
    """One row per k (TTFT and total time per method, ratios) and one breakdown row per (k, method); with
    ``store_dir``, each memory kind read from a store there too (methods ``<kind>_store``, see the module's doc)."""
    generator = model.generator()
    decoder = generator.decoder
    memories = {
        "sac": model.compress(list(texts), kind="sac"),
        "compact": model.compress(list(texts), kind="compact"),
        "full_kv": model.encode_full_kv(list(texts)),
    }
    stores = {}
    if store_dir is not None:
        stores = {m: write_store(model, m, memories[m], Path(store_dir) / m) for m in KINDS}
    question = question_ids(model.tokenizer, QUESTION, model.config)
    rows, parts = [], []
    for k in ks:
        prompts = {
            "question": [bos_ids(model.tokenizer) + question],
            "raw": raw_prompt(model, texts[:k]),
            **{m: generator.build_prompt(QUESTION, memories=memories[m][:k]) for m in KINDS},
        }
        answers = {m: timed_answer(decoder, s, new_tokens) for m, s in prompts.items()}
        prefills: dict[str, list | Callable] = {m: prompts[m] for m in ("question", *KINDS)}
        for m, (store, ids) in stores.items():
            read = functools.partial(from_store, store, ids[:k], prompts[m])  # the memories read within each run
            answers[f"{m}_store"] = timed_answer(decoder, read, new_tokens)
            prefills[f"{m}_store"] = read
        runs = interleaved(answers, repeats)
        row = {"k": k, "raw_tokens": len(prompts["raw"][0])}
        for m, times in runs.items():
            row.update(answer_times(m, times, new_tokens))
        prefills["sac_no_lm"] = generator.memory_prompt(memories["sac"][:k], [question])
        cpu = breakdown(decoder, prefills, repeats)
        for m, phases in cpu.items():
            row[f"cpu_ms_{m}"] = phases["total"]
            if m != "sac_no_lm":
                parts.append({"k": k, "method": m, **{f"{p}_ms": v for p, v in phases.items()}})
        row["cpu_ms_lm"] = row["cpu_ms_sac"] - row.pop("cpu_ms_sac_no_lm")
        for m in KINDS:
            row[f"ttft_{m}_over_question"] = row[f"ttft_ms_{m}"] / row["ttft_ms_question"]
            row[f"cpu_{m}_over_question"] = row[f"cpu_ms_{m}"] / row["cpu_ms_question"]
        for m in ("sac", "compact"):
            row[f"ttft_{m}_over_fullkv"] = row[f"ttft_ms_{m}"] / row["ttft_ms_full_kv"]
            row[f"cpu_{m}_over_fullkv"] = row[f"cpu_ms_{m}"] / row["cpu_ms_full_kv"]
        row["ttft_compact_over_sac"] = row["ttft_ms_compact"] / row["ttft_ms_sac"]
        if stores:
            for unit in ("ttft", "cpu"):
                c, s, f = (row[f"{unit}_ms_{m}_store"] for m in ("compact", "sac", "full_kv"))
                row[f"{unit}_compact_store_over_sac_store"] = c / s
                row[f"{unit}_compact_store_over_fullkv_store"] = c / f
                row[f"{unit}_sac_store_over_sac"] = s / row[f"{unit}_ms_sac"]
                row[f"{unit}_compact_store_over_compact"] = c / row[f"{unit}_ms_compact"]
        row["ttft_raw_over_sac"] = row["ttft_ms_raw"] / row["ttft_ms_sac"]
        row["ttft_raw_over_compact"] = row["ttft_ms_raw"] / row["ttft_ms_compact"]
        row["ttft_fullkv_over_sac"] = row["ttft_ms_full_kv"] / row["ttft_ms_sac"]
        row["total_raw_over_sac"] = row["total_ms_raw"] / row["total_ms_sac"]
        row["decode_sac_over_raw"] = row["decode_tok_s_sac"] / row["decode_tok_s_raw"]
        rows.append(row)
    for store, _ in stores.values():
        store.close()
    return rows, parts


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument(
        "--passage-tokens",
        type=int,
        default=None,
        help="cut the contexts into passages of this many tokens (a RAG chunk size); default: one SQuAD context each",
    )
    p.add_argument(
        "--from-store",
        action="store_true",
        help="also time each memory kind read from a store within every run (methods <kind>_store, phase 'read')",
    )
    args = p.parse_args(argv)
    model = setup(args)
    if args.passage_tokens:
        texts = sized_passages(args.data, max(args.k), args.passage_tokens, model.tokenizer)
    else:
        texts = passages(args.data, max(args.k))
    with tempfile.TemporaryDirectory(prefix="bench-ttft-") as tmp:
        store_dir = tmp if args.from_store else None
        rows, parts = measure(model, texts, args.k, args.new_tokens, args.repeats, store_dir)
    ttft = ["k", "raw_tokens", "ttft_ms_question", "ttft_ms_raw", "ttft_ms_full_kv", "ttft_ms_sac", "ttft_ms_compact"]
    ttft += ["ttft_compact_over_question", "ttft_compact_over_fullkv", "ttft_sac_over_fullkv"]
    ttft += ["ttft_compact_over_sac", "ttft_raw_over_compact"]
    cpu = ["k", "cpu_ms_question", "cpu_ms_full_kv", "cpu_ms_sac", "cpu_ms_compact", "cpu_compact_over_question"]
    cpu += ["cpu_compact_over_fullkv", "cpu_sac_over_fullkv", "cpu_ms_lm"]
    answer = ["k", "total_ms_raw", "total_ms_full_kv", "total_ms_sac", "total_ms_compact", "total_raw_over_sac"]
    answer += ["decode_tok_s_raw", "decode_tok_s_full_kv", "decode_tok_s_sac", "decode_tok_s_compact"]
    phases = ["k", "method", *(f"{p}_ms" for p in (*(STORE_PHASES if args.from_store else PHASES), "total"))]
    store_text = []
    if args.from_store:
        stored = [f"ttft_ms_{m}_store" for m in ("full_kv", "sac", "compact")]
        stored += ["ttft_compact_store_over_sac_store", "ttft_compact_store_over_fullkv_store"]
        stored += ["ttft_compact_store_over_compact", "ttft_sac_store_over_sac"]
        store_cpu = [c.replace("ttft", "cpu") for c in stored]
        store_text = [
            "read from a store within the timing (wall ms, medians):\n" + table(rows, ["k", *stored]),
            "read from a store, thread CPU ms (medians):\n" + table(rows, ["k", *store_cpu]),
        ]
    avg_tokens = sum(len(encode(model.tokenizer, t)) for t in texts) / len(texts)
    info = {
        "ratio": model.config.ratio,
        "compact_keep": model.config.compact_keep,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "passage_tokens": args.passage_tokens,
        "from_store": {m: store_dtype(model, m) for m in KINDS} if args.from_store else None,
        "mean_passage_tokens": round(avg_tokens, 1),
    }
    text = "\n\n".join(
        [
            str(info),
            "time to first token (wall ms, medians):\n" + table(rows, ttft),
            "first token in thread CPU ms (medians):\n" + table(rows, cpu),
            "where it goes (thread CPU ms, medians per phase):\n" + table(parts, phases),
            *store_text,
            "whole answers:\n" + table(rows, answer),
        ]
    )
    report("ttft", {**info, "rows": rows, "breakdown": parts}, text, args.out)


if __name__ == "__main__":
    main()
