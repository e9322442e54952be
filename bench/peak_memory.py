"""Peak resident memory of one RAG query over k passages (SAC, compact memories, full-KV reuse, raw text),
and of compressing passages into each memory kind.

Each method runs in its own fresh subprocess (so no earlier peak hides it): load the model and the
memories the parent computed (index time), then answer one question while a thread samples the process's resident
set size (``/proc/self/statm``, every millisecond). A short question-only warm-up query runs first,
so that the weights (memory-mapped from safetensors) are resident before the measurement. Reported:
RSS before the query, the peak during it, and the difference (the query's own working memory:
prefill activations, cache, logits). The compression rows do the same around ``compress`` of the
passages (``full_kv``: ``encode_full_kv``), after a one-passage warm-up of the same kind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from bench.common import parser, passages, report, setup, table
from sac_rag.memory.chunk import MemoryChunk

METHODS = ("raw", "full_kv", "sac", "compact")
KINDS = ("full_kv", "sac", "compact")  # what compression makes; "compress-<kind>" children measure it


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    import resource

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


class PeakSampler:
    """Samples the RSS in a thread while in the ``with`` block; ``peak`` is the largest seen."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def save_memories(path: Path, chunks: list[MemoryChunk]) -> None:
    """Memory chunks to one safetensors file (their scalar fields in the header)."""
    tensors, meta = {}, []
    for i, c in enumerate(chunks):
        tensors |= {f"{i}.keys": c.keys, f"{i}.values": c.values, f"{i}.positions": c.positions}
        if c.bias is not None:
            tensors[f"{i}.bias"] = c.bias
        meta.append({"length": c.length, "offset": c.offset, "fingerprint": c.fingerprint, "meta": c.meta})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"chunks": json.dumps(meta)})


def load_memories(path: Path) -> list[MemoryChunk]:
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["chunks"])
        names = set(f.keys())
        return [
            MemoryChunk(
                f.get_tensor(f"{i}.keys"),
                f.get_tensor(f"{i}.values"),
                f.get_tensor(f"{i}.positions"),
                bias=f.get_tensor(f"{i}.bias") if f"{i}.bias" in names else None,
                **m,
            )
            for i, m in enumerate(meta)
        ]


def one_query(args: argparse.Namespace) -> dict:
    """In this process: the memory of one query with ``args.child`` over ``args.k`` passages.

    Memories come from ``args.memories`` (computed by the parent), so that no compression ran in
    this process before the query: every method starts from the same allocator state.
    """
    import gc

    from bench.ttft import QUESTION, raw_prompt

    method, k = args.child, args.k
    model = setup(args)
    if method == "raw":
        segments = raw_prompt(model, passages(args.data, k))
    else:
        memories = load_memories(Path(args.memories) / f"{method}.safetensors")
        segments = model.generator().build_prompt(QUESTION, memories=memories)
    generator = model.generator()
    decoder = generator.decoder
    list(decoder.greedy(generator.build_prompt(QUESTION), 2, set()))  # page in the (mmapped) weights first
    gc.collect()
    before = rss_bytes()
    with PeakSampler() as sampler:
        list(decoder.greedy(segments, args.new_tokens, set()))
    return {
        "method": method,
        "k": k,
        "cache_entries": round(sum(c.entries_per_head for c in memories)) if method != "raw" else len(segments[0]),
        "rss_before_mib": before / 2**20,
        "peak_mib": sampler.peak / 2**20,
        "query_mib": (sampler.peak - before) / 2**20,
    }


def one_compression(args: argparse.Namespace) -> dict:
    """In this process: the memory of compressing ``args.passages`` passages into ``kind`` memories."""
    import gc

    kind = args.child.removeprefix("compress-")
    model = setup(args)
    texts = passages(args.data, args.passages)

    def make(batch: list[str]) -> list[MemoryChunk]:
        return model.encode_full_kv(batch) if kind == "full_kv" else model.compress(batch, kind=kind)

    make(texts[:1])  # weights resident, the kind's first-call costs paid
    gc.collect()
    before = rss_bytes()
    with PeakSampler() as sampler:
        make(texts)
    return {
        "kind": kind,
        "passages": len(texts),
        "rss_before_mib": before / 2**20,
        "peak_mib": sampler.peak / 2**20,
        "compression_mib": (sampler.peak - before) / 2**20,
    }


def run_child(args: argparse.Namespace, child: str, extra: list[str]) -> dict:
    """``child`` run in a fresh process; its JSON result."""
    cmd = [sys.executable, "-m", "bench.peak_memory", "--child", child, "--data", args.data, *extra]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # big blocks mmapped: RSS follows live memory
    cwd = Path(__file__).parents[1]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=cwd, env=env).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--passages", type=int, default=16, help="passages compressed in the compression rows")
    p.add_argument("--memories", help="internal: directory of the precomputed memories")
    children = [*METHODS, *(f"compress-{k}" for k in KINDS)]
    p.add_argument("--child", choices=children, help="internal: run one measurement in this process, print JSON")
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(one_compression(args) if args.child.startswith("compress-") else one_query(args)))
        return
    model = setup(args)
    texts = passages(args.data, args.k)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sac", "compact"):
            save_memories(Path(tmp) / f"{kind}.safetensors", model.compress(texts, kind=kind))
        save_memories(Path(tmp) / "full_kv.safetensors", model.encode_full_kv(texts))
        del model
        query = ["--k", str(args.k), "--new-tokens", str(args.new_tokens), "--memories", tmp]
        rows = [run_child(args, method, query) for method in METHODS]
    compression = [run_child(args, f"compress-{kind}", ["--passages", str(args.passages)]) for kind in KINDS]
    text = table(rows, ["method", "k", "cache_entries", "rss_before_mib", "peak_mib", "query_mib"])
    text += "\n\n" + table(compression, ["kind", "passages", "rss_before_mib", "peak_mib", "compression_mib"])
    report("peak_memory", {"k": args.k, "rows": rows, "compression": compression}, text, args.out)


if __name__ == "__main__":
    main()
