"""Bytes stored per passage for every memory kind (SAC, compaction, full K/V), in bf16 and int8.

Sizes are those of the tensors the store's codec writes for a memory (``sac_rag.store.codec.pack_memory``:
K/V in the dtype, or Hadamard-rotated int8 values plus one float16 scale per (K/V, layer, kv head); the
positions; for a compaction memory its real entries only, each with its float16 bias and int16 position,
and the per-head entry counts). File headers are not included. ``compact`` is the model's compact memory
(int8 entries by default: meant for an int8 store), ``compact_bf16`` the same budget spent on bfloat16 entries.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

from bench.common import parser, passages, report, setup, table
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel
from sac_rag.store.codec import pack_memory
from sac_rag.text.prompt import context_ids

KINDS = ("sac", "compact", "compact_bf16", "full_kv")  # compact: the model's own (int8 by default)
DTYPES = ("bfloat16", "int8")


def stored_bytes(chunk: MemoryChunk, dtype: str) -> int:
    """Bytes of the chunk's tensors as the store packs them in ``dtype``."""
    return sum(t.numel() * t.element_size() for t in pack_memory(chunk, dtype).values())


def measure(model: SACModel, texts: Sequence[str]) -> dict:
    """Mean stored bytes per passage of each memory kind and dtype, and the full K/V's bf16 bytes over each."""
    texts = list(texts)
    bf16 = model.compactor(dtype="bfloat16")
    chunks = {
        "sac": model.compress(texts, kind="sac"),
        "compact": model.compress(texts, kind="compact"),
        "compact_bf16": [bf16.compact(context_ids(model.tokenizer, t, model.config)) for t in texts],
        "full_kv": model.encode_full_kv(texts),
    }
    full = chunks["full_kv"]
    out: dict = {"passages": len(texts), "mean_tokens": statistics.fmean(c.length for c in full)}
    for kind, made in chunks.items():
        out[f"mean_entries_per_head_{kind}"] = statistics.fmean(c.entries_per_head for c in made)
        for dtype in DTYPES:
            out[f"{kind}_{dtype}"] = statistics.fmean(stored_bytes(c, dtype) for c in made)
    out["full_kv_nbytes_bf16"] = statistics.fmean(c.full_kv_nbytes(torch.bfloat16) for c in full)
    for kind in KINDS:
        for dtype in DTYPES:
            out[f"full_bf16_over_{kind}_{dtype}"] = out["full_kv_nbytes_bf16"] / out[f"{kind}_{dtype}"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--passages", type=int, default=50)
    args = p.parse_args(argv)
    model = setup(args)
    result = measure(model, passages(args.data, args.passages))
    rows = [
        {
            "store": f"{kind} {dtype}",
            "entries/head": result[f"mean_entries_per_head_{kind}"],
            "KiB/passage": result[f"{kind}_{dtype}"] / 1024,
            "full KV bf16 / this": result[f"full_bf16_over_{kind}_{dtype}"],
        }
        for kind in KINDS
        for dtype in DTYPES
    ]
    info = {
        "ratio": model.config.ratio,
        "compact_keep": model.config.compact_keep,
        "compact_dtype": model.config.compact_dtype,
    }
    text = f"{info}, {result}\n\n" + table(rows, ["store", "entries/head", "KiB/passage", "full KV bf16 / this"])
    report("nbytes", {**info, **result}, text, args.out)


if __name__ == "__main__":
    main()
