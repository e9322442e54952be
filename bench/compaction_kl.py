"""How close memories answer to a reference, on the selection split (never on reported questions): the measure the
compaction and composition choices in docs/compaction.md were made with.

The selection split: SQuAD dev from question 6,000 and DROP dev from 900, three SQuAD then one DROP. For each
question a reference answers greedily (up to ``--answer-tokens`` tokens, the stop token included); each variant is
then read teacher-forced on that answer, and the KL divergence of its next-token distribution from the reference's,
averaged over the answer's tokens, is its score for the question. Variants are compared paired against the first:
the mean KL change and the mean log of the KL ratio (robust to the few questions that dominate the KL), each with
its standard error over questions.

* One passage (default): the reference is the passage's full K/V; the variants are int8 compact memories at 1/5 of
  the bytes whose refit takes other arguments (:data:`VARIANTS`), selection alone, or entries chosen within each head
  by OMP at the default's per-head counts (:data:`OMP_VARIANTS`).
* ``--distractors N --join``: one long passage, the question's own and N others joined, variants as above (and the
  thread CPU seconds of each one's selection and refit).
* ``--distractors N``: the question's passage among N others (as ``sac-rag eval --distractors``); the reference is the
  raw text (the passages joined), the variants the full K/V and the default compact memories composed each with its
  own context header, with one (``shared_header``) or with each header's weight divided among them
  (:data:`COMPOSED`, ``--compositions``); the greedy answers' F1 is printed too.

``--moon`` also prints the demo's Moon question's first-token margin of "Arm" over "John" per variant (a near-tie for
this decoder: its full K/V gives +0.13); ``--demo`` the demo's six questions answered from the raw text and from each
composition of memories (its retrieval, k = 3 of 240 passages; memories made here, not read from an int8 store).

Each question's record is appended to ``--out`` as a JSON line when measured; a rerun skips the questions already
there, so a killed run resumes.

    python -m bench.compaction_kl --threads 1 --questions 40 --out runs/kl.jsonl
    python -m bench.compaction_kl --threads 1 --questions 100 --distractors 4 --out runs/kl-composed.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from sac_rag.compaction import compactor as compactor_module
from sac_rag.compaction.compactor import compact_analysis, compact_entries
from sac_rag.compaction.refit import refit
from sac_rag.compaction.select import entry_budget, omp_select_entries, select_entries
from sac_rag.eval.answer import answer_text, stop_ids
from sac_rag.eval.distractors import with_distractors
from sac_rag.eval.methods import PASSAGE_SEPARATOR
from sac_rag.eval.metrics import squad_f1
from sac_rag.memory.chunk import HEADER, MemoryChunk
from sac_rag.model import SACModel
from sac_rag.qa import QAExample, load_qa
from sac_rag.text.prompt import context_ids, header_length, question_ids

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
SELECTION = ((DEV / "mrqa_dev_SQuAD.jsonl.gz", 6000, 3), (DEV / "mrqa_dev_DROP.jsonl", 900, 1))
POOL = 400  # questions read per dataset, the pool distractors are drawn from
MOON = "Who were the first humans to land on the Moon?"
KEEP = 0.2

#: variant name -> keyword arguments of :func:`sac_rag.compaction.refit.refit` (``None``: selection alone)
VARIANTS: dict[str, dict | None] = {
    "default": {},
    "nnls100": {"iterations": 100},
    "queries1536": {"max_queries": 1536},
    "queries1536_nnls100": {"max_queries": 1536, "iterations": 100},
    "select": None,
}
#: variant name -> keyword arguments of :func:`sac_rag.compaction.select.omp_select`: entries chosen within each head
#: by OMP on the mass-matching objective (each head keeps the default's count, BOS included), then the default refit
OMP_VARIANTS: dict[str, dict] = {
    "omp": {"normalise": True},  # rows scaled by their full mass, as the refit's NNLS scales them
    "omp_raw": {"normalise": False},  # the authors' rows: exp(s - rowmax), target the row's mass
}
#: composed variants: (memory kind, header): "each" (every memory its own), "shared" (one: ``shared_header``) or
#: "mass" (every memory its own, its header entries' attention mass divided by the number of memories, so that the
#: headers together weigh about what the raw text's one does: :func:`header_mass`)
COMPOSED = {
    "full_kv": ("full_kv", "each"),
    "full_kv_shared_header": ("full_kv", "shared"),
    "full_kv_header_mass": ("full_kv", "mass"),
    "compact": ("compact", "each"),
    "compact_shared_header": ("compact", "shared"),
    "compact_header_mass": ("compact", "mass"),
}


def header_mass(memories: list[MemoryChunk]) -> list[MemoryChunk]:
    """The memories with ``-log k`` (k memories) added to the logit bias of their context header's entries (a memory
    without a bias gets one: zero elsewhere)."""
    step = -math.log(len(memories))
    out = []
    for m in memories:
        layers, heads, n, _ = m.shape
        positions = m.positions.expand(layers, heads, n) if m.positions.ndim == 1 else m.positions
        bias = torch.zeros(layers, heads, n) if m.bias is None else m.bias
        bias = bias + step * ((positions >= 0) & (positions < m.meta.get(HEADER, 0)))
        out.append(MemoryChunk(m.keys, m.values, positions.clone(), m.length, m.offset, m.fingerprint, m.meta, bias))
    return out


def composition(reader: Reader, name: str, passages) -> tuple[list[MemoryChunk], bool]:
    """The memories of ``passages`` as composition ``name`` of :data:`COMPOSED` has them, and its shared-header
    switch."""
    kind, header = COMPOSED[name]
    memories = [reader.memory(kind, p) for p in passages]
    return (header_mass(memories) if header == "mass" else memories), header == "shared"


def selection_split(n: int, distractors: int = 0) -> list[QAExample]:
    """The first ``n`` selection questions: three SQuAD then one DROP, in file order from their starts; each set
    among ``distractors`` other passages of its dataset's selection questions (as ``sac-rag eval --distractors``)."""
    pools = [
        iter(with_distractors(load_qa(path)[start : start + max(4 * n, POOL)], distractors))
        for path, start, _ in SELECTION
    ]
    out: list[QAExample] = []
    while len(out) < n:
        for pool, (_, _, take) in zip(pools, SELECTION):
            out.extend(next(pool) for _ in range(take))
    return out[:n]


