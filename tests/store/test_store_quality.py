"""What storing memories in bfloat16 / float16 / int8 costs in answers, measured on the real default model.

Run with ``python -m pytest -m slow tests/store/test_store_quality.py -s`` to print the table. Memories are
compressed in float32, stored and read back through the store's codec, then decoded: first-token
logits and greedy answers are compared with those from the float32 memories.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sac_rag.store.codec import pack_memory, unpack_memory

DTYPES = ("bfloat16", "float16", "int8")


def stored(chunk, dtype: str):
    """The chunk as the store gives it back after storing it in ``dtype``, and the bytes it took."""
    tensors = pack_memory(chunk, dtype)
    keys, values, positions, bias = unpack_memory(tensors)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    return replace(chunk, keys=keys.float(), values=values.float(), positions=positions, bias=bias), nbytes


@torch.inference_mode()
def first_logits(model, question, memories) -> torch.Tensor:
    _, logits, _ = model.generator().decoder.prefill(model.generator().build_prompt(question, memories))
    return logits.float()


@pytest.mark.slow
def test_memory_dtype_answer_cost_on_the_default_model():
    from sac_rag import SACModel
    from sac_rag.corpus import to_passages
    from sac_rag.corpus.demo_corpus import wikipedia_articles

    torch.manual_seed(0)
    model = SACModel.default()
    docs = wikipedia_articles(limit=20)
    passages = to_passages(docs, 160, model.count_tokens)
    groups = [list(range(i, i + 3)) for i in range(0, min(len(passages), 48) - 2, 3)]
    chunks = model.compress(passages.texts[: groups[-1][-1] + 1])
    results = {d: {"top1": 0, "tokens_same": 0, "tokens": 0, "exact": 0, "kl": 0.0, "bytes": 0} for d in DTYPES}
    fp32_bytes = 0
    for group in groups:
        title = passages.metadata[group[0]]["title"]
        question = f"What is {title}?"
        reference = [chunks[i] for i in group]
        fp32_bytes += sum(c.nbytes for c in reference)
        ref_logits = first_logits(model, question, reference)
        ref_ids = model.generator().generate_ids(question, reference, max_new_tokens=24)
        for dtype in DTYPES:
            got = [stored(c, dtype) for c in reference]
            memories = [m for m, _ in got]
            r = results[dtype]
            r["bytes"] += sum(b for _, b in got)
            logits = first_logits(model, question, memories)
            r["top1"] += int(logits.argmax() == ref_logits.argmax())
            log_p, log_q = ref_logits.log_softmax(-1), logits.log_softmax(-1)
            r["kl"] += float((log_p.exp() * (log_p - log_q)).sum())
            ids = model.generator().generate_ids(question, memories, max_new_tokens=24)
            same = next((i for i, (a, b) in enumerate(zip(ids, ref_ids)) if a != b), min(len(ids), len(ref_ids)))
            r["tokens_same"] += same
            r["tokens"] += len(ref_ids)
            r["exact"] += int(ids == ref_ids)
    n = len(groups)
    print(f"\n{n} questions, 3 passages each; float32 memory {fp32_bytes / n / 3 / 1024:.1f} KiB/passage")
    print("dtype     KiB/passage  first-token agree  KL(ref||q) mean  greedy prefix kept  exact answers")
    for dtype, r in results.items():
        print(
            f"{dtype:<9} {r['bytes'] / n / 3 / 1024:11.1f}  {r['top1'] / n:17.0%}  {r['kl'] / n:15.2e}"
            f"  {r['tokens_same'] / r['tokens']:18.0%}  {r['exact'] / n:13.0%}"
        )
    assert results["bfloat16"]["top1"] / n >= 0.9
    assert results["int8"]["top1"] / n >= 0.8
