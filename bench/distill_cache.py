"""What distillation costs a training step, and what caching the teacher's top-k targets buys back.

The same examples (gold passage + one other, or a stage-1 text), forward + backward through the
compressor and decoder in fp32, three ways, round-robin in one run: cross-entropy only; distillation
with the teacher (the decoder reading the raw text) run at every step; distillation from the teacher's
top-k log-probabilities read from a warm cache. Medians over ``--repeats``; ratios > 1 mean slower.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench.common import QUESTION, interleaved_medians, parser, passages, report, setup, table
from sac_rag.model import SACModel
from sac_rag.qa.datasets import QAExample
from sac_rag.training.data import LMSample
from sac_rag.training.tasks import SACTask, Sample
from sac_rag.training.teacher_cache import TeacherCache


def samples(texts: Sequence[str], stage: str) -> list[Sample]:
    """One example per text: a QA example over it and the next text, or a stage-1 continuation example."""
    if stage == "lm":
        return [LMSample(t) for t in texts]
    others = [*texts[1:], texts[0]]
    return [
        QAExample(f"b{i}", QUESTION, t, (" ".join(t.split()[:4]),), passages=(t, o))
        for i, (t, o) in enumerate(zip(texts, others))
    ]


def train_pass(task: SACTask, batch: Sequence[Sample]) -> Callable[[], None]:
    def run() -> None:
        for sample in batch:
            task.loss(sample)[0].backward()
        task.model.zero_grad(set_to_none=True)

    return run


def measure(model: SACModel, batch: Sequence[Sample], k: int, repeats: int, cache_dir: Path) -> dict:
    plain = SACTask(model, max_distractor_tokens=200)
    every_step = SACTask(model, max_distractor_tokens=200, distill_weight=1.0)
    cache = TeacherCache(cache_dir / "teacher_topk", teacher=f"decoder-{model.decoder_fingerprint()}", k=k)
    cached = SACTask(model, max_distractor_tokens=200, distill_weight=1.0, teacher_cache=cache)
    for p in plain.parameters().values():
        p.requires_grad_(True)
    with torch.no_grad():
        for sample in batch:  # fill the cache: this is the one teacher pass caching pays
            cached.loss(sample)
    times = interleaved_medians(
        {name: train_pass(task, batch) for name, task in (("ce", plain), ("teacher", every_step), ("cached", cached))},
        repeats,
    )
    row = {f"s_per_example_{n}": t / len(batch) for n, t in times.items()}
    row["teacher_over_cached"] = times["teacher"] / times["cached"]
    row["cached_over_ce"] = times["cached"] / times["ce"]
    files = cache.files()
    row["cache_kib_per_example"] = sum(f.stat().st_size for f in files) / 1024 / len(files)
    return row


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4, help="examples per timed pass")
    p.add_argument("--k", type=int, default=32, help="teacher tokens kept per target position")
    p.add_argument("--stage", choices=("qa", "lm"), default="qa")
    args = p.parse_args(argv)
    model = setup(args, dtype=torch.float32)  # training's master weights
    with tempfile.TemporaryDirectory() as tmp:
        row = measure(model, samples(passages(args.data, args.n), args.stage), args.k, args.repeats, Path(tmp))
    info = {"stage": args.stage, "examples": args.n, "k": args.k, "repeats": args.repeats}
    report("distill_cache", {**info, "row": row}, f"{info}\n\n" + table([row], list(row)), args.out)


if __name__ == "__main__":
    main()
