"""Loss curves from a run's ``metrics.jsonl`` (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sac_rag.training.metrics import MetricsLog


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_runs(runs: Sequence[tuple[str, Path]], output: Path, title: str = "training loss") -> Path:
    """Plot train (smoothed) and held-out loss against step for each ``(label, metrics.jsonl)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, path in runs:
        records = MetricsLog.read(path)
        train = [r for r in records if r.get("kind") == "train"]
        evals = [r for r in records if r.get("kind") == "eval"]
        if train:
            line = ax.plot([r["step"] for r in train], _smooth([r["loss"] for r in train], 20), label=f"{label} train")
            color = line[0].get_color()
            ax.plot([r["step"] for r in train], [r["loss"] for r in train], alpha=0.15, color=color)
            if evals:
                ax.plot(
                    [r["step"] for r in evals],
                    [r["eval_loss"] for r in evals],
                    "o--",
                    color=color,
                    label=f"{label} held-out",
                )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / target token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    """``python -m sac_rag.training.plots OUT.png LABEL=RUN/metrics.jsonl ...``"""
    import argparse

    p = argparse.ArgumentParser(description="plot the loss curves of training runs")
    p.add_argument("output")
    p.add_argument("runs", nargs="+", help="LABEL=path/to/metrics.jsonl")
    p.add_argument("--title", default="training loss")
    args = p.parse_args(argv)
    runs = [(spec.rsplit("=", 1)[0], Path(spec.rsplit("=", 1)[1])) for spec in args.runs]
    print(plot_runs(runs, Path(args.output), args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
