"""A toy MRQA training file and a short run's config, for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

from sac_rag.training import TrainConfig

FACTS = [
    ("Paris is the capital of France.", "What is the capital of France?", "Paris"),
    ("Alan Turing was born in 1912 in London.", "When was Turing born?", "1912"),
    ("The quick brown fox jumps over the lazy dog.", "What does the fox jump over?", "the lazy dog"),
    ("Alan Turing studied mathematics at Cambridge.", "Where did Turing study?", "Cambridge"),
    ("Semantic anchor compression keeps every fifth token.", "What keeps every fifth token?", "compression"),
    ("The lazy dog sleeps in London.", "Where does the dog sleep?", "London"),
]


def write_mrqa(path: Path, facts=FACTS) -> Path:
    """An MRQA file of ``facts`` (context, question, answer), questions in the official ``[MASK].`` form."""
    lines = [json.dumps({"header": {"dataset": "Toy", "split": "train"}})]
    for i, (ctx, q, a) in enumerate(facts):
        lines.append(
            json.dumps({"context": ctx, "qas": [{"qid": f"q{i}", "question": q + " [MASK].", "answers": [a]}]})
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path: Path, **kw) -> TrainConfig:
    """A 12-step run over :func:`write_mrqa`'s file in ``tmp_path`` (``kw``: any other TrainConfig field)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = dict(
        output_dir=str(tmp_path / "run"),
        train_files=[str(write_mrqa(tmp_path / "toy.jsonl"))],
        steps=12,
        grad_accum=2,
        lr=3e-3,
        embedding_lr=3e-3,
        warmup_steps=2,
        eval_size=1,
        eval_every=6,
        max_distractors=1,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)