def variant_memory(model: SACModel, analysis, variant: str) -> MemoryChunk:
    """The passage's int8 compact memory at :data:`KEEP`, its refit given the variant's arguments (or its entries
    chosen by OMP: :func:`omp_memory`), marked with its context header as ``compress`` marks it."""
    if variant in OMP_VARIANTS:
        memory = omp_memory(analysis, **OMP_VARIANTS[variant])
        memory.meta[HEADER] = header_length(model.tokenizer, model.config)
        return memory
    kwargs = VARIANTS[variant]
    if kwargs is None:
        memory = compact_analysis(analysis, KEEP, refit_values=False, dtype=torch.int8)
    else:
        original = compactor_module.refit
        compactor_module.refit = functools.partial(refit, **kwargs)
        try:
            memory = compact_analysis(analysis, KEEP, dtype=torch.int8)
        finally:
            compactor_module.refit = original
    memory.meta[HEADER] = header_length(model.tokenizer, model.config)
    return memory


def omp_memory(analysis, *, normalise: bool) -> MemoryChunk:
    """The int8 compact memory at :data:`KEEP` whose heads keep the default's entry counts (one global threshold over
    the scores), the entries chosen within each head by OMP (:func:`omp_select_entries`), refitted as the default."""
    layers, heads, length, dim = analysis.keys.shape
    budget = entry_budget((layers, heads, dim), length, KEEP, torch.int8)
    counts = select_entries(analysis.scores, budget).sum(-1)
    kept = omp_select_entries(analysis.queries, analysis.keys, counts, normalise=normalise)
    memory = compact_entries(analysis, kept, dtype=torch.int8)
    memory.meta["keep"] = KEEP
    return memory


class Reader:
    """The default model's decoder (reader on), answering greedily and teacher-forced over memories or raw text."""

    def __init__(self, model: SACModel) -> None:
        self.model = model
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

    def _prompt(self, question: str, memories: list[MemoryChunk] | None, passages: tuple[str, ...], shared: bool):
        generator = self.model.generator(shared_header=shared)
        if memories is not None:
            return generator.decoder, generator.build_prompt(question, memories)
        config, tokenizer = self.model.config, self.model.tokenizer
        text = context_ids(tokenizer, PASSAGE_SEPARATOR.join(passages), config)
        return generator.decoder, [text + question_ids(tokenizer, question, config)]

    def answer(
        self, question: str, memories: list[MemoryChunk] | None, tokens: int, passages=(), shared: bool = False
    ) -> list[int]:
        """Greedy ids over ``memories``, or over ``passages`` as raw text (``memories`` None)."""
        decoder, segments = self._prompt(question, memories, passages, shared)
        return list(decoder.greedy(segments, tokens, self.stops))

    @torch.inference_mode()
    def log_probs(
        self, question: str, memories: list[MemoryChunk] | None, answer: list[int], passages=(), shared: bool = False
    ) -> torch.Tensor:
        """``[len(answer), vocab]``: the log-probabilities of each answer token's position, teacher-forced."""
        decoder, segments = self._prompt(question, memories, passages, shared)
        segments[-1] = [*segments[-1], *answer[:-1]]
        _, hidden, _ = decoder.run(segments)
        return torch.log_softmax(decoder.lm_head(hidden[-len(answer) :]).float(), -1)


