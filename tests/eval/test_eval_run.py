"""A tiny end-to-end evaluation: both data formats, every method, report files, resume, CLI."""

import json
from dataclasses import replace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from sac_rag.cli.main import main
from sac_rag.eval import build
from sac_rag.eval.answer import answer_text, stop_ids
from sac_rag.eval.build import build_methods
from sac_rag.eval.evaluate import evaluate, load_examples
from sac_rag.eval.methods import SAC, Truncate, UniformDrop
from sac_rag.eval.runner import PREDICTIONS, read_predictions
from sac_rag.testing import tiny_llama, tiny_model

CONTEXT = "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge."


def _data(tmp_path):
    mrqa = tmp_path / "toy.jsonl"
    header = {"header": {"dataset": "ToyMRQA"}}
    record = {
        "context": CONTEXT,
        "qas": [
            {"qid": "m1", "question": "Where was Turing born?", "answers": ["London", "in London"]},
            {"qid": "m2", "question": "When was Turing born?", "answers": ["1912"]},
        ],
    }
    mrqa.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    squad = tmp_path / "toy.json"
    doc = {
        "version": "ToySQuAD",
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "Paris is the capital of France. The quick brown fox jumps over the lazy dog.",
                        "qas": [{"id": "s1", "question": "What is Paris?", "answers": [{"text": "the capital"}]}],
                    }
                ]
            }
        ],
    }
    squad.write_text(json.dumps(doc))
    return [mrqa, squad]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def adapter_dir(tmp_path):
    peft = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    path = tmp_path / "fullft"
    peft.save_pretrained(path)
    return path


def _keys(out):
    return [(r["method"], r["qid"]) for r in read_predictions(out / PREDICTIONS)]


def test_loaders_both_formats(tmp_path):
    examples = load_examples(_data(tmp_path))
    # interleaved: a run stopped early has covered every file
    assert [(e.dataset, e.qid) for e in examples] == [("ToyMRQA", "m1"), ("ToySQuAD", "s1"), ("ToyMRQA", "m2")]
    assert examples[1].answers == ("the capital",)
    assert len(load_examples(_data(tmp_path), limit=1)) == 2  # the limit is per file


def test_budgets_match_sac(tmp_path, model):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"context": CONTEXT * 3, "qas": [{"qid": "q", "question": "Who?", "answers": ["A"]}]}))
    (ex,) = load_examples([path])
    sac, trunc, drop = SAC(model, "tiny"), Truncate(model, model.config.ratio), UniformDrop(model, model.config.ratio)
    memory = model.compress([ex.context])[0]
    question = len(sac._question(ex))
    assert trunc.prompt(ex).entries == drop.prompt(ex).entries == memory.n_anchors + question
    assert sac.prompt(ex).entries == memory.n_anchors + 1 + question  # + [LM]
    kept = drop.prompt(ex).segments[0][: memory.n_anchors]
    context = sac._context(ex)
    assert kept == [context[i] for i in memory.positions.tolist()]  # the raw tokens at the anchors


def test_answer_cut_at_newline(model):
    assert answer_text(" London\n### Question:") == "London"
    newline = model.tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert set(newline) <= stop_ids(model.tokenizer)
    assert model.tokenizer.eos_token_id in stop_ids(model.tokenizer)


def test_end_to_end_and_resume(tmp_path, model, adapter_dir):
    examples = load_examples(_data(tmp_path))
    out = tmp_path / "out"
    first = build_methods(["raw", "sac", "truncate"], [("tiny", model)], load_base=tiny_llama)
    summary, files = evaluate(first, examples, out, max_new_tokens=4, progress=False)
    assert {f.name for f in files} == {"results.json", "results.md", "f1_vs_ratio.png", "ttft.png"}
    assert all(f.stat().st_size > 0 for f in files)
    assert summary["questions"] == 3
    assert [m["key"][:4] for m in summary["methods"]] == ["raw", "sac_", "trun"]
    before = (out / PREDICTIONS).read_text()
    assert len(before.splitlines()) == 9

    # an interrupted write leaves a torn line: it is skipped and redone
    (out / PREDICTIONS).write_text(before + '{"method": "no_con')
    names = ["raw", "no_context", "sac", "truncate", "drop", "full_kv", "full_ft"]
    more = build_methods(names, [("tiny", model)], full_ft=[adapter_dir], load_base=tiny_llama)
    summary, _ = evaluate(more, examples, out, max_new_tokens=4, progress=False)
    after = (out / PREDICTIONS).read_text()
    assert after.startswith(before)  # old predictions reused, never rewritten
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == 3 * 7  # nothing answered twice
    assert len(summary["methods"]) == 7 and summary["questions"] == 3
    table = (out / "results.md").read_text()
    assert "Full-FT raw context (fullft)" in table and "Uniform token drop (r=5)" in table
    # full-KV reuse decodes exactly what the raw context decodes (same base, same positions)
    by = {(r["method"], r["qid"]): r["output"] for r in read_predictions(out / PREDICTIONS)}
    assert all(by[("full_kv", q)] == by[("raw", q)] for q in ("m1", "m2", "s1"))

    with pytest.raises(ValueError, match="max_new_tokens"):
        evaluate(first, examples, out, max_new_tokens=5, progress=False)


