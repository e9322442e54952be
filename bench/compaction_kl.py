"""How close compact-memory variants answer to the full K/V, on the selection split (never on reported questions).

For each selection question (SQuAD dev from question 6,000 and DROP dev from 900, three SQuAD then one DROP), the
decoder answers greedily from the passage's full K/V (up to ``--answer-tokens`` tokens, the stop token included);
each variant's memory of the passage is then read teacher-forced on that answer, and the KL divergence of its
next-token distribution from the full K/V's, averaged over the answer's tokens, is its score for the question.
Variants are compared paired against the first one (``default``): the mean KL change and the mean log of the KL
ratio, each with its standard error over questions. ``--moon`` also prints, for each variant, the first answer
token's log-probability margin of "Arm" over "John" on the demo's Moon question over its three retrieved passages
(a near-tie for this decoder: its full K/V gives +0.13).

Each question's record is appended to ``--out`` as a JSON line as soon as it is measured; a rerun skips the
questions already there, so a killed run resumes.

    python -m bench.compaction_kl --threads 1 --questions 40 --variants default bounds3 --out runs/kl.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from sac_rag.compaction import compactor as compactor_module
from sac_rag.compaction.compactor import compact_analysis
from sac_rag.compaction.refit import refit
from sac_rag.eval.answer import answer_text, stop_ids
from sac_rag.eval.distractors import with_distractors
from sac_rag.eval.metrics import squad_f1
from sac_rag.eval.methods import PASSAGE_SEPARATOR
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel
from sac_rag.qa import QAExample, load_qa
from sac_rag.text.prompt import context_ids, question_ids

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
SELECTION = ((DEV / "mrqa_dev_SQuAD.jsonl.gz", 6000, 3), (DEV / "mrqa_dev_DROP.jsonl", 900, 1))
MOON = "Who were the first humans to land on the Moon?"
KEEP = 0.2

#: variant name -> keyword arguments of :func:`sac_rag.compaction.refit.refit` (``None``: selection alone)
VARIANTS: dict[str, dict | None] = {
    "default": {},
    "bounds3": {"weight_bounds": (math.exp(-3), math.exp(3))},
    "bounds2": {"weight_bounds": (math.exp(-2), math.exp(2))},
    "bounds5": {"weight_bounds": (math.exp(-5), math.exp(5))},
    "low3": {"weight_bounds": (math.exp(-3), math.inf)},
    "iter30": {"iterations": 30},
    "iter100": {"iterations": 100},
    "select": None,
}


def selection_split(n: int, distractors: int = 0) -> list[QAExample]:
    """The first ``n`` selection questions: three SQuAD then one DROP, in file order from their starts; each set
    among ``distractors`` other passages of its dataset's selection questions (as ``sac-rag eval --distractors``)."""
    pools = [iter(with_distractors(load_qa(path)[start : start + max(4 * n, 400)], distractors)) for path, start, _ in SELECTION]
    out: list[QAExample] = []
    while len(out) < n:
        for pool, (_, _, take) in zip(pools, SELECTION):
            out.extend(next(pool) for _ in range(take))
    return out[:n]


def variant_memory(model: SACModel, analysis, variant: str) -> MemoryChunk:
    """The passage's int8 compact memory at :data:`KEEP`, its refit given the variant's arguments."""
    kwargs = VARIANTS[variant]
    if kwargs is None:
        return compact_analysis(analysis, KEEP, refit_values=False, dtype=torch.int8)
    original = compactor_module.refit
    compactor_module.refit = functools.partial(refit, **kwargs)
    try:
        return compact_analysis(analysis, KEEP, dtype=torch.int8)
    finally:
        compactor_module.refit = original


