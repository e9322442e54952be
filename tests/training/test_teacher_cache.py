"""Cached top-k distillation: the sparse KL, the on-disk cache of teacher targets, and training with it."""

import json

import pytest
import torch
from support.training import config, write_mrqa

from sac_rag.qa.datasets import QAExample
from sac_rag.testing import tiny_model
from sac_rag.training import TrainConfig, train
from sac_rag.training.objectives import distill_kl, topk_distill_kl
from sac_rag.training.tasks import SACTask
from sac_rag.training.teacher_cache import TeacherCache, TeacherCacheError, TopK, example_key

PARIS, TURING = "Paris is in France.", "Turing was born in 1912."
SAMPLE = QAExample("q", "Where is Paris?", PARIS, ("France",), passages=(PARIS, TURING))


def test_topk_kl_is_the_full_kl_when_k_is_the_vocabulary_and_never_negative():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 40, generator=g), torch.randn(5, 40, generator=g)
    full = TopK.of(teacher, 40)
    for t in (1.0, 2.0):
        sparse = topk_distill_kl(student, full.indices, full.logprobs, t)
        torch.testing.assert_close(sparse, distill_kl(student, teacher, t), atol=1e-5, rtol=1e-5)
    top = TopK.of(teacher, 4)
    assert top.indices.shape == (5, 4) and topk_distill_kl(student, top.indices, top.logprobs) > 0
    # a student with all its mass on the teacher's top k, in the teacher's proportions, has nothing to learn
    student = torch.full((5, 40), -1e4).scatter(-1, top.indices, top.logprobs)
    assert topk_distill_kl(student, top.indices, top.logprobs).abs() < 1e-5
    with pytest.raises(ValueError, match="vocabulary size 40"):
        TopK.of(teacher, 41)


def test_cache_round_trips_and_serves_only_its_own_teacher_and_k(tmp_path):
    path = tmp_path / "cache"
    top = TopK.of(torch.randn(3, 20), 5)
    calls = []
    cache = TeacherCache(path, teacher="t1", k=5)
    got = cache.lookup([1, 2], [3, 4, 5], lambda: calls.append(1) or torch.randn(3, 20))
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    cache.put(example_key([7], [8, 9, 10]), top)

    again = TeacherCache(path, teacher="t1", k=5)  # a restarted run finds what the last one computed
    same = again.lookup([1, 2], [3, 4, 5], lambda: pytest.fail("the teacher ran for a cached example"))
    assert torch.equal(same.indices, got.indices) and torch.equal(same.logprobs, got.logprobs)
    stored = again.get(example_key([7], [8, 9, 10]), 3)
    assert torch.equal(stored.indices, top.indices) and torch.equal(stored.logprobs, top.logprobs)
    assert again.hits == 1 and calls == [1] and len(again) == 2
    assert not list(path.rglob("*.tmp"))  # atomic writes leave nothing behind
    for teacher, k in (("t2", 5), ("t1", 6)):
        with pytest.raises(TeacherCacheError, match="cache holds the targets of teacher t1 at k=5"):
            TeacherCache(path, teacher=teacher, k=k)


