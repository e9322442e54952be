"""sac_rag's extensions of the official design: the attention sink and the reader adapter."""

import json

import pytest
import torch
from peft import PeftModel
from support.models import randomize_reader

from sac_rag import SACConfig, SACModel
from sac_rag.memory.compose import FIRST_POSITION, LM, Sink, composed_length, layout
from sac_rag.testing import text_of_tokens, tiny_llama, tiny_model, tiny_tokenizer

QUESTION = "Where was Alan Turing born?"


def first_logits(model: SACModel, segments, memories=None) -> torch.Tensor:
    """The first answer token's logits for built ``segments``, or for a question over ``memories``."""
    generator = model.generator()
    if memories is not None:
        segments = generator.build_prompt(segments, memories)
    with torch.no_grad():
        return generator.decoder.prefill(segments)[1]


# ---------------------------------------------------------------- attention sink
def test_sink_opens_the_prompt_without_moving_the_memories():
    model = tiny_model(attention_sink=True)
    memories = model.compress([text_of_tokens(60, seed=1), text_of_tokens(40, seed=2)])
    segments = model.generator().build_prompt(QUESTION, memories)
    bos = model.tokenizer.bos_token_id
    assert segments[0] == Sink(bos) and segments[1] is memories[0] and segments[3] is LM
    steps = layout(segments)
    assert steps[0][0].items == [bos] and steps[0][0].positions == [FIRST_POSITION]
    assert steps[1] == (memories[0], FIRST_POSITION)  # the first memory still starts at position 1
    assert composed_length(segments) == composed_length(segments[1:])
    with pytest.raises(ValueError, match="must open the prompt"):
        layout([memories[0], Sink(bos), LM, [5]])


