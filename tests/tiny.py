"""Tiny random models and a tiny tokenizer, built in seconds for the tests."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France.",
    "### Context:\n### Question:\n### Answer:\n",
    "Semantic anchor compression keeps every fifth token's keys and values as memory.",
    "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge.",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-",
]


@functools.cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _common(vocab: int, **overrides) -> dict:
    cfg = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    cfg.update(overrides)
    return cfg


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(**_common(len(tiny_tokenizer()), **overrides))
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


def tiny_qwen2(seed: int = 0, **overrides) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(**_common(len(tiny_tokenizer()), **overrides))
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config).eval()


def randomize_sac(model, seed: int = 1, scale: float = 0.05) -> None:
    """Give every SAC parameter (LoRA A and B included) random non-zero values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.sac_parameters().values():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def text_of_tokens(n: int, seed: int = 0) -> str:
    """A text whose tiny-tokenizer encoding is exactly n tokens (n >= 1)."""
    tok = tiny_tokenizer()
    g = torch.Generator().manual_seed(seed)
    words = CORPUS[0].split() + CORPUS[2].split() + CORPUS[3].split()
    out: list[str] = []
    while len(tok(" ".join(out), add_special_tokens=False)["input_ids"]) < n:
        out.append(words[int(torch.randint(len(words), (1,), generator=g))])
    ids = tok(" ".join(out), add_special_tokens=False)["input_ids"][:n]
    text = tok.decode(ids)
    assert len(tok(text, add_special_tokens=False)["input_ids"]) == n
    return text
