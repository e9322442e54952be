"""An independent, literal implementation of docs/sac.md sections 2-8 (two model copies, manual LoRA).

It shares no code with sac_rag: it exists to check the library against the spec.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from transformers import DynamicCache


def official_adapter(model, mem_size: int, rank: int = 8, seed: int = 0, targets=("q_proj", "v_proj")) -> dict:
    """A random, non-zero adapter with the official key names and shapes (section 9)."""
    g = torch.Generator().manual_seed(seed)
    H = model.config.hidden_size
    state = {
        "role_tokens": torch.randn(mem_size, H, generator=g) * 0.5,
        "special_tokens": torch.randn(2, H, generator=g) * 0.5,
    }
    for i, layer in enumerate(model.model.layers):
        for name in targets:
            lin = getattr(layer.self_attn, name)
            state[f"model.model.layers.{i}.self_attn.{name}.lora_A"] = (
                torch.randn(lin.in_features, rank, generator=g) * 0.1
            )
            state[f"model.model.layers.{i}.self_attn.{name}.lora_B"] = (
                torch.randn(rank, lin.out_features, generator=g) * 0.1
            )
    return state


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _with_lora(model, adapter):
    enc = copy.deepcopy(model)
    for i, layer in enumerate(enc.model.layers):
        for name in ("q_proj", "v_proj"):
            lin = getattr(layer.self_attn, name)
            A = adapter[f"model.model.layers.{i}.self_attn.{name}.lora_A"].float()
            B = adapter[f"model.model.layers.{i}.self_attn.{name}.lora_B"].float()
            lin.forward = lambda x, lin=lin, A=A, B=B: F.linear(x, lin.weight, lin.bias) + 2 * ((x @ A) @ B)
    return enc


@torch.no_grad()
def reference_compress(model, tok, adapter, context: str, r: int, chunk_size: int = 510):
    """Anchor K/V per layer ``[1, n_kv, M, d]`` and L, straight from sections 2-7."""
    enc = _with_lora(model, adapter)
    role = adapter["role_tokens"].float()
    ids = [tok.bos_token_id] + _ids(tok, "### Context:\n") + _ids(tok, context)
    L = len(ids)
    n_layers = model.config.num_hidden_layers
    Ks, Vs = [[] for _ in range(n_layers)], [[] for _ in range(n_layers)]
    for c in range(math.ceil(L / chunk_size)):
        s = chunk_size * c
        n = min(chunk_size, L - s)
        first, stop = s + 1, s + n + 1
        start = first + (r - 1) // 2
        if start >= stop:
            start = first
        local = [p - 1 - s for p in range(start, stop, r)]
        emb = enc.model.embed_tokens(torch.tensor([ids[s : s + n]])).clone()
        for j, li in enumerate(local):
            emb[0, li] += role[j]
        cache = DynamicCache()
        enc.model(
            inputs_embeds=emb,
            attention_mask=torch.zeros(1, 1, n, n),
            position_ids=torch.arange(first, first + n)[None],
            cache=cache,
            use_cache=True,
        )
        for layer in range(n_layers):
            Ks[layer].append(cache.layers[layer].keys[:, :, local])
            Vs[layer].append(cache.layers[layer].values[:, :, local])
    return [torch.cat(k, dim=2) for k in Ks], [torch.cat(v, dim=2) for v in Vs], L


@torch.no_grad()
def reference_generate(model, tok, adapter, context: str, question: str, r: int, max_new: int = 12, chunk_size=510):
    """Greedy ids from section 8 (decoder = an untouched copy of the base), and the first step's logits."""
    K, V, L = reference_compress(model, tok, adapter, context, r, chunk_size)
    dec = copy.deepcopy(model)
    cache = DynamicCache()
    for layer, (k, v) in enumerate(zip(K, V)):
        cache.update(k, v, layer)
    q = _ids(tok, "\n### Question:\n") + _ids(tok, question) + _ids(tok, "\n### Answer:\n")
    emb = torch.cat([adapter["special_tokens"][1].float()[None], dec.model.embed_tokens(torch.tensor(q))])[None]
    pos = torch.arange(L, L + len(q) + 1)[None]
    out, first_logits = [], None
    for _ in range(max_new):
        logits = dec(inputs_embeds=emb, position_ids=pos, cache=cache, use_cache=True).logits[0, -1]
        first_logits = logits if first_logits is None else first_logits
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        if nxt == tok.eos_token_id:
            break
        emb = dec.model.embed_tokens(torch.tensor([[nxt]]))
        pos = pos[:, -1:] + 1
    return out, first_logits
