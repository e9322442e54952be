import itertools

import pytest

from sac_rag.text.anchors import anchor_indices, anchor_local_indices, chunk_layout


def positions(L, r, chunk=510):
    """Anchor position ids (index + 1, the official numbering)."""
    return [i + 1 for i in anchor_indices(L, chunk, r)]


@pytest.mark.parametrize(
    "L,r,first,last,count",
    [
        (510, 5, 3, 508, 102),
        (700, 5, 3, 698, 140),
        (1100, 5, 3, 1098, 220),
        (137, 5, 3, 133, 27),
        (510, 15, 8, 503, 34),
        (700, 15, 8, 698, 47),
        (137, 15, 8, 128, 9),
        (510, 51, 26, 485, 10),
        (137, 51, 26, 128, 3),
    ],
)
def test_spec_table(L, r, first, last, count):
    p = positions(L, r)
    assert (p[0], p[-1], len(p)) == (first, last, count)
    assert all(b - a == r for a, b in itertools.pairwise(p) if (a - 1) // 510 == (b - 1) // 510)


@pytest.mark.parametrize(
    "L,r,tail,total",
    [
        (511, 5, [511], 103),
        (512, 5, [511], 103),
        (513, 5, [513], 103),
        (700, 5, list(range(513, 699, 5)), 140),
        (511, 15, [511], 35),
        (512, 15, [511], 35),
        (517, 15, [511], 35),
        (518, 15, [518], 35),
        (520, 51, [511], 11),
        (536, 51, [536], 11),
    ],
)
def test_short_last_chunk(L, r, tail, total):
    p = positions(L, r)
    assert [x for x in p if x > 510] == tail
    assert len(p) == total


def test_chunks_and_fallback():
    layout = chunk_layout(1100, 510, 5)
    assert [(c.start, c.length) for c in layout] == [(0, 510), (510, 510), (1020, 80)]
    assert anchor_local_indices(1, 5) == [0]
    assert anchor_local_indices(3, 5) == [2]
    with pytest.raises(ValueError):
        chunk_layout(0, 510, 5)
