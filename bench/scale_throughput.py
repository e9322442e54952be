"""Passages per second: single-process ``MemoryStore.add`` vs ``index_with_ray`` with 1 and 2 Ray workers.

The baseline is the faster of the single process with torch's default threads and with one thread
(on a busy machine torch's threads can be slower than one). Same passages (Wikipedia lead sections
from the offline demo dump, split at 160 tokens), same model and embedder, a fresh store each run,
all in one process so the ratios compare like with like. The Ray cluster is started once before the
timed Ray runs; each Ray run still includes starting its actors and loading the models in them::

    python bench/scale_throughput.py --passages 48 [--workers 1 2] [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from sac_rag.corpus import to_passages
from sac_rag.corpus.demo_corpus import wikipedia_articles
from sac_rag.model import SACModel
from sac_rag.scale import index_with_ray
from sac_rag.store import MemoryStore


def passages(model, count: int, tokens: int) -> list[str]:
    texts: list[str] = []
    limit = 8
    while len(texts) < count:
        texts = to_passages(wikipedia_articles(limit=limit), tokens, model.count_tokens).texts
        limit *= 2
        if limit > 4096:
            break
    return texts[:count]


def single_process(model, texts: list[str], root: Path, batch_size: int) -> float:
    t0 = time.perf_counter()
    with MemoryStore.create(root / "single", model) as store:
        store.flush_every = 64
        store.add(texts, batch_size=batch_size, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=128)
    parser.add_argument("--passage-tokens", type=int, default=160)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=None, help="SAC checkpoint dir or base model (default: the offline default)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--unit-size", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import ray

    model = SACModel.load(args.model)
    texts = passages(model, args.passages, args.passage_tokens)
    tokens = sum(len(model.tokenizer(t)["input_ids"]) for t in texts) / len(texts)
    print(f"{len(texts)} passages, {tokens:.0f} tokens each on average; load average {os.getloadavg()[0]:.1f}")
    results: dict = {"passages": len(texts), "tokens_per_passage": tokens, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        default_threads = torch.get_num_threads()
        for threads in sorted({default_threads, 1}):
            torch.set_num_threads(threads)
            seconds = single_process(model, texts, root / f"t{threads}", args.batch_size)
            results[f"single_{threads}_threads"] = {"seconds": seconds, "passages_per_s": len(texts) / seconds}
            print(f"single process, {threads} torch thread(s): {len(texts) / seconds:.2f} passages/s")
        torch.set_num_threads(default_threads)
        base = min(v["seconds"] for k, v in results.items() if k.startswith("single_"))  # the best single process
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        results["ray_start_s"] = time.perf_counter() - t0
        for n in args.workers:
            report = index_with_ray(
                texts, root / f"ray{n}", model=args.model, workers=n,
                unit_size=args.unit_size, batch_size=args.batch_size,
            )  # fmt: skip
            rate = report.passages_per_s
            per_passage = report.worker_seconds / max(report.compressed, 1)
            results[f"ray_{n}"] = {
                "seconds": report.seconds,
                "passages_per_s": rate,
                "ratio_vs_single": rate * base / len(texts),
                "worker_seconds_per_passage": per_passage,
            }
            print(
                f"ray, {n} worker(s): {rate:.2f} passages/s = {rate * base / len(texts):.2f}x the best single "
                f"(in-worker cost {per_passage * 1000:.0f} ms/passage); load average {os.getloadavg()[0]:.1f}"
            )
        ray.shutdown()
    results["load_average_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
