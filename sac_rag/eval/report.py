"""Scores, timings and the written report: ``results.json``, ``results.md`` and two plots."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from sac_rag.eval.methods import Method
from sac_rag.eval.metrics import aggregate, score
from sac_rag.io import atomic_write, atomic_write_text

RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
F1_PLOT, TTFT_PLOT = "f1_vs_ratio.png", "ttft.png"


def summarize(methods: Sequence[Method], records: Sequence[dict], run: dict | None = None) -> dict:
    """Scores of each method over the questions every method answered (the same questions for all)."""
    by_method: dict[str, dict[tuple[str, str], dict]] = {m.key: {} for m in methods}
    for r in records:
        if r["method"] in by_method:
            by_method[r["method"]][(r["dataset"], r["qid"])] = r
    common = set.intersection(*(set(v) for v in by_method.values())) if by_method else set()
    out = []
    for m in methods:
        rows = [by_method[m.key][q] for q in sorted(common)]
        scored = [{"dataset": r["dataset"], **score(r["prediction"], r["answers"])} for r in rows]
        encodes = [r["encode_s"] for r in rows if r.get("encode_s") is not None]
        out.append(
            {
                "key": m.key,
                "label": m.label,
                "ratio": m.ratio,
                **aggregate(scored),
                "ttft_ms": _ms_stats([r["ttft_s"] for r in rows]),
                "total_ms": _ms_stats([r["total_s"] for r in rows]),
                "encode_ms_per_passage": _ms_stats(encodes) if encodes else None,  # None: text-only method
                "mean_entries": statistics.fmean(r["entries"] for r in rows) if rows else math.nan,
                "mean_new_tokens": statistics.fmean(r["new_tokens"] for r in rows) if rows else math.nan,
            }
        )
    return {"run": run or {}, "questions": len(common), "methods": out}


def _ms_stats(seconds: Sequence[float]) -> dict:
    if not seconds:
        return {"mean": math.nan, "median": math.nan}
    return {"mean": 1000 * statistics.fmean(seconds), "median": 1000 * statistics.median(seconds)}


def _with_se(scores: dict, key: str) -> str:
    se = scores.get(f"{key}_se", math.nan)
    return f"{scores[key]:.1f}" if math.isnan(se) else f"{scores[key]:.1f} ± {se:.1f}"


def markdown(summary: dict) -> str:
    """The results table: macro/micro scores, per-dataset F1, TTFT and prompt size per method."""
    methods = summary["methods"]
    datasets = sorted({d for m in methods for d in m["datasets"]})
    counts = ", ".join(f"{d} {methods[0]['datasets'][d]['n']}" for d in datasets) if methods else ""
    head = (
        ["Method", "EM", "F1", "EM-first", "ROUGE-1"]
        + [f"F1 {d}" for d in datasets]
        + ["micro F1", "TTFT ms (median)", "answer ms (median)", "KV entries"]
    )
    lines = [
        f"Questions: {summary['questions']} ({counts}). EM/F1: SQuAD-normalised, max over gold answers; "
        "EM-first/ROUGE-1: against the first gold answer (SAC script variant). Scores are macro averages "
        "over datasets, in percent, ± one standard error.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for m in methods:
        cells = [m["label"]] + [_with_se(m["macro"], k) for k in ("em", "f1", "em_first", "rouge1")]
        cells += [_with_se(m["datasets"][d], "f1") if d in m["datasets"] else "" for d in datasets]
        cells += [
            f"{m['micro']['f1']:.1f}",
            f"{m['ttft_ms']['median']:.0f}",
            f"{m['total_ms']['median']:.0f}",
            f"{m['mean_entries']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, out_dir: Path) -> list[Path]:
    """F1 against stored bytes per passage (the budget 1/r), and TTFT per method (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    methods = summary["methods"]
    written = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    families: dict[str, list[tuple[float, float]]] = {}
    styles = iter(["--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1))] * 4)
    for i, m in enumerate(methods):
        if m["ratio"] is None:
            ax.axhline(m["macro"]["f1"], linestyle=next(styles), linewidth=1.2, color=f"C{i}", label=m["label"])
        else:
            family = " ".join(m["label"].split(" (")[0].replace(f"r={m['ratio']}", "").split())
            families.setdefault(family, []).append((1 / m["ratio"], m["macro"]["f1"]))
    for j, (family, points) in enumerate(families.items()):
        points.sort()
        color = f"C{(len(methods) + j) % 10}"  # never a colour of a horizontal line
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=color, label=family)
    ratios = sorted({m["ratio"] for m in methods if m["ratio"] is not None})
    if ratios:
        ax.set_xscale("log")
        ax.set_xticks([1 / r for r in ratios], [f"1/{r}" for r in ratios])
        ax.minorticks_off()
    # a method at ratio r stores at most 1/r of the passage's full K/V bytes (a compaction memory's bias,
    # positions and counts are inside that budget; SAC and truncation keep one entry in r)
    ax.set_xlabel("stored bytes per passage / its full K/V's bytes (budget 1/r)")
    ax.set_ylabel("F1 (macro, %)")
    ax.set_title(f"F1 vs stored bytes ({summary['questions']} questions)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, out_dir / F1_PLOT))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(methods) + 1.2))
    labels = [m["label"] for m in methods]
    ax.barh(labels, [m["ttft_ms"]["median"] for m in methods])
    ax.invert_yaxis()
    ax.set_xlabel("time to first token, median (ms)")
    ax.set_title("TTFT per method (memories precomputed)", fontsize=10)
    fig.tight_layout()
    written.append(_save(fig, out_dir / TTFT_PLOT))
    plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return path


def write_report(summary: dict, out_dir: str | Path) -> list[Path]:
    """Write ``results.json``, ``results.md`` and the plots into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / RESULTS_JSON, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out_dir / RESULTS_MD, markdown(summary))
    return [out_dir / RESULTS_JSON, out_dir / RESULTS_MD, *plot(summary, out_dir)]