def test_foreign_or_corrupt_caches_are_named(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(TeacherCacheError, match="a_file: not a teacher cache"):
        TeacherCache(tmp_path / "a_file", teacher="t", k=2)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(TeacherCacheError, match="busy: not a teacher cache"):
        TeacherCache(tmp_path / "busy", teacher="t", k=2)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cache.json").write_text('{"format": "something else"}')
    with pytest.raises(TeacherCacheError, match="cache.json: not a teacher cache record"):
        TeacherCache(tmp_path / "bad", teacher="t", k=2)

    cache = TeacherCache(tmp_path / "cache", teacher="t", k=2)
    cache.lookup([1], [2, 3], lambda: torch.randn(2, 10))
    (entry,) = (tmp_path / "cache").glob("*/*.safetensors")
    entry.write_bytes(b"\x00" * 40)
    with pytest.raises(TeacherCacheError, match=f"{entry.name}: corrupt teacher targets"):
        cache.lookup([1], [2, 3], lambda: torch.randn(2, 10))
    cache.put(example_key([4], [5]), TopK.of(torch.randn(2, 10), 2))
    with pytest.raises(TeacherCacheError, match=r"shape \(2, 2\), expected \(5, 2\)"):
        cache.get(example_key([4], [5]), 5)


def test_cached_distillation_matches_the_teacher_and_skips_it_once_cached(tmp_path, monkeypatch):
    model = tiny_model(rank=4)
    vocab = model.base_model.get_output_embeddings().weight.shape[0]
    full = SACTask(model, distill_weight=0.5)
    cached = SACTask(model, distill_weight=0.5, teacher_cache=TeacherCache(tmp_path / "c", teacher="t", k=vocab))
    with torch.no_grad():
        want, want_parts = full.loss(SAMPLE)
        got, parts = cached.loss(SAMPLE)
    assert parts["teacher_cached"] == 0.0 and parts["kl"] == pytest.approx(want_parts["kl"], rel=1e-4, abs=1e-6)
    assert got.item() == pytest.approx(want.item(), rel=1e-4)
    monkeypatch.setattr(cached, "_teacher_logits", lambda *a: pytest.fail("the teacher ran for a cached example"))
    with torch.no_grad():
        again, parts = cached.loss(SAMPLE)
    assert parts["teacher_cached"] == 1.0 and again.item() == pytest.approx(got.item(), rel=1e-6)


def test_a_cached_teacher_must_stay_frozen(tmp_path):
    model = tiny_model(rank=4, reader_rank=4, reader_alpha=8.0)
    cache = TeacherCache(tmp_path / "c", teacher="t", k=4)
    with pytest.raises(ValueError, match="cached teacher must stay frozen"):
        SACTask(model, distill_weight=0.5, teacher_cache=cache, train_reader=True)
    with pytest.raises(ValueError, match="cached teacher must stay frozen"):
        config(tmp_path, distill_weight=0.5, distill_top_k=4, reader_lr=1e-4)
    with pytest.raises(ValueError, match="need distill_weight > 0"):
        config(tmp_path, distill_top_k=4)
    with pytest.raises(ValueError, match="distill_cache needs distill_top_k"):
        config(tmp_path, distill_weight=0.5, distill_cache=str(tmp_path / "c"))


def test_training_with_a_cache_fills_it_once_and_logs_the_hit_rate(tmp_path):
    cfg = config(tmp_path, steps=4, grad_accum=2, eval_every=2, max_distractors=0, distill_weight=0.5, distill_top_k=8)
    cache = TeacherCache(tmp_path / "run" / "teacher_topk", teacher="t", k=8)
    train(cfg, task=SACTask(tiny_model(rank=4), distill_weight=0.5, teacher_cache=cache))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert all("teacher_cached" in r and r["kl"] >= 0 for r in train_rows)
    # 5 toy training examples drawn 8 times and one held-out example evaluated 3 times: repeats are hits
    assert cache.misses == len(cache) <= 6 and cache.hits >= 5 and cache.hits + cache.misses == 11
    assert TrainConfig.load(tmp_path / "run").distill_top_k == 8


def test_cli_accepts_the_top_k_flags(tmp_path):
    from sac_rag.cli.main import build_parser

    write_mrqa(tmp_path / "toy.jsonl")
    args = build_parser().parse_args(
        ["train", "-o", str(tmp_path / "r"), "--train-files", str(tmp_path / "toy.jsonl"), "--distill-weight", "1"]
        + ["--distill-top-k", "16", "--distill-cache", str(tmp_path / "shared")]
    )
    assert args.distill_top_k == 16 and args.distill_cache == str(tmp_path / "shared")
