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
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

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
from sac_rag.model import SACModel
from sac_rag.text.prompt import bos_ids, context_ids, encode, question_ids

KINDS = ("full_kv", "sac", "compact")
PHASES = ("compose", "sink", "cache", "attention", "forward", "head", "sample")


def raw_prompt(model: SACModel, texts: Sequence[str]) -> list[list[int]]:
    """The raw-text segments: all passages in one context, then the question."""
    ctx = context_ids(model.tokenizer, "\n".join(texts), model.config)
    return [ctx + question_ids(model.tokenizer, QUESTION, model.config)]


def breakdown(decoder, prompts: dict[str, list], repeats: int) -> dict[str, dict[str, float]]:
    """Per prompt, the median thread CPU ms of each phase of its prefill and first token, and of the whole."""
    runs = interleaved({m: timed_prefill(decoder, s) for m, s in prompts.items()}, repeats)
    return {
        m: {p: 1000 * statistics.median(r.get(p, 0.0) for r in times) for p in (*PHASES, "total")}
        for m, times in runs.items()
    }


def measure(
    model: SACModel, texts: Sequence[str], ks: Sequence[int], new_tokens: int, repeats: int
) -> tuple[list[dict], list[dict]]:
    """One row per k (TTFT and total time per method, ratios) and one breakdown row per (k, method)."""
    generator = model.generator()
    decoder = generator.decoder
    memories = {
        "sac": model.compress(list(texts), kind="sac"),
        "compact": model.compress(list(texts), kind="compact"),
        "full_kv": model.encode_full_kv(list(texts)),
    }
    question = question_ids(model.tokenizer, QUESTION, model.config)
    rows, parts = [], []
    for k in ks:
        prompts = {
            "question": [bos_ids(model.tokenizer) + question],
            "raw": raw_prompt(model, texts[:k]),
            **{m: generator.build_prompt(QUESTION, memories=memories[m][:k]) for m in KINDS},
        }
        runs = interleaved({m: timed_answer(decoder, s, new_tokens) for m, s in prompts.items()}, repeats)
        row = {"k": k, "raw_tokens": len(prompts["raw"][0])}
        for m, times in runs.items():
            row.update(answer_times(m, times, new_tokens))
        timed = {m: prompts[m] for m in ("question", *KINDS)}
        timed["sac_no_lm"] = generator.memory_prompt(memories["sac"][:k], [question])
        cpu = breakdown(decoder, timed, repeats)
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
        row["ttft_raw_over_sac"] = row["ttft_ms_raw"] / row["ttft_ms_sac"]
        row["ttft_raw_over_compact"] = row["ttft_ms_raw"] / row["ttft_ms_compact"]
        row["ttft_fullkv_over_sac"] = row["ttft_ms_full_kv"] / row["ttft_ms_sac"]
        row["total_raw_over_sac"] = row["total_ms_raw"] / row["total_ms_sac"]
        row["decode_sac_over_raw"] = row["decode_tok_s_sac"] / row["decode_tok_s_raw"]
        rows.append(row)
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
    args = p.parse_args(argv)
    model = setup(args)
    if args.passage_tokens:
        texts = sized_passages(args.data, max(args.k), args.passage_tokens, model.tokenizer)
    else:
        texts = passages(args.data, max(args.k))
    rows, parts = measure(model, texts, args.k, args.new_tokens, args.repeats)
    ttft = ["k", "raw_tokens", "ttft_ms_question", "ttft_ms_raw", "ttft_ms_full_kv", "ttft_ms_sac", "ttft_ms_compact"]
    ttft += ["ttft_compact_over_question", "ttft_compact_over_fullkv", "ttft_sac_over_fullkv"]
    ttft += ["ttft_compact_over_sac", "ttft_raw_over_compact"]
    cpu = ["k", "cpu_ms_question", "cpu_ms_full_kv", "cpu_ms_sac", "cpu_ms_compact", "cpu_compact_over_question"]
    cpu += ["cpu_compact_over_fullkv", "cpu_sac_over_fullkv", "cpu_ms_lm"]
    answer = ["k", "total_ms_raw", "total_ms_full_kv", "total_ms_sac", "total_ms_compact", "total_raw_over_sac"]
    answer += ["decode_tok_s_raw", "decode_tok_s_full_kv", "decode_tok_s_sac", "decode_tok_s_compact"]
    phases = ["k", "method", *(f"{p}_ms" for p in (*PHASES, "total"))]
    avg_tokens = sum(len(encode(model.tokenizer, t)) for t in texts) / len(texts)
    info = {
        "ratio": model.config.ratio,
        "compact_keep": model.config.compact_keep,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "passage_tokens": args.passage_tokens,
        "mean_passage_tokens": round(avg_tokens, 1),
    }
    text = "\n\n".join(
        [
            str(info),
            "time to first token (wall ms, medians):\n" + table(rows, ttft),
            "first token in thread CPU ms (medians):\n" + table(rows, cpu),
            "where it goes (thread CPU ms, medians per phase):\n" + table(parts, phases),
            "whole answers:\n" + table(rows, answer),
        ]
    )
    report("ttft", {**info, "rows": rows, "breakdown": parts}, text, args.out)


if __name__ == "__main__":
    main()
