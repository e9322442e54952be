"""``sac-rag`` at its edges: --version, exit codes in --help, --json on every reporting command, a closed
output pipe, bad paths and models, huge single-line files, and no store left behind by a failed first run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support.cli import sac_rag
from support.models import count_tokens
from support.store import damage_the_shard

from sac_rag.store import MemoryStore


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, ckpt):
    root = tmp_path_factory.mktemp("indexed")
    (root / "a.txt").write_text("Alan Turing was born in London. He studied mathematics at Cambridge.")
    store = root / "store"
    assert sac_rag("index", root / "a.txt", "--store", store, "--model", ckpt, "--no-progress") == 0
    return store


def test_version_and_exit_codes_in_help(capsys):
    with pytest.raises(SystemExit) as done:
        sac_rag("--version")
    assert done.value.code == 0 and capsys.readouterr().out.startswith("sac-rag 0.")
    for args in (["--help"], ["verify", "--help"], ["index", "--help"]):
        with pytest.raises(SystemExit) as done:
            sac_rag(*args)
        out = capsys.readouterr().out
        assert done.value.code == 0 and "exit codes:" in out and "141" in out and "a usage error" in out


def test_json_on_every_reporting_command(indexed, ckpt, capsys, tmp_path):
    capsys.readouterr()
    assert sac_rag("stats", "--store", indexed, "--json") == 0
    assert json.loads(capsys.readouterr().out)["passages"] == 1
    assert sac_rag("verify", "--store", indexed, "--json") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    args = ("ask", "Where was Turing born?", "--store", indexed, "--model", ckpt, "--max-new-tokens", "2", "--json")
    assert sac_rag(*args) == 0
    assert len(json.loads(capsys.readouterr().out)["sources"]) == 1
    doc = tmp_path / "b.txt"
    doc.write_text("Paris is the capital of France.")
    assert sac_rag("index", doc, "--store", indexed, "--model", ckpt, "--no-progress", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 1 and report["stored"] == 2 and report["removed"] == 0
    with MemoryStore.open(indexed) as store:
        paris = next(r.id for r in store.get(store.ids()) if "Paris" in r.text)
    assert sac_rag("delete", paris, "--store", indexed, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": 1, "left": 1, "compacted": None}


def test_verify_repair_from_the_command_line(tmp_path, indexed, ckpt, capsys):
    store = tmp_path / "store"
    shutil.copytree(indexed, store)
    shard = damage_the_shard(store)
    capsys.readouterr()
    assert sac_rag("verify", "--store", store, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and str(shard) in report["problems"][0]
    assert sac_rag("verify", "--store", store, "--repair", "--model", ckpt, "--json") == 0
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["ok"] and repaired["repair"]["recompressed"] == 1
    assert sac_rag("verify", "--store", store) == 0


def test_a_closed_output_pipe_is_no_traceback(indexed):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as with `| head -1` on long output
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sac_rag.cli.main", "stats", "--store", str(indexed)],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env=env,
    )
    os.close(write)
    assert result.returncode == 141 and "Traceback" not in result.stderr


def test_bad_paths_and_models_are_named_without_traceback(tmp_path, ckpt, capsys):
    doc = tmp_path / "a.txt"
    doc.write_text("A short document.")
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    assert sac_rag("index", doc, "--store", blocker / "store", "--model", ckpt) == 1
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err
    assert sac_rag("index", doc, "--store", tmp_path / "s", "--model", "/nonexistent") == 1
    assert "model /nonexistent: no such checkpoint directory" in capsys.readouterr().err
    assert sac_rag("stats", "--store", blocker / "store") == 1
    assert "no sac_rag store at" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("flag", "value"), [("--batch-size", "-1"), ("--commit-every", "0"), ("--passage-tokens", "0")]
)
def test_out_of_range_flags_are_usage_errors_naming_the_flag(tmp_path, ckpt, capsys, flag, value):
    doc = tmp_path / "a.txt"
    doc.write_text("A short document.")
    with pytest.raises(SystemExit) as usage:
        sac_rag("index", doc, "--store", tmp_path / "s", "--model", ckpt, flag, value)
    assert usage.value.code == 2 and f"argument {flag}: must be at least" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_200kb_single_line_file_is_indexed_in_passages_of_the_asked_size(tmp_path, ckpt, capsys):
    doc = tmp_path / "one-line.txt"
    doc.write_text("https://example.com/" + "abcdefghijklmnopqrstuvwxyz0123456789" * 5700)  # 205 KB, no space
    store = tmp_path / "s"
    assert sac_rag("index", doc, "--store", store, "--model", ckpt, "--passage-tokens", "160", "--no-progress") == 0
    with MemoryStore.open(store) as s:
        sac = s.stats()
        texts = [r.text for r in sorted(s.get(s.ids()), key=lambda r: r.metadata["passage"])]
    assert sac["passages"] > 100 and max(count_tokens(t) for t in texts) <= 160
    assert "".join(texts) == doc.read_text()


def test_a_failed_first_index_leaves_no_store(tmp_path, ckpt, capsys, monkeypatch):
    doc = tmp_path / "a.txt"
    doc.write_text("A short document.")

    def broken(*args, **kwargs):
        raise RuntimeError("the embedder went away")

    monkeypatch.setattr("sac_rag.corpus.index_documents", broken)
    assert sac_rag("index", doc, "--store", tmp_path / "s", "--model", ckpt) == 1
    assert "the embedder went away" in capsys.readouterr().err and not (tmp_path / "s").exists()
