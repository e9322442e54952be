"""``sac-rag`` through its entry point: index, ask, stats, verify, delete; errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from support.cli import sac_rag
from support.tokens import count_tokenised

from sac_rag.store import MemoryStore
from sac_rag.testing import tiny_tokenizer

DOCS = {
    "turing.txt": "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge.\n\n"
    "During the war he worked at Bletchley Park on German ciphers.",
    "paris.md": "# Paris\n\nParis is the capital of France. It lies on the Seine.",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (root / name).write_text(text)
    (root / "more.jsonl").write_text(json.dumps({"text": "The quick brown fox jumps.", "title": "Fox"}) + "\n")
    return root


def test_index_tokenises_each_passage_once(tmp_path, ckpt, corpus, monkeypatch):
    vocab = len(tiny_tokenizer())  # the compressor's tokenizer (the embedder has its own)
    tokenised = count_tokenised(monkeypatch, lambda tok: len(tok) == vocab)
    assert sac_rag("index", corpus, "--store", tmp_path / "s", "--model", ckpt, "--passage-tokens", "12") == 0
    monkeypatch.undo()
    with MemoryStore.open(tmp_path / "s") as store:
        texts = [r.text for r in store.get(store.ids())]
    assert len(texts) >= 6 and {t: tokenised[t] for t in texts} == Counter(texts)  # split, checked, compressed


def test_index_ask_stats_verify_delete(tmp_path, ckpt, corpus, capsys):
    store = tmp_path / "store"
    assert sac_rag("index", corpus, "--store", store, "--model", ckpt, "--passage-tokens", "50", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "3 documents ->" in out and "holds" in out
    assert sac_rag("stats", "--store", store, "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    n = stats["passages"]
    assert n >= 4 and stats["memory_dtype"] == "bfloat16" and stats["bytes_per_passage"] > 0

    # re-indexing the same files changes nothing
    assert sac_rag("index", corpus, "--store", store, "--model", ckpt, "--no-progress", "--passage-tokens", "50") == 0
    assert f"holds {n} (+0)" in capsys.readouterr().out

    def ask(question: str, *flags: str) -> int:
        return sac_rag("ask", question, "--store", store, "--model", ckpt, *flags)

    assert ask("Who worked on German ciphers at Bletchley Park?", "-k", "2", "--max-new-tokens", "4", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["sources"]) == 2 and answer["figures"]["anchors"] > 0
    assert "Bletchley" in answer["sources"][0]["text"]
    assert ask("Capital of France?", "-k", "1", "--stream", "--max-new-tokens", "3") == 0
    out = capsys.readouterr().out
    assert "sources:" in out and "Paris" in out and "entries kept" in out
    assert ask("Capital of France?", "--raw-text", "--max-new-tokens", "2", "-k", "100") == 0
    assert "as text" in capsys.readouterr().out

    assert sac_rag("verify", "--store", store) == 0
    assert capsys.readouterr().out.startswith("ok:")
    victim = answer["sources"][0]["id"]
    assert sac_rag("delete", victim, "--store", store, "--compact") == 0
    assert f"deleted 1 passages; {n - 1} left" in capsys.readouterr().out
    assert sac_rag("delete", victim, "--store", store) == 1
    assert "not in the store" in capsys.readouterr().err

    shard = next((store / "shards").iterdir())
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x55
    shard.write_bytes(bytes(data))
    assert sac_rag("verify", "--store", store) == 1
    err = capsys.readouterr().err
    assert f"damaged: {shard}" in err


def test_errors_exit_1_and_touch_nothing(tmp_path, ckpt, corpus, capsys):
    store = tmp_path / "store"
    assert sac_rag("stats", "--store", store) == 1
    assert f"no sac_rag store at {store}" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9")
    assert sac_rag("index", corpus / "paris.md", bad, "--store", store, "--model", ckpt) == 1
    assert "latin1.txt: not UTF-8 text" in capsys.readouterr().err
    assert not store.exists()  # nothing written: files are all read before the store is touched
    assert sac_rag("ask", "q?", "--store", tmp_path / "missing", "--model", ckpt) == 1
    assert "no sac_rag store" in capsys.readouterr().err
    assert sac_rag("index", corpus / "paris.md", "--store", store, "--model", ckpt, "--no-progress") == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:  # a value out of range is a usage error naming the flag
        sac_rag("ask", "q?", "--store", store, "--model", ckpt, "-k", "0")
    assert usage.value.code == 2 and "argument -k: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        sac_rag("ask", "--store", store)
    assert usage.value.code == 2


def test_console_script_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sac_rag.cli.main", "verify", "--store", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "sac-rag verify: error: no sac_rag store" in result.stderr


@pytest.mark.slow
def test_demo_with_the_default_model(tmp_path, capsys):
    store = tmp_path / "demo"
    question = "Who wrote Animal Farm?"
    args = ("demo", "--passages", "12", "--store", store, "--max-new-tokens", "8", "--question", question)
    assert sac_rag(*args) == 0
    out = capsys.readouterr().out
    assert "indexing 12 of 12 Wikipedia passages" in out and "A (memories):" in out and "A (raw text):" in out
    assert "entries kept" in out and "time to first token" in out
    assert sac_rag(*args) == 0
    assert f"reusing the store at {store}" in capsys.readouterr().out
