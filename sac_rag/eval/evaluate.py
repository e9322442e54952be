"""One evaluation run: load data, answer with every method (resumable), score and report."""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from sac_rag.eval.methods import Method
from sac_rag.eval.report import summarize, write_report
from sac_rag.eval.runner import run_methods
from sac_rag.io import atomic_write_text
from sac_rag.model import SACModel
from sac_rag.qa.datasets import QAExample, load_qa

RUN_JSON = "run.json"


def load_examples(paths: Sequence[str | Path], limit: int | None = None) -> list[QAExample]:
    """The first ``limit`` questions of each file, interleaved file by file (round robin), so that a
    run stopped early has covered every dataset about equally."""
    per_file = [load_qa(path, limit=limit) for path in paths]
    return [ex for group in itertools.zip_longest(*per_file) for ex in group if ex is not None]


def machine() -> str:
    """A one-line description of the machine the timings come from."""
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def base_identity(model: SACModel) -> str:
    """Identifies the base weights (config and the first embedding rows), however the base was named."""
    base = model.base_model
    h = hashlib.sha256(base.config.to_json_string(use_diff=False).encode())
    h.update(base.get_input_embeddings().weight[:8].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_run(out_dir: Path, settings: dict) -> None:
    """Refuse to mix predictions made under other settings (base model, decoding) into one table."""
    path = out_dir / RUN_JSON
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key, value in settings.items():
        if key in old and old[key] != value:
            raise ValueError(
                f"{out_dir} holds predictions made with {key}={old[key]!r}, this run has {value!r}: "
                "use another --out directory"
            )
    if any(key not in old for key in settings):
        atomic_write_text(path, json.dumps({**old, **settings}, indent=2) + "\n")


def evaluate(
    methods: Sequence[Method],
    examples: Sequence[QAExample],
    out_dir: str | Path,
    *,
    max_new_tokens: int = 24,
    progress: bool = True,
    info: dict | None = None,
) -> tuple[dict, list[Path]]:
    """Answer, score and write the report; returns the summary and the files written."""
    if not methods:
        raise ValueError("no methods to evaluate")
    if not examples:
        raise ValueError("no questions to evaluate")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = methods[0].model.config.base_model
    _check_run(out_dir, {"base_weights": base_identity(methods[0].model), "max_new_tokens": max_new_tokens})
    t0 = time.perf_counter()
    records = run_methods(methods, examples, out_dir, max_new_tokens=max_new_tokens, progress=progress)
    run = {
        "base_model": base,
        "max_new_tokens": max_new_tokens,
        "decoding": "greedy, stops at EOS or any token containing a newline; answer cut at the first newline",
        "machine": machine(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "wall_s_this_invocation": round(time.perf_counter() - t0, 1),
        **(info or {}),
    }
    summary = summarize(methods, records, run)
    return summary, write_report(summary, out_dir)
