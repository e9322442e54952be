"""SACModel behaviour on tiny random models: batching, masks, composition, decoder, checkpoints."""

import json

import pytest
import torch
from support.reference_sac import official_adapter

from sac_rag import MemoryChunk, SACConfig, SACModel
from sac_rag.memory.compose import LM
from sac_rag.testing import BUILDERS, text_of_tokens, tiny_llama, tiny_model, tiny_tokenizer

QUESTION = "Where was Alan Turing born?"


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model(request):
    return tiny_model(request.param)


def test_batched_equals_one_by_one(model):
    texts = [text_of_tokens(n, seed=n) for n in (40, 600, 3, 1200, 255)]
    batched = model.compress(texts, batch_size=3)
    for text, b in zip(texts, batched):
        (single,) = model.compress([text], batch_size=1)
        assert b.length == single.length and torch.equal(b.positions, single.positions)
        torch.testing.assert_close(b.keys, single.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.values, single.values, atol=1e-5, rtol=1e-5)


def test_bidirectional_within_a_chunk_and_independent_across_chunks(model):
    tok = tiny_tokenizer()
    ids = tok(text_of_tokens(900, seed=3), add_special_tokens=False)["input_ids"]
    changed_late = list(ids)
    changed_late[400] = (changed_late[400] + 7) % len(tok)  # inside chunk 0 (which spans tokens 0..509 with prefix)
    changed_next = list(ids)
    changed_next[700] = (changed_next[700] + 7) % len(tok)  # inside chunk 1
    base, late, nxt = model.compress([tok.decode(x) for x in (ids, changed_late, changed_next)])
    first_anchor = 0  # token index 2, long before token 410: only a bidirectional encoder lets it see the change
    assert not torch.allclose(base.keys[-1][:, first_anchor], late.keys[-1][:, first_anchor])
    chunk0 = base.positions < model.config.chunk_size
    torch.testing.assert_close(base.keys[:, :, chunk0], nxt.keys[:, :, chunk0], atol=0, rtol=0)
    assert not torch.allclose(base.keys[:, :, ~chunk0], nxt.keys[:, :, ~chunk0])


