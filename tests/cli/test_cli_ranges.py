"""Issue 18 at the command line: every numeric flag of every sub-command range-checked by the parser (exit 2
before any model or store is opened), special and huge input files, and messages a user can act on."""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
from dataclasses import fields

import pytest
from support import deadline
from support.cli import sac_rag

from sac_rag.cli.commands.train import RANGES
from sac_rag.cli.main import build_parser
from sac_rag.config import SACConfig
from sac_rag.corpus import split_passages, to_passages
from sac_rag.corpus.documents import Document
from sac_rag.store import MemoryStore
from sac_rag.training.config import TRAINED_SAC_FIELDS, TrainConfig


def numeric_arguments() -> list[tuple[list[str], argparse.Action]]:
    """``(sub-command path, action)`` of every argument of every sub-command that takes a number."""
    found = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:  # argparse keeps no public list of a parser's arguments
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.type in (int, float) or hasattr(action.type, "bounds"):
                found.append((path, action))

    walk(build_parser(), [])
    return found


NUMERIC = numeric_arguments()


def out_of_range(action: argparse.Action) -> list[str]:
    """Values the argument must refuse: below its range, above it, not finite, not a number."""
    low, high = action.type.bounds
    floating = isinstance(low, float) or "number" in action.type.__name__
    values = [str(low - 1), "nan", "inf", "many"] if floating else [str(low - 1), "many", "1.5"]
    if ">" in action.type.__name__ and ">=" not in action.type.__name__:
        values.append(str(low))  # an open lower bound (a learning rate of 0)
    if high is not None:
        values.append(str(high + 1))
    return values


def test_every_numeric_flag_of_every_sub_command_has_a_range():
    assert len(NUMERIC) > 40
    unchecked = [f"{' '.join(path)} {action.dest}" for path, action in NUMERIC if action.type in (int, float)]
    assert unchecked == []
    trained = [*fields(TrainConfig), *(f for f in fields(SACConfig) if f.name in TRAINED_SAC_FIELDS)]
    numeric = {f.name for f in trained if str(f.type).startswith(("int", "float"))}
    assert sorted(numeric - RANGES.keys()) == []  # each numeric training flag has its own range


