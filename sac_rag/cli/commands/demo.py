"""``sac-rag demo``: compress a passage with the default compressor and answer questions from its memory."""

from __future__ import annotations

import argparse
import time

PASSAGE = (
    "Alan Turing was an English mathematician, computer scientist and logician. He was born on 23 June 1912 "
    "in Maida Vale, London, and studied mathematics at King's College, Cambridge. During the Second World War "
    "he worked at Bletchley Park, where he devised techniques for breaking German ciphers, including the "
    "Enigma machine. In 1950 he proposed the imitation game, now known as the Turing test."
)
QUESTIONS = ("Where was Alan Turing born?", "Where did Turing work during the Second World War?")


def run_single_passage_demo(max_new_tokens: int = 32) -> None:
    from sac_rag import SACModel

    t0 = time.perf_counter()
    model = SACModel.default()
    print(f"model: {model.config.base_model} (ratio {model.config.ratio}), loaded in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    (memory,) = model.compress([PASSAGE])
    compress_s = time.perf_counter() - t0
    print(
        f"tokens in: {memory.length}  anchors kept: {memory.n_anchors}  "
        f"memory: {memory.nbytes / 1024:.1f} KiB vs full KV cache {memory.full_kv_nbytes() / 1024:.1f} KiB "
        f"({memory.full_kv_nbytes() / memory.nbytes:.1f}x smaller)  compress: {compress_s:.2f}s"
    )
    for question in QUESTIONS:
        t0 = time.perf_counter()
        answer = model.generate(question, memories=[memory], max_new_tokens=max_new_tokens)
        print(f"Q: {question}\nA: {answer.strip()!r}  ({time.perf_counter() - t0:.2f}s)")


def register(sub) -> None:
    p = sub.add_parser("demo", help="compress a passage with the default model and answer questions from it")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_single_passage_demo(args.max_new_tokens)
    return 0
