"""Time to first token, total answer time and decode speed of a RAG query over k passages.

Three ways to give the decoder k retrieved passages (SQuAD dev contexts):
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
"""

from __future__ import annotations

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
)
from sac_rag.model import SACModel
from sac_rag.text.prompt import bos_ids, context_ids, encode, question_ids


def raw_prompt(model: SACModel, texts: Sequence[str]) -> list[list[int]]:
    """The raw-text segments: all passages in one context, then the question."""
    ctx = context_ids(model.tokenizer, "\n".join(texts), model.config)
    return [ctx + question_ids(model.tokenizer, QUESTION, model.config)]


def measure(model: SACModel, texts: Sequence[str], ks: Sequence[int], new_tokens: int, repeats: int) -> list[dict]:
    """One row per k: TTFT and total time per method, and the ratios against SAC."""
    decoder = model.decoder()
    sac = model.compress(list(texts), kind="sac")
    compact = model.compress(list(texts), kind="compact")
    full = model.encode_full_kv(list(texts))
    rows = []
    for k in ks:
        prompts = {
            "question": [bos_ids(model.tokenizer) + question_ids(model.tokenizer, QUESTION, model.config)],
            "raw": raw_prompt(model, texts[:k]),
            "full_kv": model.build_prompt(QUESTION, memories=full[:k]),
            "sac": model.build_prompt(QUESTION, memories=sac[:k]),
            "compact": model.build_prompt(QUESTION, memories=compact[:k]),
        }

        runs = interleaved({m: timed_answer(decoder, s, new_tokens) for m, s in prompts.items()}, repeats)
        row = {"k": k, "raw_tokens": len(prompts["raw"][0])}
        for m, times in runs.items():
            row.update(answer_times(m, times, new_tokens))
        for m in ("sac", "compact", "full_kv"):
            row[f"ttft_{m}_over_question"] = row[f"ttft_ms_{m}"] / row["ttft_ms_question"]
        row["ttft_compact_over_fullkv"] = row["ttft_ms_compact"] / row["ttft_ms_full_kv"]
        row["ttft_compact_over_sac"] = row["ttft_ms_compact"] / row["ttft_ms_sac"]
        row["ttft_raw_over_sac"] = row["ttft_ms_raw"] / row["ttft_ms_sac"]
        row["ttft_fullkv_over_sac"] = row["ttft_ms_full_kv"] / row["ttft_ms_sac"]
        row["total_raw_over_sac"] = row["total_ms_raw"] / row["total_ms_sac"]
        row["decode_sac_over_raw"] = row["decode_tok_s_sac"] / row["decode_tok_s_raw"]
        rows.append(row)
    return rows


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
    rows = measure(model, texts, args.k, args.new_tokens, args.repeats)
    cols = ["k", "raw_tokens", "ttft_ms_question", "ttft_ms_raw", "ttft_ms_full_kv", "ttft_ms_sac", "ttft_ms_compact"]
    cols += ["ttft_compact_over_question", "ttft_compact_over_fullkv", "ttft_compact_over_sac", "ttft_raw_over_sac"]
    cols += ["ttft_fullkv_over_sac", "total_ms_raw", "total_ms_full_kv", "total_ms_sac", "total_raw_over_sac"]
    cols += ["decode_tok_s_raw", "decode_tok_s_full_kv", "decode_tok_s_sac", "decode_sac_over_raw"]
    avg_tokens = sum(len(encode(model.tokenizer, t)) for t in texts) / len(texts)
    info = {
        "ratio": model.config.ratio,
        "compact_keep": model.config.compact_keep,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
    }
    info["passage_tokens"] = args.passage_tokens
    info["mean_passage_tokens"] = round(avg_tokens, 1)
    report("ttft", {**info, "rows": rows}, f"{info}\n\n" + table(rows, cols), args.out)


if __name__ == "__main__":
    main()
