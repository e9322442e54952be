"""The multi-passage evaluation setting: each question's passage among distractors, memories composed."""

import json

import pytest

from sac_rag.cli.main import main
from sac_rag.eval import build
from sac_rag.eval.distractors import distractor_label, with_distractors
from sac_rag.eval.methods import FullKV, Truncate
from sac_rag.eval.runner import PREDICTIONS, read_predictions
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.qa.datasets import QAExample
from sac_rag.testing import tiny_model

CONTEXTS = [
    "Alan Turing was born in 1912 in London.",
    "Paris is the capital of France.",
    "The Nile is a river in Africa.",
    "Mount Everest is the highest mountain.",
]


def _examples() -> list[QAExample]:
    # two questions share the first passage, as in MRQA files
    rows = [(0, "a"), (0, "b"), (1, "c"), (2, "d"), (3, "e")]
    return [QAExample(qid, f"question {qid}?", CONTEXTS[c], ("x",), "Toy") for c, qid in rows]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_distractors_are_other_passages_of_the_dataset():
    out = with_distractors(_examples(), 2)
    assert with_distractors(_examples(), 2) == out  # deterministic
    for ex in out:
        assert ex.dataset == distractor_label("Toy", 2)
        assert len(ex.prompt_passages) == 3 == len(set(ex.prompt_passages))
        assert ex.prompt_passages.count(ex.context) == 1
        assert set(ex.prompt_passages) <= set(CONTEXTS)
    # the gold passage does not always sit in the same place
    assert len({ex.prompt_passages.index(ex.context) for ex in out}) > 1
    assert with_distractors(_examples(), 0) == _examples()
    assert _examples()[0].prompt_passages == (CONTEXTS[0],)
    with pytest.raises(ValueError, match="too few for 4 distractors"):
        with_distractors(_examples(), 4)


def test_memories_per_passage_and_budgets_per_passage(model):
    (ex, *_) = with_distractors(_examples(), 2)
    memories = [s for s in FullKV(model).prompt(ex).segments if isinstance(s, MemoryChunk)]
    # one memory per passage, each the passage's own full K/V, composed in the prompt's order
    singles = [model.encode_full_kv([p])[0] for p in ex.prompt_passages]
    assert [m.n_anchors for m in memories] == [m.n_anchors for m in singles]
    trunc = Truncate(model, 2)
    question = len(trunc._question(ex))
    per_passage = [len(trunc._kept(piece)) for piece in trunc._passage_pieces(ex)]
    assert trunc.prompt(ex).entries == sum(per_passage) + question
    assert all(n > 0 for n in per_passage)  # every passage keeps its share, not only the first


def test_cli_reports_the_multi_passage_setting(tmp_path, model, monkeypatch, capsys):
    monkeypatch.setattr(build, "load_sac", lambda spec: ("tiny", model))
    data = tmp_path / "toy.jsonl"
    lines = [json.dumps({"header": {"dataset": "Toy"}})]
    lines += [
        json.dumps({"context": c, "qas": [{"qid": f"q{i}", "question": "Who?", "answers": ["x"]}]})
        for i, c in enumerate(CONTEXTS)
    ]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    argv = ["eval", "--data", str(data), "--methods", "raw", "full_kv", "--distractors", "2", "--out", str(out)]
    assert main([*argv, "--max-new-tokens", "2", "--no-progress"]) == 0
    assert "Toy +2 distractors" in capsys.readouterr().out
    records = list(read_predictions(out / PREDICTIONS))
    assert len(records) == 8 and {r["dataset"] for r in records} == {"Toy +2 distractors"}
    with pytest.raises(SystemExit) as usage:
        main([*argv[:-4], "--distractors", "-1", "--out", str(out)])
    assert usage.value.code == 2