def test_sink_is_the_decoders_own_bos_kv_and_the_same_for_every_passage():
    model = tiny_model(attention_sink=True)
    bos = model.tokenizer.bos_token_id
    (bos_kv,) = model.encode_sequences([[bos]], full_kv=True)  # the decoder reading BOS at position 1
    caches = []
    for seed in (1, 2):
        memory = model.compress([text_of_tokens(50, seed=seed)])[0]
        with torch.no_grad():
            cache, _, _ = model.generator().decoder.run(model.generator().build_prompt(QUESTION, [memory]))
        caches.append(cache)
        keys, values = cache.layers[0].keys[0], cache.layers[0].values[0]  # [kv, entries, d]
        torch.testing.assert_close(keys[:, 0], bos_kv.keys[0][:, 0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(values[:, 0], bos_kv.values[0][:, 0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(keys[:, 1 : 1 + memory.n_anchors], memory.keys[0], atol=1e-6, rtol=1e-6)
    for a, b in zip(caches[0].layers, caches[1].layers):
        torch.testing.assert_close(a.keys[0][:, 0], b.keys[0][:, 0], atol=0, rtol=0)


def test_sink_changes_the_answer_distribution_and_is_off_by_default():
    plain = tiny_model()
    sink = tiny_model(attention_sink=True)
    memory = plain.compress([text_of_tokens(80, seed=3)])[0]
    assert not any(isinstance(s, Sink) for s in plain.generator().build_prompt(QUESTION, [memory]))
    sink_memory = sink.compress([text_of_tokens(80, seed=3)])[0]
    torch.testing.assert_close(sink_memory.keys, memory.keys, atol=0, rtol=0)  # the sink is the decoder's business
    with_sink = first_logits(sink, QUESTION, [sink_memory])
    without = first_logits(plain, QUESTION, [memory])
    assert not torch.allclose(with_sink, without, atol=1e-4)
    # a prompt that starts with text has its own BOS: no sink
    assert not any(isinstance(s, Sink) for s in sink.generator().build_prompt(["Context:", sink_memory, "Question?"]))
    assert isinstance(sink.generator().build_prompt([sink_memory, "Question?"])[0], Sink)


def test_extensions_left_off_keep_the_official_identity():
    config = SACConfig(ratio=5, base_model="x")
    legacy = {**config.to_dict(), "extra": {}}  # configs once had an (always empty) ``extra``
    legacy.pop("base_model")
    for name in ("attention_sink", "reader_rank", "reader_alpha", "reader_targets", "causal_compressor"):
        legacy.pop(name)
    for name in (
        "memory_kind",
        "compact_keep",
        "compact_refit",
        "compact_dtype",
    ):  # what memories, not how SAC compresses
        legacy.pop(name)
    assert config.identity() == legacy  # fingerprints of existing stores stay valid
    assert "attention_sink" in SACConfig(attention_sink=True).identity()
    a, b = tiny_model(), tiny_model(attention_sink=True)
    assert a.fingerprint != b.fingerprint
    with pytest.raises(ValueError, match="reader_rank"):
        SACConfig(reader_rank=-1)


# ---------------------------------------------------------------- reader adapter
def test_fresh_reader_decodes_as_the_base_and_a_trained_one_does_not():
    with_reader = tiny_model(reader_rank=4, reader_alpha=8.0)
    without = tiny_model()
    memory = without.compress([text_of_tokens(70, seed=4)])[0]
    mem_r = with_reader.compress([text_of_tokens(70, seed=4)])[0]
    torch.testing.assert_close(mem_r.keys, memory.keys, atol=0, rtol=0)  # the compressor ignores the reader
    expected = first_logits(without, QUESTION, [memory])
    torch.testing.assert_close(first_logits(with_reader, QUESTION, [mem_r]), expected)
    randomize_reader(with_reader)
    mem_r = with_reader.compress([text_of_tokens(70, seed=4)])[0]
    torch.testing.assert_close(mem_r.keys, memory.keys, atol=0, rtol=0)
    assert not torch.allclose(first_logits(with_reader, QUESTION, [mem_r]), expected)
    # every decoder pass reads with it: raw text and full per-passage KV too
    raw = with_reader.generator().build_prompt("Alan Turing was born in London.")
    assert not torch.allclose(first_logits(with_reader, raw), first_logits(without, raw))
    full_r = with_reader.encode_full_kv([text_of_tokens(30, seed=5)])[0]
    full = without.encode_full_kv([text_of_tokens(30, seed=5)])[0]
    assert not torch.allclose(full_r.values, full.values)


def test_reader_checkpoint_round_trip_is_a_peft_adapter_folder(tmp_path):
    model = tiny_model(reader_rank=4, reader_alpha=8.0)
    randomize_reader(model)
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "reader" / "adapter_model.safetensors").is_file()
    loaded = SACModel.from_pretrained(tmp_path / "ckpt", base=tiny_llama(), tokenizer=tiny_tokenizer())
    assert loaded.config.has_reader and loaded.fingerprint == model.fingerprint
    memory = model.compress([text_of_tokens(90, seed=6)])[0]
    prompt = model.generator().build_prompt(QUESTION, [memory])
    torch.testing.assert_close(first_logits(loaded, prompt), first_logits(model, prompt), atol=0, rtol=0)

    # plain PEFT loads the reader subfolder: the base + reader reading text equals our decoder on text
    peft = PeftModel.from_pretrained(tiny_llama(), str(tmp_path / "ckpt" / "reader")).eval()
    ids = model.tokenizer("Alan Turing was born in London.")["input_ids"]
    with torch.no_grad():
        expected = peft(input_ids=torch.tensor([ids]), position_ids=torch.arange(1, len(ids) + 1)[None]).logits[0, -1]
    torch.testing.assert_close(first_logits(model, [ids]), expected.float(), atol=1e-5, rtol=1e-5)

    other = tiny_model(reader_rank=4, reader_alpha=8.0)
    randomize_reader(other, seed=8)
    assert other.fingerprint != model.fingerprint  # the reader is part of the model's identity


def test_corrupt_or_missing_reader_files_are_named(tmp_path):
    model = tiny_model(reader_rank=4, reader_alpha=8.0)
    model.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "reader" / "adapter_model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"reader/adapter_model.safetensors"):
        SACModel.from_pretrained(tmp_path / "ckpt", base=tiny_llama(), tokenizer=tiny_tokenizer())
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"reader/adapter_model.safetensors"):
        SACModel.from_pretrained(tmp_path / "ckpt", base=tiny_llama(), tokenizer=tiny_tokenizer())
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter directory"):
        tiny_model().add_reader(tmp_path / "nowhere")


def test_a_fullft_adapter_becomes_the_reader(tmp_path):
    from sac_rag.training import TrainConfig, train
    from sac_rag.training.tasks import FullFTTask

    lines = [json.dumps({"header": {"dataset": "Toy"}})]
    lines += [
        json.dumps({"context": c, "qas": [{"qid": f"q{i}", "question": q, "answers": [a]}]})
        for i, (c, q, a) in enumerate(
            [("Paris is in France.", "Where is Paris?", "France"), ("Turing was born in 1912.", "When?", "1912")] * 2
        )
    ]
    (tmp_path / "toy.jsonl").write_text("\n".join(lines) + "\n")
    ft = FullFTTask(tiny_llama(), tiny_tokenizer(), SACConfig(lora_rank=4, lora_alpha=8, base_model="tiny-llama"))
    cfg = TrainConfig(
        output_dir=str(tmp_path / "ft"),
        task="fullft",
        train_files=[str(tmp_path / "toy.jsonl")],
        steps=3,
        grad_accum=1,
        lr=5e-2,
        eval_size=1,
        max_distractors=0,
    )
    final = train(cfg, task=ft).final_dir
    model = tiny_model()
    before = model.fingerprint
    model.add_reader(final)
    assert model.config.reader_rank == 4 and model.fingerprint != before
    ids = model.tokenizer("Paris is in France. Where is Paris?")["input_ids"]
    with torch.no_grad():
        expected = ft.peft(input_ids=torch.tensor([ids]), position_ids=torch.arange(1, len(ids) + 1)[None]).logits
    torch.testing.assert_close(first_logits(model, [ids]), expected[0, -1].float(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="already has a reader"):
        model.add_reader(final)


def test_export_keeps_the_reader(tmp_path):
    from sac_rag.training.export import export_checkpoint

    model = tiny_model(reader_rank=4, reader_alpha=8.0, attention_sink=True)
    randomize_reader(model)
    model.save_pretrained(tmp_path / "ckpt")
    out = export_checkpoint(tmp_path / "ckpt", tmp_path / "shipped")
    loaded = SACModel.from_pretrained(out, base=tiny_llama(), tokenizer=tiny_tokenizer())
    assert loaded.config.attention_sink and loaded.config.has_reader
    for (n, p), q in zip(model.reader_parameters().items(), loaded.reader_parameters().values()):
        assert torch.allclose(p, q, rtol=1e-2, atol=1e-3), n


def test_eval_baselines_decoded_by_a_reader_are_named_apart():
    from sac_rag.eval.build import build_methods
    from sac_rag.qa import QAExample

    plain = build_methods(["raw", "no_context"], [("p", tiny_model())])
    model = tiny_model(reader_rank=4, reader_alpha=8.0)
    tagged = build_methods(["raw", "no_context", "sac"], [("r", model)])
    assert [m.key for m in plain] == ["raw", "no_context"]
    assert tagged[0].key.startswith("raw+reader-") and tagged[0].label.endswith("[reader]")
    assert tagged[2].key.endswith(model.fingerprint[:8]) and "+reader" not in tagged[2].key
    untuned = build_methods(["raw@base", "truncate@base"], [("r", model)])
    assert [m.key for m in untuned] == ["raw", "truncate_r5"]  # the plain base's rows, as without a reader
    example = QAExample("q", QUESTION, "Alan Turing was born in London.", ("London",))
    segments = untuned[0].prompt(example).segments
    randomize_reader(model)
    assert build_methods(["raw"], [("r", model)])[0].key != tagged[0].key  # another reader, another row
    with torch.no_grad():  # @base really decodes without the reader
        got = untuned[0].decoder.prefill(segments)[1]
        assert torch.equal(got, model.generator(reader=False).decoder.prefill(segments)[1])
        assert not torch.allclose(got, model.generator().decoder.prefill(segments)[1])
    with pytest.raises(ValueError, match="unknown method"):
        build_methods(["full_kv@base"], [("r", model)])


# ---------------------------------------------------------------- causal compressor
def test_causal_compressor_anchors_see_only_earlier_tokens():
    from sac_rag.training.config import TrainConfig

    bidirectional, causal = tiny_model(), tiny_model(causal_compressor=True)
    causal.load_state_dict(bidirectional.state_dict())  # the same weights: only the attention pattern differs
    ids = bidirectional.tokenizer(text_of_tokens(40, seed=3), add_special_tokens=False)["input_ids"]
    changed = ids[:-1] + [(ids[-1] + 1) % 100 + 5]  # only the last token differs
    for model, same_early in ((causal, True), (bidirectional, False)):
        with torch.no_grad():
            a, b = model.encode_sequences([ids, changed])
        early = a.keys[-1][:, :-1]  # last layer; every anchor but the last sits before the changed token
        assert torch.allclose(early, b.keys[-1][:, :-1], atol=1e-6) == same_early
    assert causal.fingerprint != bidirectional.fingerprint
    assert "causal_compressor" not in SACConfig().identity()  # models without it keep their fingerprints
    assert SACConfig.from_dict(causal.config.to_dict()).causal_compressor
    with pytest.raises(ValueError, match="causal_compressor must be true or false"):
        SACConfig(causal_compressor="yes")
    assert TrainConfig(output_dir="r", train_files=["x"], sac=SACConfig(causal_compressor=True)).sac.causal_compressor
