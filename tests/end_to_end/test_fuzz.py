"""Property-based tests (hypothesis) over the store API, the passage splitter and the CLI: any input either
works as documented or is refused with a clear error; never a traceback, never a damaged store.

The default run tries ``sum(DEFAULT.values())`` generated inputs (printed at the end of each test);
``python -m pytest -m fuzz tests/end_to_end/test_fuzz.py`` tries ten times as many, with fresh random seeds.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.models import count_tokens
from support.store import PASSAGES, bow_embedder

from sac_rag.cli.main import main
from sac_rag.corpus import split_passages
from sac_rag.store import MemoryStore, StoreError

DEFAULT = {"split": 250, "write": 200, "search": 300, "cli": 250}  # generated inputs per property
ANY_CHAR = st.characters(exclude_categories=())  # surrogates, NULs and controls included
HUGE_TOKEN = st.builds(lambda c, n: c * n, ANY_CHAR, st.integers(20, 300))  # one unbroken run
TEXT = st.one_of(st.text(ANY_CHAR, min_size=1, max_size=40), HUGE_TOKEN, st.sampled_from(PASSAGES))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(ANY_CHAR),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(ANY_CHAR, max_size=4), inner, max_size=3),
    max_leaves=5,
)
METADATA = st.dictionaries(st.text(ANY_CHAR, max_size=6), JSON, max_size=3)
NOT_JSON = st.dictionaries(st.integers() | st.text(max_size=2), st.tuples(st.integers()) | st.floats(), min_size=1)
BAD_IDS = st.lists(st.integers(-3, 2**64) | st.booleans() | st.text(max_size=2), max_size=3)


@st.composite
def writes(draw) -> dict:
    """Mostly well-formed calls of ``add`` / ``upsert`` (any text, metadata, ids), one in three with nonsense."""
    n = draw(st.integers(1, 3))
    call = {
        "texts": draw(st.lists(TEXT, min_size=n, max_size=n)),
        "metadata": draw(st.none() | st.lists(METADATA, min_size=n, max_size=n)),
        "upsert": draw(st.booleans()),
        "batch_size": draw(st.integers(1, 4)),
        "commit_every": draw(st.none() | st.integers(1, 3)),
    }
    new_ids = st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True)
    call["ids"] = draw(new_ids if call["upsert"] else st.none() | new_ids)
    nonsense = {
        "texts": st.lists(TEXT | st.integers() | st.none() | st.sampled_from(["", " \n\t"]), max_size=4),
        "metadata": st.lists(NOT_JSON | st.integers() | st.text(max_size=3), max_size=4),
        "ids": st.none() | BAD_IDS,
        "batch_size": st.integers(-2, 0) | st.floats() | st.booleans(),
        "commit_every": st.integers(-2, 0) | st.text(max_size=2),
    }
    spoil = draw(st.sampled_from([None, None, *nonsense]))
    if spoil is not None:
        call[spoil] = draw(nonsense[spoil])
    return call


K = st.integers(-2, 60) | st.floats(allow_nan=True) | st.booleans() | st.none() | st.text(max_size=2)


def examples(request, name: str) -> int:
    return DEFAULT[name] * (10 if request.node.get_closest_marker("fuzz") else 1)


def run(request, name: str, strategies: dict, check) -> None:
    """Run ``check`` on ``examples`` generated inputs (derandomised by default; random under ``-m fuzz``)."""
    tried = []

    def counted(**kwargs):
        tried.append(1)
        check(**kwargs)

    more = request.node.get_closest_marker("fuzz") is not None
    options = settings(
        max_examples=examples(request, name),
        deadline=None,
        derandomize=not more,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    options(given(**strategies)(counted))()
    print(f"\n{name}: {len(tried)} generated inputs, no traceback, no damage")


SCALES = [pytest.param(None, id="default"), pytest.param(None, id="more", marks=pytest.mark.fuzz)]


@pytest.fixture(scope="module")
def store(tmp_path_factory, sac):
    with MemoryStore.create(tmp_path_factory.mktemp("fuzz") / "s", sac, bow_embedder) as s:
        s.add(PASSAGES, [{"n": i} for i in range(len(PASSAGES))], progress=False)
        yield s


@pytest.mark.parametrize("_", SCALES)
def test_split_passages_keeps_every_character_within_the_size(request, _):
    def check(text: str, max_tokens: int) -> None:
        try:
            passages = split_passages(text, max_tokens, count_tokens)
        except ValueError:  # not valid Unicode (lone surrogates): refused before any tokenizer sees it
            assert any("\ud800" <= c <= "\udfff" for c in text)
            return
        assert all(count_tokens(p) <= max_tokens for p in passages)
        assert "".join("".join(p.split()) for p in passages) == "".join(text.split())

    run(
        request,
        "split",
        {"text": st.text(ANY_CHAR, max_size=300) | HUGE_TOKEN, "max_tokens": st.integers(8, 48)},
        check,
    )


@pytest.mark.parametrize("_", SCALES)
def test_writes_store_what_was_given_or_change_nothing(request, _, store):
    written = []

    def check(call: dict) -> None:
        texts, metadata = call["texts"], call["metadata"]
        before = (len(store), store.stats()["generation"])
        write = store.upsert if call["upsert"] else store.add
        try:
            stored = write(
                texts, metadata, call["ids"], batch_size=call["batch_size"], commit_every=call["commit_every"],
                progress=False,
            )  # fmt: skip
        except (ValueError, TypeError, StoreError):
            assert (len(store), store.stats()["generation"]) == before
        else:
            written.append(len(stored))
            rows = store.get(stored)
            assert [r.text for r in rows] == texts and [r.metadata for r in rows] == (metadata or [{}] * len(texts))
            assert all(m.n_anchors > 0 for m in store.memories(stored))
        assert store.verify().ok

    run(request, "write", {"call": writes()}, check)
    print(f"write: {len(written)} calls stored {sum(written)} passages, the others were refused")


@pytest.mark.parametrize("_", SCALES)
def test_search_returns_stored_passages_best_first_or_refuses(request, _, store):
    def check(query, k) -> None:
        try:
            hits = store.search(query, k)
        except ValueError:
            return
        assert len(hits) == min(k, len(store)) and all(math.isfinite(h.score) for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert [h.text for h in hits] == [r.text for r in store.get([h.id for h in hits])]

    run(request, "search", {"query": TEXT | st.integers() | st.none(), "k": K}, check)


ARG = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6)
NUMBER = st.integers(-3, 3).map(str) | ARG


@pytest.mark.parametrize("_", SCALES)
def test_cli_exits_with_a_documented_code_and_no_traceback(request, _, store, tmp_path_factory, capsys):
    doc = tmp_path_factory.mktemp("cli") / "doc.txt"
    doc.write_text("A small document about the river Seine.")
    commands = st.one_of(
        st.tuples(st.sampled_from(["stats", "verify"]), st.lists(st.sampled_from(["--json"]), max_size=1)),
        st.tuples(st.just("delete"), st.lists(st.integers(-2, 6).map(str) | ARG, min_size=1, max_size=3)),
        st.tuples(
            st.just("ask"),
            st.tuples(ARG, st.sampled_from(["-k", "--max-new-tokens"]), NUMBER, st.just("--model"), st.just("/none")),
        ),
        st.tuples(
            st.just("index"),
            st.tuples(
                st.sampled_from([str(doc), "/no/such.txt"]),
                st.sampled_from(["--batch-size", "--commit-every", "--passage-tokens", "--memory-dtype"]),
                NUMBER,
                st.just("--model"),
                st.just("/none"),
            ),
        ),
    )

    codes: list[int] = []

    def check(command) -> None:
        name, args = command
        argv = [name, *args, "--store", str(store.path)]
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: usage errors (2), --help / --version (0)
            code = e.code
        err = capsys.readouterr().err
        codes.append(code)
        assert code in (0, 1, 2) and "Traceback" not in err
        assert code == 0 or err.strip(), argv  # a failure always says why
        assert store.verify().ok

    run(request, "cli", {"command": commands}, check)
    print("cli exit codes:", {c: codes.count(c) for c in sorted(set(codes))})
