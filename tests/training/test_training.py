"""Training pipeline on the tiny random model: loss goes down, resume is exact, QA loss masks all but the answer."""

import json
from dataclasses import replace

import pytest
import torch
from support.training import config, write_mrqa

from sac_rag.memory.compose import LM
from sac_rag.qa import MalformedRecord, QAExample
from sac_rag.testing import TOKENIZER_CORPUS, tiny_llama, tiny_model, tiny_tokenizer
from sac_rag.training import train
from sac_rag.training.data import QAPool, load_examples, load_texts
from sac_rag.training.objectives import IGNORE, shifted
from sac_rag.training.tasks import FullFTTask, SACTask, answer_ids, load_fullft_teacher
from sac_rag.training.trainer import Interrupted


def task(**kw):
    return SACTask(tiny_model(rank=4), **kw)


def _losses(run_dir, kind="train", key="loss"):
    return [
        json.loads(line)[key]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == kind
    ]


def test_few_steps_lower_the_loss(tmp_path):
    cfg = config(tmp_path, steps=16, max_distractors=0, lr=5e-2, embedding_lr=5e-2)
    result = train(cfg, task=task())
    losses = _losses(tmp_path / "run")
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1  # a random tiny decoder is near-uniform: small but clear
    assert (result.final_dir / "sac_config.json").is_file()
    assert (tmp_path / "run" / "loss.png").is_file()
    assert len(_losses(tmp_path / "run", "eval", "eval_loss")) == 4  # steps 0, 6, 12 and the last


def test_only_sac_parameters_change(tmp_path):
    t = task()
    base = {n: p.detach().clone() for n, p in t.model.base_model.named_parameters() if "lora_" not in n}
    sac = {n: p.detach().clone() for n, p in t.parameters().items()}
    train(config(tmp_path, steps=3), task=t)
    for n, p in t.model.base_model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), n
    unchanged = [n for n, p in t.parameters().items() if torch.equal(p, sac[n])]
    # the last layer's q_proj only shapes hidden states the compressor throws away: it gets no gradient
    assert unchanged == [n for n in sac if "layers.1.self_attn.q_proj" in n]


def test_resume_continues_the_same_trajectory(tmp_path):
    full = train(config(tmp_path / "a", steps=6, eval_every=3), task=task(), checkpoint_every=100)
    cfg = config(tmp_path / "b", steps=6, eval_every=3)
    with pytest.raises(Interrupted):
        train(cfg, task=task(), checkpoint_every=3, interrupt_after=4)  # killed after step 4, checkpoint at 3
    resumed = train(cfg, task=task())  # a fresh process would rebuild the same untrained model
    assert resumed.state.step == full.state.step == 6
    a, b = _losses(tmp_path / "a" / "run"), _losses(tmp_path / "b" / "run")
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, abs=1e-6)
    ta, tb = task(), task()
    ta.load(full.final_dir)
    tb.load(resumed.final_dir)
    for (n, p), q in zip(ta.parameters().items(), tb.parameters().values()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_qa_loss_masks_everything_but_the_answer():
    tok = tiny_tokenizer()
    t = task()
    sample = QAExample("q", "Where is Paris?", "Paris is in France.", ("France",))
    _, prompt, target, _ = t._layout(sample)
    assert target == answer_ids(tok, "France") and target[-1] == tok.eos_token_id
    inputs, labels = shifted(prompt, target)
    assert prompt[0] is LM and inputs[: len(prompt)] == prompt
    assert labels == [IGNORE] * (len(prompt) - 1) + target  # question and [LM] unscored, answer + EOS scored
    # changing the question's tokens changes nothing scored; changing the answer changes the loss
    other = QAExample("q", "Where is Paris?", "Paris is in France.", ("Paris",))
    assert t.loss(sample)[0].item() != pytest.approx(t.loss(other)[0].item())


def test_qa_loss_gradient_reaches_only_through_answer_positions():
    t = task()
    sample = QAExample("q", "Where is Paris?", "Paris is in France.", ("France",))
    loss, _ = t.loss(sample)
    loss.backward()
    assert t.model.special_tokens.grad[0].abs().sum() == 0  # [AE] is never used
    assert t.model.special_tokens.grad[1].abs().sum() > 0  # [LM] is
    assert t.model.role_tokens.grad.abs().sum() > 0


def test_pool_holds_out_whole_contexts_and_is_deterministic(tmp_path):
    examples = load_examples([write_mrqa(tmp_path / "t.jsonl")])
    pool = QAPool(examples, seed=3, eval_size=2, max_distractors=2)
    held = {ex.context for ex in pool.held_out}
    assert held and not held & {ex.context for ex in pool.train}
    again = QAPool(examples, seed=3, eval_size=2, max_distractors=2)
    for i in range(10):
        s = pool.sample(i)
        assert s == again.sample(i)
        assert s.context in s.passages and s.context in {ex.context for ex in pool.train} and not set(s.passages) & held
        assert len(set(s.passages)) == len(s.passages) <= 3


def test_a_drawn_example_is_the_files_qa_example_among_passages_and_only_distractors_are_cut(tmp_path):
    from sac_rag.qa import load_qa
    from sac_rag.training.trainer import unrelated_samples

    path = write_mrqa(tmp_path / "t.jsonl")
    pool = QAPool(load_examples([path]), seed=0, eval_size=1, max_distractors=2)
    drawn = [pool.sample(i) for i in range(12)]
    read = {ex.qid: ex for ex in load_qa(path)}
    assert all(isinstance(s, QAExample) and s == replace(read[s.qid], passages=s.passages) for s in drawn)
    s = next(s for s in drawn if len(s.passages) > 1)
    seqs = task(max_distractor_tokens=3)._layout(s)[0]
    assert [len(q) > 3 for q in seqs] == [p == s.context for p in s.passages]  # the gold passage is never cut
    (swapped, *_) = unrelated_samples([s, QAExample("o", "?", "Another text here.", ("x",))])
    assert swapped.prompt_passages == ("Another text here.",) and swapped.answer == s.answer
    assert all(len(q) <= 3 for q in task(max_distractor_tokens=3)._layout(swapped)[0])  # no gold among them


def test_loaders_reject_malformed_records(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "x", "qas": [{"qid": "q9", "answers": ["a"]}]}) + "\n")
    with pytest.raises(MalformedRecord, match=r"bad.jsonl:1: question q9"):
        load_examples([bad])
    unanswerable = tmp_path / "none.jsonl"
    unanswerable.write_text(json.dumps({"context": "x", "qas": [{"qid": "q1", "question": "?", "answers": []}]}) + "\n")
    with pytest.raises(MalformedRecord, match="no answerable"):
        load_examples([unanswerable])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(MalformedRecord, match="empty.txt: no text"):
        load_texts(empty)


