import gzip
import json

import pytest
from support import ROOT

from sac_rag.qa import MalformedRecord, QAExample, load_qa

SHARED = ROOT.parent / "shared" / "data"


def _mrqa(tmp_path, records, gz=False):
    lines = [json.dumps({"header": {"dataset": "Toy", "split": "dev"}})] + [json.dumps(r) for r in records]
    path = tmp_path / ("toy.jsonl.gz" if gz else "toy.jsonl")
    data = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(data.encode()))
    else:
        path.write_text(data)
    return path


GOOD = {
    "context": "Paris is in France.",
    "qas": [{"qid": "q1", "question": "Where is Paris? [MASK].", "answers": ["France"]}],
}


@pytest.mark.parametrize("gz", [False, True])
def test_mrqa(tmp_path, gz):
    (ex,) = load_qa(_mrqa(tmp_path, [GOOD], gz=gz))
    assert (ex.qid, ex.question, ex.answers, ex.dataset) == ("q1", "Where is Paris?", ("France",), "Toy")
    assert ex.context == "Paris is in France."


def test_squad(tmp_path):
    doc = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "Paris is in France.",
                        "qas": [
                            {"id": "a", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]},
                            {"id": "b", "question": "No?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(doc))
    (ex,) = load_qa(path)
    assert (ex.qid, ex.answers) == ("a", ("France",))


def test_malformed_records_are_named(tmp_path):
    bad = dict(GOOD, qas=[{"qid": "q9", "question": "Where?", "answers": "France"}])
    with pytest.raises(MalformedRecord, match=r"toy.jsonl:3: question q9: 'answers' must be a list"):
        load_qa(_mrqa(tmp_path, [GOOD, bad]))
    path = tmp_path / "broken.jsonl"
    path.write_text('{"header": {}}\n{"context": \n')
    with pytest.raises(MalformedRecord, match="broken.jsonl:2: not valid JSON"):
        load_qa(path)
    with pytest.raises(MalformedRecord, match="missing 'context'"):
        load_qa(_mrqa(tmp_path, [{"qas": []}]))
    with pytest.raises(ValueError, match="unknown QA format"):
        load_qa(_txt(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_qa(tmp_path / "missing.jsonl")


def _txt(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hi")
    return p


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
def test_real_files_load():
    dev = load_qa(SHARED / "dev" / "mrqa_dev_SQuAD.jsonl.gz", limit=50)
    assert len(dev) == 50 and dev[0].dataset == "SQuAD" and all(ex.answers for ex in dev)
    train = load_qa(SHARED / "train" / "squad-train-seed-42-1024.jsonl")
    assert len(train) == 1024 and not any(ex.question.endswith("[MASK].") for ex in train)


def test_a_question_trains_on_its_first_non_blank_answer_and_sits_among_its_passages():
    ex = QAExample("q", "Where is Paris?", "Paris is in France.", (" ", " France ", "FR"))
    assert ex.answer == "France" and ex.prompt_passages == ("Paris is in France.",)
    among = QAExample("q", "Where?", "b", ("x",), passages=("a", "b"))
    assert among.prompt_passages == ("a", "b")
    with pytest.raises(ValueError, match="question q has no answer to train on"):
        _ = QAExample("q", "Where?", "b", ("", "  ")).answer