class Reader:
    """The default model's decoder (reader on), answering greedily and teacher-forced over memories."""

    def __init__(self, model: SACModel) -> None:
        self.model = model
        self.generator = model.generator()
        self.decoder = self.generator.decoder
        self.stops = stop_ids(model.tokenizer)
        self.memories: OrderedDict[tuple[str, str], MemoryChunk] = OrderedDict()

    def memory(self, kind: str, passage: str) -> MemoryChunk:
        """The passage's full K/V or default compact memory, kept for the next questions (their distractors recur)."""
        key = (kind, passage)
        if key not in self.memories:
            model = self.model
            if kind == "full_kv":
                self.memories[key] = model.encode_full_kv([passage])[0]
            else:
                analysis = model.compactor().analyse(context_ids(model.tokenizer, passage, model.config))
                self.memories[key] = variant_memory(model, analysis, "default")
            if len(self.memories) > 64:
                self.memories.popitem(last=False)
        return self.memories[key]

    def segments(self, question: str, memories: list[MemoryChunk] | None) -> list:
        """The prompt over ``memories``, or (None) over the question's passages as raw text (set by :meth:`raw`)."""
        if memories is None:
            return [self.raw_context + question_ids(self.model.tokenizer, question, self.model.config)]
        return self.generator.build_prompt(question, memories)

    def raw(self, passages: tuple[str, ...]) -> None:
        self.raw_context = context_ids(self.model.tokenizer, PASSAGE_SEPARATOR.join(passages), self.model.config)

    def answer(self, question: str, memories: list[MemoryChunk] | None, tokens: int) -> list[int]:
        return list(self.decoder.greedy(self.segments(question, memories), tokens, self.stops))

    @torch.inference_mode()
    def log_probs(self, question: str, memories: list[MemoryChunk] | None, answer: list[int]) -> torch.Tensor:
        """``[len(answer), vocab]``: the log-probabilities of each answer token's position, teacher-forced."""
        segments = self.segments(question, memories)
        segments[-1] = [*segments[-1], *answer[:-1]]
        _, hidden, _ = self.decoder.run(segments)
        return torch.log_softmax(self.decoder.lm_head(hidden[-len(answer) :]).float(), -1)


