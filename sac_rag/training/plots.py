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


X_AXES = {"step": ("optimizer step", 1.0), "minutes": ("wall time (minutes)", 1 / 60)}


def plot_runs(
    runs: Sequence[tuple[str, Path]],
    output: Path,
    title: str = "training loss",
    *,
    train_key: str = "loss",
    x: str = "step",
) -> Path:
    """Plot train (smoothed) and held-out loss for each ``(label, metrics.jsonl)``.

    ``train_key`` picks the train curve (``ce`` compares runs whose loss adds a distillation term);
    ``x`` is ``step`` or ``minutes`` (wall time, to compare runs of different step cost).
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {sorted(X_AXES)}, got {x!r}")
    x_label, scale = X_AXES[x]

    def xs(records: list[dict]) -> list[float]:
        return [r["step"] if x == "step" else r["elapsed_s"] * scale for r in records]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, path in runs:
        records = MetricsLog.read(path)
        train = [r for r in records if r.get("kind") == "train"]
        evals = [r for r in records if r.get("kind") == "eval"]
        if train:
            values = [r[train_key] for r in train]
            line = ax.plot(xs(train), _smooth(values, 20), label=f"{label} train")
            color = line[0].get_color()
            ax.plot(xs(train), values, alpha=0.15, color=color)
            if evals:
                ax.plot(
                    xs(evals),
                    [r["eval_loss"] for r in evals],
                    "o--",
                    color=color,
                    label=f"{label} held-out",
                )
    ax.set_xlabel(x_label)
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
    p.add_argument("--train-key", default="loss", help="train curve: loss (default) or ce (without distillation)")
    p.add_argument("--x", default="step", choices=sorted(X_AXES), help="x axis: optimizer step or wall time")
    args = p.parse_args(argv)
    runs = [(spec.rsplit("=", 1)[0], Path(spec.rsplit("=", 1)[1])) for spec in args.runs]
    print(plot_runs(runs, Path(args.output), args.title, train_key=args.train_key, x=args.x))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
