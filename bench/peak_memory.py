"""Peak resident memory of one RAG query over k passages: SAC memories vs raw text vs full-KV reuse.

Each method runs in its own fresh subprocess (so no earlier peak hides it): load the model, compute
the memories (index time), then answer one question while a thread samples the process's resident
set size (``/proc/self/statm``, every millisecond). Reported: RSS before the query, the peak during
it, and the difference (the query's own working memory: prefill activations, cache, logits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import parser, passages, report, setup, table

METHODS = ("raw", "full_kv", "sac")


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


def one_query(args: argparse.Namespace) -> dict:
    """In this process: the memory of one query with ``args.child`` over ``args.k`` passages."""
    import gc

    from bench.ttft import QUESTION, raw_prompt

    method, k = args.child, args.k
    model = setup(args)
    texts = passages(args.data, k)
    if method == "raw":
        segments = raw_prompt(model, texts)
    else:
        memories = model.compress(texts) if method == "sac" else model.encode_full_kv(texts)
        segments = model.build_prompt(QUESTION, memories=memories)
    gc.collect()
    decoder = model._decoder()
    before = rss_bytes()
    with PeakSampler() as sampler:
        list(decoder.greedy(segments, args.new_tokens, set()))
    return {
        "method": method,
        "k": k,
        "rss_before_mib": before / 2**20,
        "peak_mib": sampler.peak / 2**20,
        "query_mib": (sampler.peak - before) / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--child", choices=METHODS, help="internal: run one method in this process, print JSON")
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(one_query(args)))
        return
    rows = []
    for method in METHODS:
        cmd = [sys.executable, "-m", "bench.peak_memory", "--child", method, "--k", str(args.k), "--data", args.data]
        cmd += ["--new-tokens", str(args.new_tokens)] + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]).stdout
        rows.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    text = table(rows, ["method", "k", "rss_before_mib", "peak_mib", "query_mib"])
    report("peak_memory", {"k": args.k, "rows": rows}, text, args.out)


if __name__ == "__main__":
    main()
