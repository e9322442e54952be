"""Training with sac_rag's extensions (attention sink, reader adapter) and the JSON-lines corpus reader."""

import argparse
import gzip
import json

import pytest
import torch
from support.training import config

from sac_rag.decoding.generate import MemoryDecoder
from sac_rag.memory.compose import Sink
from sac_rag.qa import MalformedRecord
from sac_rag.qa.datasets import QAExample
from sac_rag.testing import tiny_model
from sac_rag.training import train
from sac_rag.training.data import load_texts
from sac_rag.training.tasks import SACTask
from sac_rag.training.trainer import make_optimizer

SAMPLE = QAExample("q", "Where is Paris?", "Paris is in France.", ("France",))


def snapshot(params: dict) -> dict:
    return {n: p.detach().clone() for n, p in params.items()}


def changed(before: dict, params: dict) -> set[str]:
    return {n for n, p in params.items() if not torch.equal(p, before[n])}


def test_frozen_reader_stays_and_the_compressor_learns_through_it(tmp_path):
    t = SACTask(tiny_model(rank=4, reader_rank=4, reader_alpha=8.0, attention_sink=True))
    reader = snapshot(t.model.reader_parameters())
    compressor = snapshot(t.model.sac_parameters())
    assert not set(reader) & set(t.parameters())
    train(config(tmp_path, steps=3, eval_size=2), task=t)
    assert not changed(reader, t.model.reader_parameters())
    assert len(changed(compressor, t.model.sac_parameters())) > len(compressor) // 2
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["kind"] == "eval"]
    for e in evals:  # the memory check: the same questions over passages that do not hold their answers
        assert e["memory_information"] == pytest.approx(e["eval_loss_unrelated"] - e["eval_loss"])
        assert e["eval_loss_unrelated"] != pytest.approx(e["eval_loss"])


def test_reader_trained_jointly_gets_its_own_rate(tmp_path):
    t = SACTask(tiny_model(rank=4, reader_rank=4, reader_alpha=8.0), train_reader=True)
    cfg = config(tmp_path, steps=3, reader_lr=1e-2)
    groups = make_optimizer(t.parameters(), cfg).param_groups
    assert [g["base_lr"] for g in groups] == [cfg.lr, cfg.embedding_lr, 1e-2]
    assert len(groups[2]["params"]) == len(t.model.reader_parameters())
    reader = snapshot(t.model.reader_parameters())
    train(cfg, task=t)
    assert changed(reader, t.model.reader_parameters())
    with pytest.raises(ValueError, match="needs a model with a reader"):
        SACTask(tiny_model(rank=4), train_reader=True)


def test_training_decodes_in_the_serving_layout_with_the_sink(monkeypatch):
    t = SACTask(tiny_model(rank=4, attention_sink=True))
    seen = []
    run = MemoryDecoder.run

    def spy(self, segments):
        seen.append(segments)
        return run(self, segments)

    monkeypatch.setattr(MemoryDecoder, "run", spy)
    t.loss(SAMPLE)
    monkeypatch.undo()
    assert isinstance(seen[0][0], Sink)
    plain = SACTask(tiny_model(rank=4))
    assert t.loss(SAMPLE)[0].item() != pytest.approx(plain.loss(SAMPLE)[0].item())


def test_corpus_jsonl_is_read_for_stage_one(tmp_path):
    path = tmp_path / "wiki.jsonl.gz"
    records = [{"id": str(i), "title": f"T{i}", "text": f"Article {i} text. " * 3} for i in range(5)]
    records.insert(2, {"id": "x", "title": "empty", "text": "  "})
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    texts = load_texts(path)
    assert texts == [r["text"].strip() for r in records if r["text"].strip()]
    assert load_texts(path, limit=2) == texts[:2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": 3}) + "\n")
    with pytest.raises(MalformedRecord, match=r"bad.jsonl:2: a corpus record needs a 'text'"):
        load_texts(bad)


def test_train_cli_reads_booleans():
    from sac_rag.cli.commands.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "-o", "x", "--attention-sink", "false", "--reader-lr", "1e-4"])
    assert args.attention_sink is False and args.reader_lr == 1e-4
    assert parser.parse_args(["train", "-o", "x", "--attention-sink", "true"]).attention_sink is True
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "-o", "x", "--attention-sink", "maybe"])