def test_lm_stage_on_plain_text(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text(
        "\n\n".join(TOKENIZER_CORPUS[:1] + TOKENIZER_CORPUS[2:] + [c + " " + c for c in TOKENIZER_CORPUS[2:]])
    )
    cfg = config(tmp_path, stage="lm", train_files=[str(text)], steps=3, eval_size=1)
    result = train(cfg, task=task(lm_max_tokens=64))
    assert result.state.step == 3 and len(_losses(tmp_path / "run", "eval", "eval_loss")) == 2


def test_distillation_adds_a_kl_term(tmp_path):
    t = task(distill_weight=0.5)
    sample = QAExample("q", "Where is Paris?", "Paris is in France.", ("France",))
    loss, parts = t.loss(sample)
    assert parts["kl"] >= 0 and loss.item() == pytest.approx(parts["ce"] + 0.5 * parts["kl"], rel=1e-5)


def test_fullft_reference_trains_and_teaches(tmp_path):
    from sac_rag import SACConfig

    ft = FullFTTask(tiny_llama(), tiny_tokenizer(), SACConfig(lora_rank=4, lora_alpha=8, base_model="tiny-llama"))
    cfg = config(tmp_path, task="fullft", steps=16, max_distractors=0, lr=5e-2)
    result = train(cfg, task=ft)
    losses = _losses(tmp_path / "run")
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1
    assert (result.final_dir / "adapter_config.json").is_file()

    # the saved adapter, loaded as a distillation teacher, is the trained reference reading the raw context
    teacher = load_fullft_teacher(result.final_dir, tiny_llama(), "tiny-llama")
    sample = QAExample("q", "Where is Paris?", "Paris is in France.", ("France",))
    student = task(distill_weight=0.5, teacher=teacher)
    _, _, target, prefix = student._layout(sample)
    inputs, labels = shifted(prefix, target)
    trained = ft.peft.get_base_model()
    with torch.no_grad():
        expected = trained(input_ids=torch.tensor([inputs])).logits[0][torch.tensor(labels) != IGNORE]
    got = student._teacher_logits(prefix, target)
    assert torch.allclose(got, expected, atol=1e-4)
    base_only = task(distill_weight=0.5)._teacher_logits(prefix, target)
    assert not torch.allclose(got, base_only, atol=1e-2)  # not the untuned base
    loss, parts = student.loss(sample)
    assert parts["kl"] >= 0 and loss.item() == pytest.approx(parts["ce"] + 0.5 * parts["kl"], rel=1e-5)
    with pytest.raises(ValueError, match="trained on tiny-llama"):
        load_fullft_teacher(result.final_dir, tiny_llama(), "another-base")
    with pytest.raises(ValueError, match="distill_teacher needs"):
        config(tmp_path, distill_teacher=str(result.final_dir))


def test_export_casts_to_bf16_and_loads(tmp_path):
    from sac_rag import SACModel
    from sac_rag.training.export import export_checkpoint

    t = task()
    t.save(tmp_path / "ckpt")
    out = export_checkpoint(tmp_path / "ckpt", tmp_path / "shipped", card="# card\n")
    assert (out / "README.md").read_text() == "# card\n"
    assert (out / "adapter_model.safetensors").stat().st_size < (
        tmp_path / "ckpt" / "adapter_model.safetensors"
    ).stat().st_size
    loaded = SACModel.from_pretrained(out, base=tiny_llama(), tokenizer=tiny_tokenizer())
    for (n, p), q in zip(t.parameters().items(), loaded.sac_parameters().values()):
        assert torch.allclose(p, q, rtol=1e-2, atol=1e-3), n


def test_loss_plot_by_wall_time_and_cross_entropy(tmp_path):
    from sac_rag.training.plots import plot_runs

    cfg = config(tmp_path, steps=3, eval_every=2)
    train(cfg, task=task(distill_weight=0.5))
    metrics = tmp_path / "run" / "metrics.jsonl"
    out = plot_runs([("distilled", metrics)], tmp_path / "ce.png", train_key="ce", x="minutes")
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match="x must be one of"):
        plot_runs([("distilled", metrics)], tmp_path / "bad.png", x="seconds")
    with pytest.raises(KeyError):
        plot_runs([("distilled", metrics)], tmp_path / "bad.png", train_key="no_such_metric")
