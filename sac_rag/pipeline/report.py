"""Plain-text rendering of RAG results for the command line."""

from __future__ import annotations

from sac_rag.pipeline.rag import Figures, RAGResult


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def format_sources(result: RAGResult, width: int = 90) -> str:
    lines = []
    for hit in result.sources:
        label = hit.metadata.get("title") or hit.metadata.get("source") or ""
        text = " ".join(hit.text.split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        lines.append(
            f"  [{hit.id}] {hit.score:.3f} {label}: {text}" if label else f"  [{hit.id}] {hit.score:.3f} {text}"
        )
    return "\n".join(lines)


def format_figures(f: Figures) -> str:
    if f.mode == "sac":
        head = (
            f"tokens in: {f.passage_tokens}  entries kept: {f.anchors}/head  bytes read: {kib(f.bytes_read)} "
            f"vs full KV {kib(f.full_kv_bytes)} bf16 ({f.full_kv_bytes / max(f.bytes_read, 1):.1f}x)  "
            f"prefilled: {f.prefilled_tokens} tokens"
        )
    else:
        head = (
            f"tokens in: {f.passage_tokens} as text  prefilled: {f.prefilled_tokens} tokens  "
            f"KV rebuilt: {kib(f.full_kv_bytes)} bf16"
        )
    times = (
        f"retrieval {f.retrieval_s:.3f}s  load {f.load_s:.3f}s  compose {f.compose_s:.3f}s  "
        f"prefill {f.prefill_s:.3f}s  decode {f.decode_s:.3f}s  total {f.total_s:.2f}s"
    )
    return f"  {head}\n  {times}"