@pytest.mark.parametrize(
    ("path", "action"),
    NUMERIC,
    ids=[" ".join([*p, a.option_strings[-1] if a.option_strings else a.dest]) for p, a in NUMERIC],
)
def test_an_out_of_range_number_is_a_usage_error_before_anything_opens(path, action, capsys, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("opened before the arguments were checked")

    monkeypatch.setattr("sac_rag.model.SACModel.load", forbidden)
    monkeypatch.setattr(MemoryStore, "open", forbidden)
    monkeypatch.setattr(MemoryStore, "create", forbidden)
    name = action.option_strings[-1] if action.option_strings else None
    shown = "/".join(action.option_strings) if action.option_strings else action.metavar or action.dest
    for value in out_of_range(action):
        with pytest.raises(SystemExit) as usage:
            sac_rag(*path, *([name, value] if name else [value]))
        err = capsys.readouterr().err
        assert usage.value.code == 2 and f"argument {shown}:" in err, (value, err)


@pytest.mark.parametrize(
    "args",
    [["demo", "--passages", "-1"], ["demo", "-k", "0"], ["delete", "-5", "--store", "s"],
     ["delete", "99999999999999999999", "--store", "s"], ["ask", "q", "--store", "s", "--max-new-tokens", "0"]],
)  # fmt: skip
def test_the_issues_numbers_exit_2(args, capsys):
    with pytest.raises(SystemExit) as usage:
        sac_rag(*args)
    assert usage.value.code == 2 and "must be" in capsys.readouterr().err


# ----------------------------------------------------------------- special and huge input files (class 3)
def test_a_fifo_to_index_is_refused_naming_it_without_blocking(tmp_path, ckpt, capsys):
    fifo = tmp_path / "some.txt"
    os.mkfifo(fifo)
    with deadline(60):
        assert sac_rag("index", fifo, "--store", tmp_path / "s", "--model", ckpt, "--no-progress") == 1
    assert f"{fifo}: a FIFO (named pipe), not a regular file" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("shape", ["words without a full stop", "one unbroken token"])
def test_a_huge_single_line_is_split_linearly_in_passage_sized_counts(shape):
    """The issue: one 5 MB line took minutes and 1.7 GB while the tokenizer saw the whole line. Now the counter
    only ever sees about a passage, and each passage costs a few counts."""
    unit = "lorem ipsum dolor sit amet " if shape.startswith("words") else "abcdefghijklmnopqrstuvwxyz0123456789"
    text = (unit * (1_000_000 // len(unit))).strip()
    seen: list[int] = []

    def count(piece: str) -> int:
        seen.append(len(piece))
        return (len(piece) + 3) // 4  # about 4 characters per token

    done: list[int] = []
    with deadline(60):
        passages = split_passages(text, 160, count, done.append)
    assert max(count(p) for p in passages) <= 160 and min(map(len, passages[:-1])) >= 600
    assert "".join(passages).replace(" ", "") == text.replace(" ", "")
    assert max(seen) <= 2 * 4 * 160 + 4  # never the whole line
    assert sum(seen) <= 6 * len(text) and len(seen) <= 6 * len(passages)  # linear: a few counts a passage
    assert sum(done) == len(text) and len(done) >= len(passages)  # progress all along


def test_splitting_shows_progress(capsys):
    to_passages([Document("A short text. " * 50, "doc")], 16, progress=True)
    assert "splitting" in capsys.readouterr().err


# ----------------------------------------------------------------- messages a CLI user can act on (class 8)
def test_a_store_path_that_is_a_file_is_named_with_what_to_do(tmp_path, ckpt, capsys):
    doc, plain = tmp_path / "a.txt", tmp_path / "plain.txt"
    doc.write_text("A short document.")
    plain.write_text("not a store")
    assert sac_rag("index", doc, "--store", plain, "--model", ckpt, "--no-progress") == 1
    err = capsys.readouterr().err
    assert f"cannot create a store at {plain}: it already exists as a file; give a new path" in err
    assert "MemoryStore" not in err
    assert sac_rag("stats", "--store", plain) == 1
    assert f"no sac_rag store at {plain}: it is a file, and a store is a directory" in capsys.readouterr().err
    assert plain.read_text() == "not a store"


def test_a_missing_embedder_path_is_a_usage_error_naming_it(tmp_path, capsys):
    for command in (["index", "a.txt"], ["ask", "question?"], ["verify"]):
        with pytest.raises(SystemExit) as usage:
            sac_rag(*command, "--store", tmp_path / "s", "--embedder", "/nonexistent/model")
        err = capsys.readouterr().err
        assert usage.value.code == 2 and "argument --embedder: /nonexistent/model: no such directory" in err


def test_damaged_store_metadata_is_not_sent_back_to_repair(tmp_path, ckpt, capsys):
    doc = tmp_path / "a.txt"
    doc.write_text("Alan Turing was born in London.")
    store = tmp_path / "s"
    assert sac_rag("index", doc, "--store", store, "--model", ckpt, "--no-progress") == 0
    db = sqlite3.connect(store / "manifest.sqlite")
    db.execute("DROP TRIGGER meta_change")
    db.execute("UPDATE meta SET value = '[9, 9, 9]' WHERE key = 'kv_shape'")
    db.commit()
    db.close()
    capsys.readouterr()
    assert sac_rag("verify", "--store", store, "--repair", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and "kv_shape" in report["problems"][0]
    assert "restore the store from a copy" in report["problems"][0] and "--repair" not in report["problems"][0]


def test_float_ranges_refuse_non_finite_values():
    rate = RANGES["lr"]
    assert rate("0.001") == 0.001
    for bad in ("0", "-1", "nan", "inf", "-inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            rate(bad)
    assert math.isclose(RANGES["min_lr_ratio"]("1"), 1.0)


def test_a_fifo_named_like_a_document_inside_a_directory_is_named_too(tmp_path, ckpt, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("A document.")
    os.mkfifo(tmp_path / "docs" / "b.md")
    with deadline(60):
        assert sac_rag("index", tmp_path / "docs", "--store", tmp_path / "s", "--model", ckpt) == 1
    assert "b.md: a FIFO (named pipe), not a regular file" in capsys.readouterr().err
