"""IVF / IVF-PQ indexes: trained on a sample, filled in parts, merged on disk, served memory-mapped."""

from __future__ import annotations

import shutil

import faiss
import numpy as np
import pytest

from sac_rag.scale import IVFIndex, ivf

DIM, N, QUERIES, K, LISTS = 32, 10_000, 200, 10, 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """FAISS's OpenMP threads only fight each other on a small, busy machine (k-means gets 20x slower)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """Unit vectors around 100 random centres (clustered, as real embeddings are), and queries near them."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 100, N)] + 0.5 * rng.standard_normal((N, DIM)).astype(np.float32)
    q = centres[rng.integers(0, 100, QUERIES)] + 0.5 * rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = rng.permutation(10 * N)[:N].astype(np.int64)  # sparse, shuffled ids as a store's are
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    flat.add_with_ids(x, ids)
    _, truth = flat.search(q, K)
    return x, ids, q, truth


def build(tmp_path, x, ids, pq_m=None, parts=4):
    trained = ivf.save_trained(ivf.train(x[:3000], nlist=LISTS, pq_m=pq_m), tmp_path / "trained.faiss")
    files = [ivf.add_part(trained, ids[p::parts], x[p::parts], tmp_path / f"part-{p}.faiss") for p in range(parts)]
    return ivf.merge_on_disk(trained, files, tmp_path / "merged")


def recall(index: IVFIndex, q, truth) -> float:
    _, found = index.search_many(q, K)
    return np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)])


def test_ivf_merged_on_disk_recalls_like_flat(data, tmp_path):
    x, ids, q, truth = data
    path = build(tmp_path, x, ids)
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "merged", moved)  # the lists are found beside the index, wherever it goes
    index = IVFIndex.load(moved / ivf.INDEX_FILE, nprobe=8)
    assert len(index) == N and not path.exists()
    assert isinstance(
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(index.index).invlists), faiss.OnDiskInvertedLists
    )
    assert recall(index, q, truth) >= 0.9
    index.nprobe = LISTS  # every list: exact
    assert recall(index, q, truth) == 1.0
    best = index.search(q[0], 3)
    assert [i for i, _ in best] == truth[0][:3].tolist() and best[0][1] >= best[1][1] >= best[2][1]


def test_ivf_pq_recall_and_plain_mmap(data, tmp_path):
    x, ids, q, truth = data
    index = IVFIndex.load(build(tmp_path, x, ids, pq_m=16), nprobe=LISTS)
    assert 0.6 <= recall(index, q, truth) < 1.0  # PQ codes are lossy: 16 bytes for 128
    # a single-file IVF index (not merged on disk) is served through IO_FLAG_MMAP
    whole = ivf.train(x[:3000], nlist=LISTS)
    whole.add_with_ids(x, ids)
    faiss.write_index(whole, str(tmp_path / "whole.faiss"))
    mapped = IVFIndex.load(tmp_path / "whole.faiss", nprobe=8)
    assert len(mapped) == N and recall(mapped, q, truth) >= 0.9


def test_train_refuses_bad_shapes(data):
    x = data[0]
    with pytest.raises(ValueError, match="at least as many"):
        ivf.train(x[:10], nlist=LISTS)
    with pytest.raises(ValueError, match="must divide"):
        ivf.train(x[:1000], nlist=8, pq_m=7)
