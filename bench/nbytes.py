"""Bytes stored per passage: SAC memory vs the passage's full KV cache, in bf16 and int8.

int8 sizes come from the store's codec (``sac_rag.store.codec.encode_kv``: Hadamard-rotated int8
values plus one float16 scale per (K/V, layer, head)), so they are exactly what the store writes for
the K/V tensors (file headers and the anchors' int64 positions not included).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

from bench.common import parser, passages, report, setup, table
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel
from sac_rag.store.codec import encode_kv


def kv_bytes(chunk: MemoryChunk, dtype: str) -> int:
    """Bytes of the chunk's K/V as the store encodes them in ``dtype``."""
    return sum(t.numel() * t.element_size() for t in encode_kv(chunk.keys, chunk.values, dtype).values())


def measure(model: SACModel, texts: Sequence[str]) -> dict:
    """Mean bytes per passage for SAC and full KV, bf16 and int8, and their ratios."""
    sac = model.compress(list(texts))
    full = model.encode_full_kv(list(texts))
    out: dict = {"passages": len(texts), "mean_tokens": statistics.fmean(c.length for c in sac)}
    out["mean_anchors"] = statistics.fmean(c.n_anchors for c in sac)
    for name, chunks in (("sac", sac), ("full_kv", full)):
        for dtype in ("bfloat16", "int8"):
            out[f"{name}_{dtype}"] = statistics.fmean(kv_bytes(c, dtype) for c in chunks)
    out["check_full_kv_nbytes_bf16"] = statistics.fmean(c.full_kv_nbytes(torch.bfloat16) for c in sac)
    for dtype in ("bfloat16", "int8"):
        out[f"full_bf16_over_sac_{dtype}"] = out["full_kv_bfloat16"] / out[f"sac_{dtype}"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--passages", type=int, default=50)
    args = p.parse_args(argv)
    model = setup(args)
    result = measure(model, passages(args.data, args.passages))
    rows = [
        {"store": f"{name} {dtype}", "KiB/passage": result[f"{name}_{dtype}"] / 1024}
        for name in ("sac", "full_kv")
        for dtype in ("bfloat16", "int8")
    ]
    for r in rows:
        r["full KV bf16 / this"] = result["full_kv_bfloat16"] / 1024 / r["KiB/passage"]
    text = f"ratio {model.config.ratio}, {result}\n\n" + table(rows, ["store", "KiB/passage", "full KV bf16 / this"])
    report("nbytes", {"ratio": model.config.ratio, **result}, text, args.out)


if __name__ == "__main__":
    main()