def test_shared_header_methods_differ_from_the_default_only_with_several_passages(tmp_path, model):
    names = ["full_kv", "full_kv@shared_header", "compact@shared_header"]
    methods = build_methods(names, [("tiny", model)], ratios=[5])
    assert [m.key for m in methods] == ["full_kv", "full_kv_shared_header", "compact_int8_r5_shared_header"]
    assert [m.decoder.shared_header for m in methods] == [False, True, True]
    assert methods[2].label.endswith(", one header")
    example = load_examples(_data(tmp_path)[:1])[0]
    several = replace(example, passages=(CONTEXT, "Paris is the capital of France.", CONTEXT))

    def first_logits(method, ex):
        return method.decoder.prefill(method.prompt(ex).segments)[1]

    with torch.no_grad():
        one = [first_logits(m, example) for m in methods[:2]]
        three = [first_logits(m, several) for m in methods[:2]]
    torch.testing.assert_close(one[0], one[1], rtol=0, atol=0)  # one passage: no header to share
    assert not torch.allclose(three[0], three[1], atol=1e-4)  # three: the later headers left out or not


def test_build_errors(model):
    with pytest.raises(ValueError, match="unknown method"):
        build_methods(["nope"], [("tiny", model)])
    with pytest.raises(ValueError, match="--full-ft"):
        build_methods(["full_ft"], [("tiny", model)])
    assert [m.key for m in build_methods(["drop"], [("tiny", model)], ratios=[2, 4])] == ["drop_r2", "drop_r4"]


def test_cli(tmp_path, model, monkeypatch, capsys):
    monkeypatch.setattr(build, "load_sac", lambda spec: ("tiny", model))
    data = [str(p) for p in _data(tmp_path)]
    argv = ["eval", "--data", *data, "--limit", "1", "--methods", "raw", "sac", "--out", str(tmp_path / "o")]
    assert main([*argv, "--max-new-tokens", "3", "--no-progress"]) == 0
    assert "| Raw context (base) |" in capsys.readouterr().out
    assert len(_keys(tmp_path / "o")) == 4
    run = json.loads((tmp_path / "o" / "results.json").read_text())["run"]
    assert run["data"] == ["toy.jsonl", "toy.json"]  # by name: no path of this machine in a results file


PLUGIN = """
from dataclasses import replace

from sac_rag.eval.methods import Method, Prompt


class FirstSentence(Method):
    key, label = "first_sentence", "First sentence of the context"

    def prompt(self, example):
        first = example.context.split(". ")[0] + "."
        ids = self._context(replace(example, context=first)) + self._question(example)
        return Prompt([ids], len(ids))


def make(model):
    return FirstSentence(model)


def broken(model):
    return "not a method"
"""


def _install_plugin(tmp_path, monkeypatch, **entry_points):
    """A package installed on sys.path with entry points in group sac_rag.eval_methods."""
    (tmp_path / "toy_eval_plugin.py").write_text(PLUGIN)
    info = tmp_path / "toy_eval_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-eval-plugin\nVersion: 1.0\n")
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("[sac_rag.eval_methods]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_installed_extra_method(tmp_path, model, monkeypatch, capsys):
    _install_plugin(tmp_path, monkeypatch, first_sentence="toy_eval_plugin:make", broken="toy_eval_plugin:broken")
    data = [str(p) for p in _data(tmp_path)]
    monkeypatch.setattr(build, "load_sac", lambda spec: ("tiny", model))
    argv = ["eval", "--data", *data, "--methods", "raw", "first_sentence", "--out", str(tmp_path / "o")]
    assert main([*argv, "--max-new-tokens", "3", "--no-progress"]) == 0
    assert "| First sentence of the context |" in capsys.readouterr().out
    records = list(read_predictions(tmp_path / "o" / PREDICTIONS))
    assert sorted({r["method"] for r in records}) == ["first_sentence", "raw"]
    first = {r["qid"]: r["entries"] for r in records if r["method"] == "first_sentence"}
    raw = {r["qid"]: r["entries"] for r in records if r["method"] == "raw"}
    assert first["m1"] < raw["m1"]  # its own prompt: only the first sentence of the context
    with pytest.raises(TypeError, match=r"eval method 'broken' \(toy_eval_plugin:broken\) returned"):
        build_methods(["broken"], [("tiny", model)])


def test_installed_method_cannot_shadow_builtin(tmp_path, model, monkeypatch):
    _install_plugin(tmp_path, monkeypatch, raw="toy_eval_plugin:make")
    with pytest.raises(ValueError, match="reuse a built-in method name"):
        build_methods(["nope"], [("tiny", model)])
