"""Shared pieces of the benchmarks: model, real passages, timing, machine line, output."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from sac_rag.home import sac_home
from sac_rag.io import atomic_write_text

SQUAD_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "mrqa_dev_SQuAD.jsonl.gz"
OUT_DIR = sac_home() / "bench"
QUESTION = "What is the main subject of these passages?"
T = TypeVar("T")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default=str(SQUAD_DEV), help="MRQA/SQuAD file whose contexts are the passages")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    p.add_argument("--out", default=str(OUT_DIR), help="where the JSON record is written")
    return p


def setup(args: argparse.Namespace, **load):
    """Set threads and load the default SAC model (SmolLM2-135M-Instruct + the packaged compressor;
    ``load``: :meth:`SACModel.default`'s keyword arguments, e.g. ``dtype``)."""
    from sac_rag import SACModel

    if args.threads:
        torch.set_num_threads(args.threads)
    return SACModel.default(**load)


def distinct_contexts(path: str | Path) -> Iterator[str]:
    """The distinct contexts of a QA file, in file order."""
    from sac_rag.qa import load_qa

    seen: set[str] = set()
    for ex in load_qa(path):
        if ex.context not in seen:
            seen.add(ex.context)
            yield ex.context


def passages(path: str | Path, n: int) -> list[str]:
    """The first ``n`` distinct contexts of a QA file, in file order."""
    out = list(itertools.islice(distinct_contexts(path), n))
    if len(out) < n:
        raise ValueError(f"{path} has only {len(out)} distinct contexts, {n} wanted")
    return out


def sized_passages(path: str | Path, n: int, tokens: int, tokenizer) -> list[str]:
    """``n`` passages of ``tokens`` tokens each (give or take the re-encoding of the cut text): consecutive
    distinct contexts of a QA file joined by newlines, cut at the token budget, the way a RAG chunker with a
    fixed chunk size cuts a corpus."""
    out: list[str] = []
    ids: list[int] = []
    for text in distinct_contexts(path):
        ids += tokenizer(("\n" if ids else "") + text, add_special_tokens=False)["input_ids"]
        while len(ids) >= tokens and len(out) < n:
            out.append(tokenizer.decode(ids[:tokens]))
            ids = ids[tokens:]
        if len(out) == n:
            return out
    raise ValueError(f"{path} has too few contexts for {n} passages of {tokens} tokens")


def interleaved(fns: dict[str, Callable[[], T]], repeats: int) -> dict[str, list[T]]:
    """Each function's results over ``repeats`` rounds, run round-robin (after one warm-up round) so
    that background load hits all of them alike."""
    for fn in fns.values():
        fn()
    results: dict[str, list[T]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            results[name].append(fn())
    return results


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time in seconds of each function, run round-robin (see :func:`interleaved`)."""

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        return run

    runs = interleaved({k: timed(fn) for k, fn in fns.items()}, repeats)
    return {k: statistics.median(v) for k, v in runs.items()}


#: A prompt to time: its segments, or a function of the run's phases (None when only the clock runs) that makes them
#: within the timing (e.g. memories read from a store).
Prompt = list | Callable


def _segments(prompt: Prompt, phases=None) -> list:
    return prompt(phases) if callable(prompt) else prompt


def timed_answer(decoder, segments: Prompt, new_tokens: int) -> Callable[[], tuple[float, float]]:
    """A run that decodes exactly ``new_tokens`` greedy tokens: (time to first token, time to the last)."""

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        tokens = decoder.greedy(_segments(segments), new_tokens, set())
        next(tokens)
        t1 = time.perf_counter()
        for _ in tokens:
            pass
        return t1 - t0, time.perf_counter() - t0

    return run


def timed_prefill(decoder, segments: Prompt) -> Callable[[], dict[str, float]]:
    """A run that prefills and picks the first greedy token: thread CPU seconds per phase (the decoder's
    :class:`~sac_rag.decoding.phases.Phases`, plus ``sample``) and ``total``, the whole call's."""
    from sac_rag.decoding.phases import Phases

    def run() -> dict[str, float]:
        phases = Phases()
        t0 = time.thread_time()
        with torch.inference_mode():
            _, logits, _ = decoder.prefill(_segments(segments, phases), phases=phases)
            with phases.phase("sample"):
                int(torch.argmax(logits))
        return {**phases.seconds, "total": time.thread_time() - t0}

    return run


def answer_times(name: str, times: Sequence[tuple[float, float]], new_tokens: int) -> dict[str, float]:
    """Medians of :func:`timed_answer` runs: TTFT and total in ms, decode speed in tokens/s."""
    return {
        f"ttft_ms_{name}": 1000 * statistics.median(t for t, _ in times),
        f"total_ms_{name}": 1000 * statistics.median(total for _, total in times),
        f"decode_tok_s_{name}": statistics.median((new_tokens - 1) / (total - t) for t, total in times),
    }


def machine() -> dict:
    """The machine and load the timings were taken under."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15m": [round(x, 1) for x in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (floats with 2 decimals)."""

    def cell(v) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def report(name: str, record: dict, text: str, out: str | Path) -> None:
    """Print the Markdown and write ``<out>/<name>.json`` (machine included)."""
    record = {"machine": machine(), **record}
    print(f"machine: {record['machine']}\n\n{text}\n")
    path = Path(out) / f"{name}.json"
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