def test_shift_composition_is_exact(model):
    text = text_of_tokens(700, seed=5)
    (at_start,) = model.compress([text])
    (at_d,) = model.compress([text], position_offset=1234)
    shifted = model.shifter.shift(at_start.keys, 1234 - at_start.offset)
    torch.testing.assert_close(shifted, at_d.keys, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(at_start.values, at_d.values, atol=1e-6, rtol=1e-6)


def test_several_memories_compose_in_one_position_space(model):
    gen = model.generator()
    a, b = text_of_tokens(300, seed=1), text_of_tokens(200, seed=2)
    ma, mb = model.compress([a, b])
    (mb_in_place,) = model.compress([b], position_offset=1 + ma.length)
    _, logits, _ = gen.decoder.prefill(gen.build_prompt(QUESTION, [ma, mb]))
    _, expected, _ = gen.decoder.prefill(gen.build_prompt(QUESTION, [ma, mb_in_place]))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    _, swapped, _ = gen.decoder.prefill(gen.build_prompt(QUESTION, [mb, ma]))
    assert not torch.allclose(logits, swapped, atol=1e-4)


def test_segments_with_the_official_template_equal_the_official_layout(model):
    gen = model.generator()
    (m,) = model.compress([text_of_tokens(150, seed=4)])
    official = gen.generate_ids(QUESTION, memories=[m], max_new_tokens=8)
    segments = [m, model.config.question_prefix, QUESTION, model.config.answer_prefix]
    assert gen.generate_ids(segments, max_new_tokens=8) == official
    # text may open the prompt: BOS and the text, the memory right after it, then [LM] and the rest, all read
    text_first = gen.build_prompt(["Read this:", m, QUESTION])
    assert text_first[0][0] == model.tokenizer.bos_token_id and text_first[1] is m and text_first[2] is LM
    assert gen.compose(text_first).length == len(text_first[0]) + m.length + len(text_first[3])
    _, read, _ = gen.decoder.prefill(text_first)
    _, memory_first, _ = gen.decoder.prefill(gen.build_prompt([m, QUESTION]))
    assert not torch.allclose(read, memory_first, atol=1e-4)


def test_stream_yields_the_generated_text(model):
    (m,) = model.compress([text_of_tokens(120, seed=6)])
    pieces = list(model.stream(QUESTION, memories=[m], max_new_tokens=10))
    assert "".join(pieces) == model.generate(QUESTION, memories=[m], max_new_tokens=10)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_adapter_disabled_decoder_equals_plain_base(arch):
    plain = BUILDERS[arch]()
    model = tiny_model(arch)  # random non-zero LoRA
    ids = torch.tensor([[1, 5, 9, 33, 2, 70, 101]])
    pos = torch.arange(1, 8)[None]
    with torch.no_grad():
        expected = plain(input_ids=ids, position_ids=pos).logits
        with model.adapter(False):
            got = model.base_model(input_ids=ids, position_ids=pos).logits
        with model.adapter(True):
            with_lora = model.base_model(input_ids=ids, position_ids=pos).logits
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert not torch.allclose(with_lora, expected)


def test_adapter_switch_restores_lora_after_nesting_and_errors():
    model = tiny_model()
    ids = torch.tensor([[1, 5, 9, 33]])
    with torch.no_grad():
        before = model.base_model(input_ids=ids).logits
        with model.adapter(False):
            off = model.base_model(input_ids=ids).logits
            with model.adapter(False):
                pass
            torch.testing.assert_close(model.base_model(input_ids=ids).logits, off, atol=0, rtol=0)
        with pytest.raises(RuntimeError), model.adapter(False):
            raise RuntimeError("inside the decoder")
        after = model.base_model(input_ids=ids).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert not torch.allclose(off, before)
    assert all(p.requires_grad for p in model.sac_parameters().values())  # training still sees its LoRA


def test_one_copy_of_the_base_weights():
    model = tiny_model()
    base_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    sac = model.role_tokens.numel() + model.special_tokens.numel()
    assert base_params - sac == sum(p.numel() for p in tiny_llama().parameters())


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    (m,) = model.compress([text_of_tokens(200, seed=8)])
    model.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert {"sac_config.json", "adapter_config.json", "adapter_model.safetensors", "sac_embeddings.safetensors"} <= set(
        files
    )
    assert not list((tmp_path / "ckpt").glob("*.bin")) and not list((tmp_path / "ckpt").glob("*.pt"))
    loaded = SACModel.from_pretrained(tmp_path / "ckpt", base=tiny_llama(), tokenizer=tiny_tokenizer())
    (m2,) = loaded.compress([text_of_tokens(200, seed=8)])
    torch.testing.assert_close(m.keys, m2.keys, atol=0, rtol=0)
    assert loaded.fingerprint == model.fingerprint == m2.fingerprint
    assert loaded.generate(QUESTION, [m2], max_new_tokens=8) == model.generate(QUESTION, [m], max_new_tokens=8)


def test_load_refuses_corrupted_checkpoint(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "adapter_model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        SACModel.from_pretrained(tmp_path / "ckpt", base=tiny_llama(), tokenizer=tiny_tokenizer())
    (tmp_path / "ckpt" / "sac_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="sac_config.json"):
        SACModel.from_pretrained(tmp_path / "ckpt", base=tiny_llama(), tokenizer=tiny_tokenizer())


def _adapter_file(tmp_path, model, mutate=None):
    state = official_adapter(tiny_llama(), model.config.mem_size, rank=8)
    if mutate:
        mutate(state)
    path = tmp_path / "adapter.pt"
    torch.save(state, path)
    return path


def test_official_adapter_refusals(tmp_path):
    model = tiny_model(randomize=False)
    key = "model.model.layers.1.self_attn.v_proj.lora_B"
    with pytest.raises(ValueError, match="missing"):
        model.load_official_adapter(_adapter_file(tmp_path, model, lambda s: s.pop(key)))
    with pytest.raises(ValueError, match="unknown"):
        model.load_official_adapter(_adapter_file(tmp_path, model, lambda s: s.update({"model.extra": torch.zeros(1)})))
    with pytest.raises(ValueError, match="shape"):
        model.load_official_adapter(_adapter_file(tmp_path, model, lambda s: s.update({key: torch.zeros(3, 3)})))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        model.load_official_adapter(tmp_path / "junk.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="flat dict"):
        model.load_official_adapter(tmp_path / "list.pt")
    before = model.fingerprint
    model.load_official_adapter(_adapter_file(tmp_path, model))
    assert model.fingerprint != before


def test_official_adapter_needs_scale_two(tmp_path):
    base = tiny_llama()
    cfg = SACConfig(ratio=5, lora_rank=8, lora_alpha=8)
    model = SACModel.from_base(base, config=cfg, tokenizer=tiny_tokenizer())
    with pytest.raises(ValueError, match="scale 2"):
        model.load_official_adapter(_adapter_file(tmp_path, model))


def test_memory_chunk_is_plain_data(model):
    (m,) = model.compress([text_of_tokens(490, seed=9)])  # + 10 prefix tokens
    assert m.keys.shape == (2, 2, m.n_anchors, 16) and m.values.shape == m.keys.shape
    assert m.n_anchors == 100 and m.length == 500 and m.offset == 1
    assert m.nbytes * model.config.ratio == pytest.approx(m.full_kv_nbytes(), rel=0.01)
    half = m.to(torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.nbytes == m.nbytes // 2 and m.dtype == torch.float32
    assert not any(isinstance(v, torch.nn.Module) for v in vars(m).values())
    with pytest.raises(ValueError):
        MemoryChunk(m.keys, m.values[:, :, :3], m.positions, m.length)


def test_bad_input_is_refused_clearly(model):
    with pytest.raises(TypeError, match="texts\\[1\\]"):
        model.compress(["ok", None])
    (m,) = model.compress(["some text"])
    foreign = m.to()
    foreign.fingerprint = "0" * 16
    with pytest.raises(ValueError, match="re-compress"):
        model.generate(QUESTION, memories=[foreign])
    wrong = MemoryChunk(torch.zeros(3, 2, 4, 16), torch.zeros(3, 2, 4, 16), torch.arange(4), 20)
    with pytest.raises(ValueError, match="does not fit"):
        model.generate(QUESTION, memories=[wrong])
    with pytest.raises(ValueError, match="empty"):
        model.generator().generate_ids([])
    memory_only = model.generator().build_prompt([m])
    assert len(memory_only) == 2 and memory_only[0] is m and memory_only[1] is LM  # [LM] starts the answer
    assert 1 <= len(model.generator().generate_ids([m], max_new_tokens=3)) <= 3


def test_config_json_round_trip(tmp_path):
    cfg = SACConfig(ratio=15, lora_rank=16, lora_alpha=32, lora_targets=("q_proj", "k_proj", "v_proj"))
    cfg.save(tmp_path)
    assert SACConfig.load(tmp_path) == cfg
    assert json.loads((tmp_path / "sac_config.json").read_text())["format_version"] == 1
    assert cfg.mem_size == 34
    with pytest.raises(ValueError):
        SACConfig(ratio=0)


def test_configs_with_the_old_empty_extra_load_and_keep_their_identity(tmp_path):
    import json

    from sac_rag.config import EXTENSION_FIELDS, MEMORY_FIELDS
    from sac_rag.pretrained import default_checkpoint

    shipped = default_checkpoint()
    assert shipped is not None
    saved = json.loads((shipped / "sac_config.json").read_text())
    assert saved["extra"] == {}  # the shipped config predates the removal
    # the identity (which feeds the fingerprint) is what it was: the saved dict without the base model's
    # name and without extension fields left at their defaults
    defaults = SACConfig().to_dict()
    legacy = {
        k: v
        for k, v in saved.items()
        if k != "base_model" and k not in MEMORY_FIELDS and not (k in EXTENSION_FIELDS and v == defaults[k])
    }
    config = SACConfig.load(shipped)
    assert json.dumps(config.identity(), sort_keys=True) == json.dumps(legacy, sort_keys=True)
    assert "extra" not in config.to_dict()
    config.save(tmp_path)
    assert SACConfig.load(tmp_path).identity() == config.identity()  # saved without extra, same identity
    with pytest.raises(ValueError, match="no longer has 'extra'"):
        SACConfig.from_dict({**saved, "extra": {"note": "x"}})


def test_kv_geometry_has_one_home(model):
    from sac_rag.memory.geometry import full_kv_nbytes, kv_shape

    (m,) = model.compress(["one passage of text"])
    layers, heads, _, dim = m.keys.shape
    assert model.kv_shape == kv_shape(model.base_model.config) == (layers, heads, dim)
    assert (
        m.full_kv_nbytes(torch.bfloat16)
        == full_kv_nbytes(model.kv_shape, m.length)
        == 2 * layers * heads * dim * m.length * 2
    )
    assert m.full_kv_nbytes() == full_kv_nbytes(model.kv_shape, m.length, m.dtype)


def test_full_kv_reuse_equals_reading_the_raw_text(model):
    from sac_rag.text.prompt import context_ids, question_ids

    a, b = text_of_tokens(120, seed=11), text_of_tokens(90, seed=12)
    full = model.encode_full_kv([a, b], batch_size=2)  # batched, padded
    assert [m.n_anchors for m in full] == [m.length for m in full] and full[0].meta["kind"] == "full_kv"
    raw = context_ids(model.tokenizer, a, model.config) + question_ids(model.tokenizer, QUESTION, model.config)
    _, expected, _ = model.generator().decoder.prefill([raw])
    _, got, _ = model.generator().decoder.prefill(model.generator().build_prompt(QUESTION, full[:1]))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_fresh_sac_parts_are_deterministic_across_thread_counts():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = tiny_model(randomize=False)
        torch.set_num_threads(2)
        torch.manual_seed(1234)  # the global generator must not matter either
        two = tiny_model(randomize=False)
    finally:
        torch.set_num_threads(threads)
    assert one.fingerprint == two.fingerprint


def test_fingerprint_does_not_depend_on_where_the_base_was_loaded_from(tmp_path):
    prints = []
    for name in ("a", "b"):
        tiny_llama().save_pretrained(tmp_path / name)
        tiny_tokenizer().save_pretrained(tmp_path / name)
        model = SACModel.from_base(str(tmp_path / name), SACConfig(ratio=5, lora_rank=8, lora_alpha=16), device="cpu")
        prints.append(model.fingerprint)
    assert prints[0] == prints[1]


def test_saved_adapter_names_the_portable_base_not_the_local_path(tmp_path):
    from transformers import AutoModelForCausalLM

    tiny_llama().save_pretrained(tmp_path / "local-copy")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "local-copy")
    config = SACConfig(ratio=5, lora_rank=8, lora_alpha=16, base_model="tiny-alias")
    SACModel.from_base(base, config, tokenizer=tiny_tokenizer()).save_pretrained(tmp_path / "ckpt")
    adapter = json.loads((tmp_path / "ckpt" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny-alias"


def test_prompt_past_the_position_limit_is_refused_with_a_clear_error():
    model = tiny_model()
    limit = model.base_model.config.max_position_embeddings
    memories = model.compress([text_of_tokens(1000, seed=s) for s in range(limit // 1000 + 1)])
    with pytest.raises(ValueError, match=f"past the {limit} positions"):
        model.generate(QUESTION, memories=memories, max_new_tokens=4)
    with pytest.raises(ValueError, match="smaller max_new_tokens"):
        list(model.stream(QUESTION, memories=memories[:1], max_new_tokens=limit))
    # the limit is exact: an answer that may run up to the last position is decoded, one more is refused
    generator = model.generator()
    prompt = generator.compose(generator.build_prompt(QUESTION, memories[:1]))
    room = limit - prompt.length
    with pytest.raises(ValueError, match=f"past the {limit} positions"):
        generator.stream_ids(prompt, max_new_tokens=room + 1)
    assert isinstance(next(generator.stream_ids(prompt, max_new_tokens=room)), int)


def test_a_question_builds_its_decoder_once_and_the_lm_embedding_is_read_live(monkeypatch):
    from sac_rag.decoding.generate import MemoryDecoder
    from sac_rag.decoding.generator import Generator

    built = []
    for cls in (MemoryDecoder, Generator):
        monkeypatch.setattr(cls, "__init__", _counted(cls.__init__, built))
    model = tiny_model("llama")
    memories = model.compress([text_of_tokens(60, seed=1)])
    with torch.inference_mode():  # the decoder is first built under inference mode ...
        first = model.generate(QUESTION, memories, max_new_tokens=4)
    assert model.generate(QUESTION, memories, max_new_tokens=4) == first
    assert "".join(model.stream(QUESTION, memories, max_new_tokens=4)) == first
    # layout, composition and generation share one generator and its decoder, kept across questions
    assert sorted(type(b).__name__ for b in built) == ["Generator", "MemoryDecoder"]
    model.special_tokens.requires_grad_(True)  # ... and still carries a gradient to [LM] afterwards
    _, hidden, _ = model.generator().decoder.run(model.generator().build_prompt(QUESTION, memories))
    hidden.sum().backward()
    assert model.special_tokens.grad is not None and bool(model.special_tokens.grad[1].abs().sum() > 0)


def _counted(init, built: list):
    def counting(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    return counting
