"""Documents to passages: reading files, splitting, stable ids, and the demo's Wikipedia corpus."""

from __future__ import annotations

import json

import pytest

from sac_rag.corpus import passage_id, read_documents, split_passages, to_passages
from sac_rag.corpus.demo_corpus import clean_wikitext, lead_section, wikipedia_articles


def test_split_keeps_sentences_whole_and_respects_the_budget():
    text = 'Alan Turing was born in 1912. He said "Yes." Then he left!\n\nA second paragraph starts. It ends here.'
    words = lambda s: len(s.split())  # noqa: E731
    assert split_passages(text, max_tokens=9, count_tokens=words) == [
        'Alan Turing was born in 1912. He said "Yes."',
        "Then he left!\nA second paragraph starts.",
        "It ends here.",
    ]
    assert split_passages(text, max_tokens=1000) == [
        'Alan Turing was born in 1912. He said "Yes." Then he left!\nA second paragraph starts. It ends here.'
    ]
    long_sentence = " ".join(f"w{i}" for i in range(100))
    pieces = split_passages(long_sentence, max_tokens=20, count_tokens=words)
    assert [len(p.split()) for p in pieces] == [20] * 5 and " ".join(pieces) == long_sentence
    with pytest.raises(ValueError, match="max_tokens"):
        split_passages(text, max_tokens=2)


def test_read_documents_txt_md_jsonl_and_directories(tmp_path):
    (tmp_path / "a.txt").write_text("First document.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# Title\n\nSecond document.")
    records = [{"text": "Third.", "title": "T"}, {"text": "Fourth.", "year": 2020}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    docs = read_documents([tmp_path])
    assert [d.text for d in docs] == ["First document.", "Third.", "Fourth.", "# Title\n\nSecond document."]
    assert docs[1].metadata == {"title": "T"} and docs[1].source.endswith("c.jsonl:1")
    passages = to_passages(docs, 50)
    assert passages.ids[0] == passage_id(str(tmp_path / "a.txt"), 0)
    jsonl = str((tmp_path / "c.jsonl").resolve())
    assert passages.metadata[2] == {"source": docs[2].source, "passage": 0, "year": 2020, "source_file": jsonl}
    assert len(set(passages.ids)) == len(passages) == 4


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.txt", b"caf\xe9 latin-1", r"bad.txt: not UTF-8 text \(byte 0xe9 at offset 3\)"),
        ("bad.jsonl", b'{"text": "ok"}\nnot json\n', r"bad.jsonl:2: not JSON"),
        ("bad2.jsonl", b'{"title": "no text"}\n', r"bad2.jsonl:1: each line must be a JSON object"),
        ("bad.pdf", b"%PDF", "unsupported file type"),
    ],
)
def test_bad_files_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_documents([tmp_path / name])


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_documents([tmp_path / "nope.txt"])
    with pytest.raises(ValueError, match="no .txt"):
        read_documents([tmp_path])


def test_wikitext_cleanup():
    markup = "'''Algeria''' (; {{lang|ar|x}}Dzayer) is a country.\n\n== History ==\nOld times.\n[[Category:Africa]]"
    text = clean_wikitext(markup)
    assert text.startswith("Algeria (Dzayer) is a country.") and "'''" not in text
    assert lead_section(text) == "Algeria (Dzayer) is a country."


def test_demo_corpus_reads_gensim_wikipedia_in_place():
    pytest.importorskip("gensim")
    docs = wikipedia_articles(limit=5)
    assert len(docs) == 5 and docs[0].metadata["title"] == "Anarchism"
    assert all(len(d.text) >= 400 and "'''" not in d.text and "==" not in d.text for d in docs)
