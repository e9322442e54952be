"""Ray Data indexing on a local cluster the tests start: equal to single-process indexing, killed workers re-run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from support.scale import DIE, FAIL, FlakyWriter, corpus, ray_init_args  # noqa: E402
from support.store import bow_embedder  # noqa: E402

from sac_rag.scale import ShardedStore, index_with_ray  # noqa: E402
from sac_rag.scale.ray_index import STAGING  # noqa: E402
from sac_rag.store import MemoryStore  # noqa: E402
from sac_rag.testing import tiny_model  # noqa: E402

pytestmark = pytest.mark.timeout(300)
TEXTS = corpus(240)  # 243 passages, 3 of them repeated texts
IDS = list(range(len(TEXTS)))
META = [{"n": i} for i in IDS]
QUERIES = ["passage 17 topic 3", "number 42", "tells about topic 6 and number 9"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(include_dashboard=False, log_to_driver=False, **ray_init_args())
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same corpus indexed by one process with MemoryStore.add."""
    path = tmp_path_factory.mktemp("single") / "store"
    with MemoryStore.create(path, tiny_model(), bow_embedder, memory_dtype="float32") as store:
        store.add(TEXTS, META, IDS, progress=False)
    store = MemoryStore.open(path, embedder=bow_embedder)
    yield store
    store.close()


def run(path, n=None, **kw):
    n = len(TEXTS) if n is None else n
    args = dict(model=tiny_model, embedder=bow_embedder, memory_dtype="float32", metadata=META[:n], ids=IDS[:n])
    return index_with_ray(TEXTS[:n], path, **{**args, **kw})


def assert_same(store, reference, ids):
    assert [(r.text, r.metadata) for r in store.get(ids)] == [(r.text, r.metadata) for r in reference.get(ids)]
    for got, want in zip(store.memories(ids), reference.memories(ids)):
        torch.testing.assert_close(got.keys, want.keys, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.values, want.values, atol=1e-6, rtol=0)
        assert torch.equal(got.positions, want.positions) and (got.length, got.offset) == (want.length, want.offset)


def ranked(hits):
    """Hits as groups of equal score, best first, the last group dropped (``k`` may cut it anywhere)."""
    groups: dict[float, set[int]] = {}
    for h in hits:
        groups.setdefault(round(h.score, 5), set()).add(h.id)
    return sorted(groups.items(), reverse=True)[:-1]


def assert_same_search(store, reference, k=8):
    for query in QUERIES:
        got, want = store.search(query, k), reference.search(query, k)
        assert len(got) == len(want) == k and ranked(got) == ranked(want)
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-6)


def test_ray_index_equals_single_process(cluster, reference, tmp_path):
    report = run(tmp_path / "s", unit_size=24, workers=2)
    assert (report.passages, report.compressed, report.units) == (243, 240, 10)
    with MemoryStore.open(tmp_path / "s", embedder=bow_embedder) as store:
        assert store.ids() == IDS
        assert_same(store, reference, IDS)
        assert_same_search(store, reference)
        check = store.verify()
        assert check.ok and not check.warnings and store.stats()["shards"] == 10
        assert store.fingerprint == reference.fingerprint
    assert not (tmp_path / "s" / STAGING).exists()
    # a second run, from a Ray Dataset of the same rows, finds every text compressed: nothing is
    # sent to a worker and the store is unchanged
    rows = ray.data.from_items([{"text": t, "id": i, "metadata": m} for t, i, m in zip(TEXTS, IDS, META)])
    again = index_with_ray(rows, tmp_path / "s", model=tiny_model, embedder=bow_embedder, workers=2)
    assert (again.compressed, again.units) == (0, 0)
    with MemoryStore.open(tmp_path / "s", embedder=bow_embedder) as store:
        assert store.ids() == IDS and store.verify().ok
        assert_same(store, reference, IDS)


def test_killed_or_failing_workers_lose_nothing(cluster, reference, tmp_path):
    (tmp_path / DIE).touch()  # a worker is killed right after writing a unit, before reporting it
    (tmp_path / FAIL).touch()  # another unit raises an OSError once written
    report = run(tmp_path / "s", n=48, unit_size=8, workers=2, worker_cls=FlakyWriter)
    assert not (tmp_path / DIE).exists() and not (tmp_path / FAIL).exists(), "no worker failed"
    assert (report.passages, report.units) == (48, 6)
    with MemoryStore.open(tmp_path / "s", embedder=bow_embedder) as store:
        assert store.ids() == IDS[:48]
        assert_same(store, reference, IDS[:48])
        check = store.verify()
        assert check.ok and not check.warnings  # the re-run units were written once, not twice


def test_sharded_store_answers_across_parts(cluster, reference, tmp_path):
    report = run(tmp_path / "s", unit_size=32, workers=2, shards=3)
    assert report.passages == 243
    with ShardedStore.open(tmp_path / "s", embedder=bow_embedder) as store:
        assert store.ids() == IDS and [len(p) for p in store.parts] == [81, 81, 81]
        assert_same(store, reference, IDS[::-1])
        assert_same_search(store, reference)  # exact: every part's flat index
        assert store.verify().ok
        state = store.build_ivf(nlist=4, parallel=False)  # the CLI test below adds parts as Ray tasks
        assert state["vectors"] == 243 and store.stats()["ivf"]["fresh"]
        assert store.ivf_index() is not None
        store.nprobe = 4  # every list: IVF search is exact
        store._ivf = None
        assert_same_search(store, reference)
        old = store.memories([5])[0]
    # a re-run replaces id 5's text and adds id 300: two texts compressed, into parts 2 and 0
    kw = dict(model=tiny_model, embedder=bow_embedder, workers=2)
    report = index_with_ray(["kappa lambda mu", "nu xi omicron"], tmp_path / "s", ids=[5, 300], **kw)
    assert (report.compressed, report.units) == (2, 2)
    with ShardedStore.open(tmp_path / "s", embedder=bow_embedder) as store:
        assert len(store) == 244 and store.get([5])[0].text == "kappa lambda mu"
        assert not store.stats()["ivf"]["fresh"] and store.ivf_index() is None  # exact search until rebuilt
        assert store.search("kappa lambda", k=1)[0].id == 5 and store.search("omicron", k=1)[0].id == 300
        assert not torch.equal(store.memories([5])[0].keys, old.keys)
        assert store.stats()["memories"] == 241 and store.verify().ok  # id 5's old memory is gone


def test_cli_scale_index_ivf_search(cluster, tmp_path, capsys, ckpt):
    from sac_rag.cli.main import main

    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(6):
        (docs / f"d{n}.txt").write_text(" ".join(corpus(40)[n * 6 : n * 6 + 6]))
    store = tmp_path / "store"
    args = ["scale", "index", docs, "--store", store, "--model", ckpt, "--shards", "2", "--workers", "1"]
    assert main([str(a) for a in [*args, "--passage-tokens", "40", "--unit-size", "4"]]) == 0
    assert "passages" in capsys.readouterr().out
    with ShardedStore.open(store) as sharded:
        n = len(sharded)
        assert n >= 6 and sharded.verify().ok
    assert main(["scale", "ivf", "--store", str(store), "--nlist", "2"]) == 0
    assert f"IVF-Flat with 2 lists over {n} passages" in capsys.readouterr().out
    assert main(["scale", "search", "topic 3 and number", "--store", str(store), "-k", "2", "--nprobe", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["scale", "index", str(tmp_path / "missing.txt"), "--store", str(tmp_path / "x")]) == 1