def kl(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over positions of KL(reference || other), both log-probabilities."""
    return float((reference.exp() * (reference - other)).sum(-1).mean())


def measure(reader: Reader, example: QAExample, variants: list[str], tokens: int, join: bool = False) -> dict:
    """One passage: KL of each compact variant from the full K/V, on the full K/V's greedy answer, and the thread
    CPU seconds each variant's selection and refit took. ``join``: the passage is the question's passages (its own
    and its distractors) joined into one."""
    model = reader.model
    context = PASSAGE_SEPARATOR.join(example.prompt_passages) if join else example.context
    ids = context_ids(model.tokenizer, context, model.config)
    analysis = model.compactor().analyse(ids)
    full = [model.encode_full_kv([context])[0]]
    answer = reader.answer(example.question, full, tokens)
    reference = reader.log_probs(example.question, full, answer)
    record = {"qid": example.qid, "dataset": example.dataset, "answer_tokens": len(answer), "tokens": len(ids)}
    record.update(kl={}, seconds={})
    for name in variants:
        start = time.thread_time()
        memory = variant_memory(model, analysis, name)
        record["seconds"][name] = time.thread_time() - start
        record["kl"][name] = kl(reference, reader.log_probs(example.question, [memory], answer))
    return record


def measure_composed(reader: Reader, example: QAExample, tokens: int, names: list[str]) -> dict:
    """Several passages: KL from the raw text (on its greedy answer) and F1 of each composition of memories."""
    passages = example.prompt_passages
    tokenizer = reader.model.tokenizer
    answer = reader.answer(example.question, None, tokens, passages)
    reference = reader.log_probs(example.question, None, answer, passages)

    def text(ids: list[int]) -> str:
        return answer_text(tokenizer.decode(ids, skip_special_tokens=True))

    record = {"qid": example.qid, "dataset": example.dataset, "kl": {}, "f1": {}}
    record["f1"]["raw"] = squad_f1(text(answer), example.answers)
    for name in names:
        memories, shared = composition(reader, name, passages)
        record["kl"][name] = kl(reference, reader.log_probs(example.question, memories, answer, shared=shared))
        ids = reader.answer(example.question, memories, tokens, shared=shared)
        record["f1"][name] = squad_f1(text(ids), example.answers)
    return record


def demo_passages(model: SACModel, questions: list[str], n_passages: int = 240, k: int = 3) -> list[list[str]]:
    """Each question's passages as ``sac-rag demo`` retrieves them: the ``k`` nearest of its first ``n_passages``
    Wikipedia passages, best first."""
    from sac_rag.corpus import to_passages
    from sac_rag.corpus.demo_corpus import wikipedia_articles
    from sac_rag.embedding.embedder import resolve_embedder

    texts = list(to_passages(wikipedia_articles(), 160, model.count_tokens).head(n_passages).texts)
    embedder = resolve_embedder(None)
    vectors = embedder.embed(texts)
    return [[texts[i] for i in (vectors @ q).argsort()[::-1][:k]] for q in embedder.embed(questions)]


def demo_answers(reader: Reader, tokens: int = 32) -> None:
    """Print the demo's questions answered from the raw text and from each composition of :data:`COMPOSED`."""
    from sac_rag.cli.commands.demo import QUESTIONS

    tokenizer = reader.model.tokenizer
    for question, passages in zip(QUESTIONS, demo_passages(reader.model, list(QUESTIONS))):
        print(f"Q: {question}")
        ids = reader.answer(question, None, tokens, tuple(passages))
        print(f"  {'raw':>22}: {tokenizer.decode(ids, skip_special_tokens=True).strip()!r}")
        for name in COMPOSED:
            memories, shared = composition(reader, name, passages)
            ids = reader.answer(question, memories, tokens, shared=shared)
            print(f"  {name:>22}: {tokenizer.decode(ids, skip_special_tokens=True).strip()!r}")


def moon_margins(reader: Reader, variants: list[str], composed: bool) -> dict[str, float]:
    """Per variant, log p("Arm") - log p("John") for the Moon question's first answer token."""
    model = reader.model
    passages = demo_passages(model, [MOON])[0]
    arm, john = (model.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Arm", "John"))

    def margin(memories: list[MemoryChunk] | None, shared: bool = False) -> float:
        first = reader.log_probs(MOON, memories, [arm], tuple(passages), shared)[0]
        return float(first[arm] - first[john])

    out = {"raw": margin(None)}
    if composed:
        for name in variants:
            out[name] = margin(*composition(reader, name, passages))
        return out
    analyses = [model.compactor().analyse(context_ids(model.tokenizer, p, model.config)) for p in passages]
    out["full_kv"] = margin(model.encode_full_kv(passages))
    for name in variants:
        out[name] = margin([variant_memory(model, a, name) for a in analyses])
    return out


def done(path: Path) -> Iterator[dict]:
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def paired(values: list[tuple[float, float]]) -> tuple[float, float]:
    diffs = [b - a for a, b in values]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
    return statistics.mean(diffs), se


def summary(records: list[dict], variants: list[str]) -> str:
    """Each variant's mean KL, and its change and log ratio against the first variant, paired."""
    base = variants[0]
    lines = [f"{len(records)} questions; {base}: KL {statistics.mean(r['kl'][base] for r in records):.5f}"]
    log: Callable[[float], float] = lambda x: math.log(max(x, 1e-12))  # noqa: E731
    for name in variants[1:]:
        d, se = paired([(r["kl"][base], r["kl"][name]) for r in records])
        dl, sel = paired([(log(r["kl"][base]), log(r["kl"][name])) for r in records])
        mean = statistics.mean(r["kl"][name] for r in records)
        lines.append(f"{name:>20}: KL {mean:.5f}  dKL {d:+.5f} ± {se:.5f}  dlogKL {dl:+.3f} ± {sel:.3f}")
    timed = [r for r in records if "seconds" in r]
    if timed:
        tokens = statistics.mean(r["tokens"] for r in timed)
        seconds = "  ".join(f"{v} {statistics.mean(r['seconds'][v] for r in timed):.2f}" for v in variants)
        lines.append(f"selection + refit, thread CPU s per passage ({tokens:.0f} tokens on average): {seconds}")
    if "f1" in records[0]:
        for name in ["raw", *variants]:
            f1 = [100 * r["f1"][name] for r in records]
            lines.append(f"F1 {name:>20}: {statistics.mean(f1):.1f} ± {statistics.stdev(f1) / math.sqrt(len(f1)):.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=40)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *OMP_VARIANTS])
    p.add_argument("--distractors", type=int, default=0, help="compare compositions over gold + N passages instead")
    p.add_argument("--compositions", nargs="+", choices=list(COMPOSED), help="with --distractors (default: all)")
    p.add_argument("--join", action="store_true", help="with --distractors: one passage of them all, variants compared")
    p.add_argument("--answer-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--moon", action="store_true", help="also print the Moon question's margin per variant")
    p.add_argument("--demo", action="store_true", help="also print the demo's answers per composition")
    p.add_argument("--out", required=True, help="JSON lines, one per question (resumed)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = SACModel.default()
    reader = Reader(model)
    composed = bool(args.distractors) and not args.join
    variants = (args.compositions or list(COMPOSED)) if composed else args.variants
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = [r for r in done(out) if all(v in r["kl"] for v in variants)]
    seen = {r["qid"] for r in records}
    for example in selection_split(args.questions, args.distractors):
        if example.qid in seen:
            continue
        if composed:
            record = measure_composed(reader, example, args.answer_tokens, variants)
        else:
            record = measure(reader, example, variants, args.answer_tokens, join=args.join)
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
        scores = " ".join(f"{k}={v:.4f}" for k, v in record["kl"].items())
        print(f"[{len(records)}] {example.qid} {scores}", flush=True)
    if records:
        print(summary(records, variants))
    if args.moon:
        for name, value in moon_margins(reader, variants, composed).items():
            print(f"moon margin {name:>20}: {value:+.3f}")
    if args.demo:
        demo_answers(reader)


if __name__ == "__main__":
    main()
