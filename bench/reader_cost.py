"""What the reader adapter costs at decode time: TTFT and decode speed with the reader on vs off.

The same weights, the same prompts (k SAC memories + question; the same passages as raw text), decoded
by the model's decoder with its reader adapter on and with it off (the plain base), interleaved
round-robin in one run; medians over ``--repeats``. A model without a reader gets a fresh one of
``--rank`` (a LoRA costs the same whatever its values). Ratios > 1 mean the reader is slower.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import QUESTION, answer_times, interleaved, parser, passages, report, setup, table, timed_answer
from bench.ttft import raw_prompt
from sac_rag.model import SACModel


def measure(model: SACModel, texts: Sequence[str], k: int, new_tokens: int, repeats: int) -> dict:
    """TTFT / total / decode speed per prompt kind and reader state, and the reader-on / reader-off ratios."""
    prompts = {
        "sac": model.generator().build_prompt(QUESTION, memories=model.compress(list(texts[:k]))),
        "raw": raw_prompt(model, texts[:k]),
    }
    decoders = {"reader": model.generator().decoder, "base": model.generator(reader=False).decoder}
    fns = {f"{p}_{d}": timed_answer(dec, seg, new_tokens) for p, seg in prompts.items() for d, dec in decoders.items()}
    row: dict = {"k": k}
    for name, times in interleaved(fns, repeats).items():
        row.update(answer_times(name, times, new_tokens))
    for p in prompts:
        row[f"ttft_{p}_reader_over_base"] = row[f"ttft_ms_{p}_reader"] / row[f"ttft_ms_{p}_base"]
        row[f"decode_{p}_base_over_reader"] = row[f"decode_tok_s_{p}_base"] / row[f"decode_tok_s_{p}_reader"]
    return row


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--rank", type=int, default=32, help="rank of the fresh reader given to a model without one")
    args = p.parse_args(argv)
    model = setup(args)
    fresh = not model.config.has_reader
    if fresh:
        model.add_reader(rank=args.rank)
    row = measure(model, passages(args.data, args.k), args.k, args.new_tokens, args.repeats)
    cols = [c for c in row if c.startswith(("k", "ttft", "decode"))]
    info = {"reader_rank": model.config.reader_rank, "fresh_reader": fresh, "new_tokens": args.new_tokens}
    info["repeats"] = args.repeats
    report("reader_cost", {**info, "row": row}, f"{info}\n\n" + table([row], cols), args.out)


if __name__ == "__main__":
    main()
