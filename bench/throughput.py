"""Compression throughput (passages/s when indexing) against a plain forward pass over the same text.

* SAC batched: ``compress(texts, kind="sac", batch_size=B)``; SAC one-by-one: one call per passage.
* compact: ``compress(texts, kind="compact")``, the default memory kind: per passage (it is not batched),
  the decoder's prefill and repeat pass, then selection and the refit.
* plain forward: the base decoder stack (adapter off, no K/V kept) over the same token sequences
  (``[BOS] "### Context:\\n" + text``), batched the same way (longest first, right-padded, masked),
  and one-by-one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.common import interleaved_medians, parser, passages, report, setup, table
from sac_rag.model import SACModel
from sac_rag.text.prompt import context_ids


@torch.inference_mode()
def plain_forward(model: SACModel, texts: Sequence[str], batch_size: int) -> None:
    """A plain forward pass of the base model's decoder stack over the context sequences."""
    seqs = sorted((context_ids(model.tokenizer, t, model.config) for t in texts), key=len, reverse=True)
    pad = model.tokenizer.pad_token_id or 0
    with model.adapter(False):
        for b0 in range(0, len(seqs), batch_size):
            batch = seqs[b0 : b0 + batch_size]
            n = max(len(s) for s in batch)
            ids = torch.tensor([s + [pad] * (n - len(s)) for s in batch], device=model.device)
            mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in batch], device=model.device)
            model.transformer(input_ids=ids, attention_mask=mask, use_cache=False)


def measure(model: SACModel, texts: Sequence[str], batch_size: int, repeats: int) -> dict:
    """Passages per second of each way, and the ratios the issue asks for."""
    texts = list(texts)
    fns = {
        "sac_batched": lambda: model.compress(texts, kind="sac", batch_size=batch_size),
        "compact": lambda: model.compress(texts, kind="compact"),
        "forward_batched": lambda: plain_forward(model, texts, batch_size),
        "sac_one_by_one": lambda: [model.compress([t], kind="sac") for t in texts],
        "forward_one_by_one": lambda: plain_forward(model, texts, 1),
    }
    seconds = interleaved_medians(fns, repeats)
    out = {"passages": len(texts), "batch_size": batch_size}
    out.update({f"{k}_passages_per_s": len(texts) / s for k, s in seconds.items()})
    out["sac_batched_over_forward_batched"] = seconds["forward_batched"] / seconds["sac_batched"]
    out["sac_batched_over_sac_one_by_one"] = seconds["sac_one_by_one"] / seconds["sac_batched"]
    out["compact_over_sac_batched"] = seconds["sac_batched"] / seconds["compact"]
    out["compact_over_forward_one_by_one"] = seconds["forward_one_by_one"] / seconds["compact"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--passages", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    model = setup(args)
    result = measure(model, passages(args.data, args.passages), args.batch_size, args.repeats)
    rows = [{"way": k.removesuffix("_passages_per_s"), "passages/s": v} for k, v in result.items() if "per_s" in k]
    text = f"{result}\n\n" + table(rows, ["way", "passages/s"])
    report("throughput", result, text, args.out)


if __name__ == "__main__":
    main()
