"""Answer metrics against hand-computed cases."""

import math

import pytest

from sac_rag.eval.metrics import (
    aggregate,
    first_answer_em,
    normalize_answer,
    rouge1_f,
    rouge_tokens,
    score,
    squad_em,
    squad_f1,
)


def test_normalize_answer():
    assert normalize_answer("  The  Denver Broncos!! ") == "denver broncos"
    assert normalize_answer("An apple, a pear & the plum.") == "apple pear plum"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("Levi's") == "levis"


def test_squad_em_max_over_answers():
    assert squad_em("the Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert squad_em("Denver", ["Denver Broncos", "Broncos"]) == 0.0
    assert squad_em("anything", []) == 0.0


def test_squad_f1_hand_computed():
    # pred tokens [denver, broncos, won]; gold [denver, broncos]: P=2/3, R=1, F1=0.8
    assert squad_f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    # best of two gold answers: [broncos] vs pred [denver, broncos, won]: P=1/3 R=1 -> 0.5; max is 0.8
    assert squad_f1("Denver Broncos won", ["Broncos", "the Denver Broncos"]) == pytest.approx(0.8)
    # repeated tokens are clipped: pred [a1, a1] vs gold [a1]: overlap 1, P=1/2, R=1 -> 2/3
    assert squad_f1("a1 a1", ["a1"]) == pytest.approx(2 / 3)
    assert squad_f1("Paris", ["London"]) == 0.0
    assert squad_f1("", ["the"]) == 0.0  # empty after normalisation: 0, as the v1.1 / MRQA script


def test_first_answer_em_is_exact_and_first_only():
    assert first_answer_em(" Denver Broncos\n", ["Denver Broncos", "Broncos"]) == 1.0
    assert first_answer_em("Broncos", ["Denver Broncos", "Broncos"]) == 0.0  # second answer ignored
    assert first_answer_em("denver broncos", ["Denver Broncos"]) == 0.0  # case-sensitive
    assert first_answer_em("x", []) == 0.0


def test_rouge1():
    assert rouge_tokens("Levi's Stadium, CA") == ["levi", "s", "stadium", "ca"]
    # pred [the, denver, broncos] vs gold [denver, broncos]: P=2/3, R=1 -> 0.8 (articles count in ROUGE)
    assert rouge1_f("The Denver Broncos", ["Denver Broncos", "x"]) == pytest.approx(0.8)
    # first answer only: pred [broncos] vs [denver, broncos]: P=1, R=1/2 -> 2/3
    assert rouge1_f("Broncos", ["Denver Broncos", "Broncos"]) == pytest.approx(2 / 3)
    assert rouge1_f("!!", ["a"]) == 0.0
    assert rouge1_f("a", []) == 0.0


def test_score_and_aggregate_macro_micro():
    rows = [
        {"dataset": "A", **score("Paris", ["Paris"])},
        {"dataset": "A", **score("Rome", ["Paris"])},
        {"dataset": "B", **score("7", ["7"])},
    ]
    agg = aggregate(rows)
    assert agg["datasets"]["A"]["em"] == 50.0 and agg["datasets"]["B"]["em"] == 100.0
    assert agg["macro"]["em"] == 75.0  # mean over datasets
    assert agg["micro"]["em"] == pytest.approx(200 / 3)  # mean over questions
    assert agg["macro"]["n"] == agg["micro"]["n"] == 3
    assert math.isnan(aggregate([])["micro"]["f1"])


def test_standard_errors_of_the_means():
    import math
    import statistics

    from sac_rag.eval.metrics import aggregate

    rows = [{"dataset": "A", "f1": v} for v in (0.0, 1.0, 0.5, 1.0)] + [{"dataset": "B", "f1": v} for v in (0.2, 0.4)]
    out = aggregate(rows, keys=("f1",))
    se_a = statistics.stdev([0, 100, 50, 100]) / 2
    se_b = statistics.stdev([20, 40]) / math.sqrt(2)
    assert out["datasets"]["A"]["f1_se"] == pytest.approx(se_a)
    assert out["macro"]["f1_se"] == pytest.approx(math.sqrt(se_a**2 + se_b**2) / 2)
    assert out["micro"]["f1_se"] == pytest.approx(statistics.stdev([0, 100, 50, 100, 20, 40]) / math.sqrt(6))
    assert math.isnan(aggregate(rows[:1], keys=("f1",))["micro"]["f1_se"])