def kl(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over positions of KL(reference || other), both log-probabilities."""
    return float((reference.exp() * (reference - other)).sum(-1).mean())


def measure(reader: Reader, example: QAExample, variants: list[str], tokens: int) -> dict:
    model = reader.model
    analysis = model.compactor().analyse(context_ids(model.tokenizer, example.context, model.config))
    full = model.encode_full_kv([example.context])[0]
    answer = reader.answer(example.question, [full], tokens)
    reference = reader.log_probs(example.question, [full], answer)
    record = {"qid": example.qid, "dataset": example.dataset, "answer_tokens": len(answer), "kl": {}}
    for name in variants:
        memory = variant_memory(model, analysis, name)
        record["kl"][name] = kl(reference, reader.log_probs(example.question, [memory], answer))
    return record


def sink_bias(m: MemoryChunk, shift: float, first: int = 1) -> MemoryChunk:
    """``m`` with ``shift`` added to the bias of its entries of the first ``first`` tokens (BOS) in every head."""
    bias = torch.zeros(m.keys.shape[:3]) if m.bias is None else m.bias.clone()
    positions = m.positions if m.positions.ndim == 3 else m.positions.expand(m.keys.shape[:3])
    real = positions >= 0
    return replace(m, bias=torch.where(real & (positions < first), bias + shift, bias), meta=dict(m.meta))


def one_sink(memories: list[MemoryChunk]) -> list[MemoryChunk]:
    """``memories`` with the first entry (BOS) of all but the first left out (a ``-inf`` bias): composed, they hold
    one attention sink, as the passages joined as text do."""
    return [memories[0], *(sink_bias(m, -math.inf) for m in memories[1:])]


def one_prefix(memories: list[MemoryChunk], prefix: int) -> list[MemoryChunk]:
    """As :func:`one_sink`, leaving out each later memory's whole context prefix (BOS and "### Context:" tokens):
    composed, they hold one, as the passages joined as text do."""
    return [memories[0], *(sink_bias(m, -math.inf, prefix) for m in memories[1:])]


def split_sink(memories: list[MemoryChunk]) -> list[MemoryChunk]:
    """Each memory's BOS weighted 1/k: k sinks of the same key would weigh as one."""
    return [sink_bias(m, -math.log(len(memories))) for m in memories]


COMPOSED = ("full_kv", "full_kv_one_prefix", "compact", "compact_one_prefix")


def measure_composed(reader: Reader, example: QAExample, tokens: int) -> dict:
    """KL from the raw text's answer distribution (teacher-forced on its greedy answer) and F1 of each composition
    of the example's passages' memories."""
    model = reader.model
    passages = example.prompt_passages
    reader.raw(passages)
    full = [reader.memory("full_kv", p) for p in passages]
    compact = [reader.memory("compact", p) for p in passages]
    prefix = len(context_ids(model.tokenizer, "", model.config))
    prompts = {}
    for name, memories in (("full_kv", full), ("compact", compact)):
        prompts[name] = memories
        prompts[f"{name}_one_prefix"] = one_prefix(memories, prefix)
    answer = reader.answer(example.question, None, tokens)
    reference = reader.log_probs(example.question, None, answer)
    text = lambda ids: answer_text(model.tokenizer.decode(ids, skip_special_tokens=True))  # noqa: E731
    record = {"qid": example.qid, "dataset": example.dataset, "kl": {}, "f1": {"raw": squad_f1(text(answer), example.answers)}}
    for name, memories in prompts.items():
        record["kl"][name] = kl(reference, reader.log_probs(example.question, memories, answer))
        record["f1"][name] = squad_f1(text(reader.answer(example.question, memories, tokens)), example.answers)
    return record


def moon_passages(model: SACModel, n_passages: int = 240, k: int = 3) -> list[str]:
    """The demo's passages for its Moon question: the ``k`` nearest of its first ``n_passages``, best first."""
    from sac_rag.corpus import to_passages
    from sac_rag.corpus.demo_corpus import wikipedia_articles
    from sac_rag.embedding.embedder import resolve_embedder

    texts = list(to_passages(wikipedia_articles(), 160, model.count_tokens).head(n_passages).texts)
    embedder = resolve_embedder(None)
    scores = embedder.embed(texts) @ embedder.embed([MOON])[0]
    return [texts[i] for i in scores.argsort()[::-1][:k]]


def moon_margins(reader: Reader, variants: list[str]) -> dict[str, float]:
    """Per variant (and the full K/V), log p("Arm") - log p("John") for the Moon question's first answer token."""
    model = reader.model
    passages = moon_passages(model)
    arm, john = (model.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Arm", "John"))
    analyses = [model.compactor().analyse(context_ids(model.tokenizer, p, model.config)) for p in passages]

    def margin(memories: list[MemoryChunk]) -> float:
        first = reader.log_probs(MOON, memories, [arm])[0]
        return float(first[arm] - first[john])

    out = {"full_kv": margin(model.encode_full_kv(passages))}
    for name in variants:
        out[name] = margin([variant_memory(model, a, name) for a in analyses])
    return out


def done(path: Path) -> Iterator[dict]:
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def paired(records: list[dict], base: str, name: str, transform: Callable[[float], float]) -> tuple[float, float]:
    diffs = [transform(r["kl"][name]) - transform(r["kl"][base]) for r in records]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return statistics.mean(diffs), se


def summary(records: list[dict], variants: list[str]) -> str:
    base = variants[0]
    lines = [f"{len(records)} questions; {base}: KL {statistics.mean(r['kl'][base] for r in records):.5f}"]
    for name in variants[1:]:
        d, se = paired(records, base, name, lambda x: x)
        dl, sel = paired(records, base, name, lambda x: math.log(max(x, 1e-12)))
        mean = statistics.mean(r["kl"][name] for r in records)
        lines.append(f"{name:>10}: KL {mean:.5f}  dKL {d:+.5f} ± {se:.5f}  dlogKL {dl:+.3f} ± {sel:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=40)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--answer-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--distractors", type=int, default=0, help="compare compositions over gold + N passages instead")
    p.add_argument("--moon", action="store_true", help="also print the Moon question's margin per variant")
    p.add_argument("--out", required=True, help="JSON lines, one per question (resumed)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = SACModel.default()
    reader = Reader(model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.distractors:
        args.variants = list(COMPOSED)
    records = [r for r in done(out) if all(v in r["kl"] for v in args.variants)]
    seen = {r["qid"] for r in records}
    for example in selection_split(args.questions, args.distractors):
        if example.qid in seen:
            continue
        if args.distractors:
            record = measure_composed(reader, example, args.answer_tokens)
        else:
            record = measure(reader, example, args.variants, args.answer_tokens)
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
        print(f"[{len(records)}] {example.qid} " + " ".join(f"{k}={v:.4f}" for k, v in record["kl"].items()), flush=True)
    print(summary(records, args.variants))
    if args.distractors:
        for name in ["raw", *args.variants]:
            f1 = [100 * r["f1"][name] for r in records]
            print(f"F1 {name:>18}: {statistics.mean(f1):.1f} ± {statistics.stdev(f1) / math.sqrt(len(f1)):.1f}")
    if args.moon:
        for name, value in moon_margins(reader, args.variants).items():
            print(f"moon margin {name:>10}: {value:+.3f}")


if __name__ == "__main__":
    main()
