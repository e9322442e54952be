"""A compact memory read from a store comes laid out for placing (decoded entry by entry, its layout made from its
counts): the chunk is the padded one the codec always gave, and it places the same K/V as that padded chunk."""

from __future__ import annotations

import threading

import pytest
import torch
from support.store import bow_embedder

from sac_rag.memory import compose
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.compose import place
from sac_rag.memory.geometry import entry_nbytes
from sac_rag.store import MemoryStore
from sac_rag.store.codec import pack_memory, unpack_chunk, unpack_memory
from sac_rag.store.shards import ShardReader, tensors_crc, write_shard
from sac_rag.testing import text_of_tokens, tiny_model

DTYPES = ["int8", "bfloat16", "float16", "float32"]


@pytest.fixture(scope="module")
def model():
    return tiny_model(memory_kind="compact", compact_keep=0.3)


@pytest.fixture(scope="module")
def memories(model) -> list[MemoryChunk]:
    return model.compress([text_of_tokens(n, seed=n) for n in (23, 60, 41)])


def padded(tensors: dict[str, torch.Tensor], like: MemoryChunk) -> MemoryChunk:
    """The chunk as :func:`unpack_memory` gives it (padded, no layout)."""
    keys, values, positions, bias = unpack_memory(tensors)
    return MemoryChunk(keys, values, positions, like.length, like.offset, like.fingerprint, like.meta, bias)


def assert_same_chunk(a: MemoryChunk, b: MemoryChunk) -> None:
    for x, y in ((a.keys, b.keys), (a.values, b.values), (a.positions, b.positions), (a.bias, b.bias)):
        assert same_bits(x, y)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to the bit (``torch.equal`` takes -0.0 for 0.0)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8)


def makes_keys(model, chunk: MemoryChunk) -> bool:
    """Whether the chunk's layout makes its keys at each placing (a read int8 chunk's :data:`compose.KeyMaker`)."""
    held = compose._LAYOUTS.get(id(chunk), {}).get((model.dtype, model.device))
    return held is not None and callable(held.keys)


def assert_same_placed(model, a: MemoryChunk, b: MemoryChunk, *, exact: bool = False) -> None:
    """``a`` places the same K/V and bias as ``b``: bit for bit, but for keys made by a key maker away from their own
    position (decoding and rotation in one product: equal up to float rounding) unless ``exact``."""
    for position in (a.offset, 57):
        made = not exact and makes_keys(model, a) and position != a.offset
        x = place(a, position, model.shifter, model.dtype, model.device)
        y = place(b, position, model.shifter, model.dtype, model.device)
        for got, want in zip(x.keys, y.keys, strict=True):
            if made:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
            else:
                assert same_bits(got, want)
        for got, want in zip((*x.values, *x.bias), (*y.values, *y.bias), strict=True):
            assert same_bits(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_unpacked_chunk_is_the_padded_chunk_and_places_the_same(model, memories, dtype):
    for memory in memories:
        tensors = pack_memory(memory, dtype)
        chunk = unpack_chunk(tensors, memory.length, memory.offset, memory.fingerprint, memory.meta)
        want = padded(tensors, memory)
        assert_same_placed(model, chunk, want)  # from the layout it was read with, its padded K/V still to be made
        assert_same_chunk(chunk, want)  # made now
        assert_same_placed(model, chunk, want)  # laid out again, from them


def test_an_int8_chunk_comes_laid_out_for_its_decoder(model, memories):
    """The layout is made with the chunk (float32 entries: the decoder's dtype), not on its first placement, and the
    padded K/V the chunk holds are made only when read."""
    memory = memories[1]
    chunk = unpack_chunk(pack_memory(memory, "int8"), memory.length, memory.offset, "", {})
    assert chunk.pending is not None and chunk.dtype == model.dtype
    held = compose._LAYOUTS[id(chunk)][(model.dtype, model.device)]
    first = place(chunk, 9, model.shifter, model.dtype, model.device)
    again = place(chunk, 40, model.shifter, model.dtype, model.device)
    assert compose._LAYOUTS[id(chunk)][(model.dtype, model.device)] is held  # placing used it, made none
    assert chunk.pending is not None  # nor did it make the padded K/V
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(first.values + first.bias, again.values + again.bias))
    # each of keys, values and bias: every layer a view of one tensor
    assert all(len({t.untyped_storage().data_ptr() for t in ts}) == 1 for ts in (first.keys, first.values, first.bias))
    # what the pipeline reads of a memory it has not placed yet makes nothing either
    assert (chunk.entries_per_head, chunk.nbytes, chunk.full_kv_nbytes(), chunk.n_anchors) == (
        memory.entries_per_head,
        entry_nbytes(memory.shape[-1], torch.float32, biased=True) * memory.entries,
        memory.full_kv_nbytes(torch.float32),
        int(torch.isfinite(memory.bias).sum(-1).max()),
    )
    assert chunk.pending is not None
    # a bfloat16 store's chunk holds bfloat16 K/V: a float32 decoder lays it out itself
    bf16 = unpack_chunk(pack_memory(memory, "bfloat16"), memory.length, memory.offset, "", {})
    assert set(compose._LAYOUTS[id(bf16)]) == {(torch.bfloat16, torch.device("cpu"))}


def test_a_chunk_changed_after_reading_is_laid_out_again(model, memories):
    memory = memories[2]
    chunk = unpack_chunk(pack_memory(memory, "int8"), memory.length, memory.offset, "", {})
    place(chunk, 3, model.shifter, model.dtype, model.device)
    chunk.values.mul_(2)
    chunk.keys = chunk.keys + 1
    want = MemoryChunk(chunk.keys.clone(), chunk.values.clone(), chunk.positions, chunk.length, bias=chunk.bias.clone())
    assert_same_placed(model, chunk, want)


def test_stored_entries_that_do_not_lay_out_from_their_counts_are_read_as_before(memories):
    memory = memories[0]
    tensors = pack_memory(memory, "float32")
    tensors["b"] = tensors["b"].clone()
    tensors["b"][0] = float("inf")  # a stored bias that overflowed its dtype: its column is not "used"
    chunk = unpack_chunk(tensors, memory.length, memory.offset, "", {})
    assert_same_chunk(chunk, padded(tensors, memory))
    assert id(chunk) not in compose._LAYOUTS
    short = {**pack_memory(memory, "int8")}
    short["k"] = short["k"][:1]
    with pytest.raises(ValueError, match="stored entries"):
        unpack_chunk(short, memory.length, memory.offset, "", {})


def test_the_earlier_per_channel_int8_format_reads_the_same(model, memories):
    memory = memories[1]
    tensors = pack_memory(memory, "float32")
    for name in ("k", "v"):  # per-channel scales over each head's entries, as the first release wrote them
        counts, flat = tensors["cnt"].reshape(-1).tolist(), tensors[name]
        heads = flat.split(counts)
        scales = [(h.abs().amax(0, keepdim=True) / 127).clamp_min(1e-8).to(torch.float16) for h in heads]
        tensors[name] = torch.cat([torch.round(h / s.float()).to(torch.int8) for h, s in zip(heads, scales)])
        tensors[f"{name}s"] = torch.stack(scales).reshape(*tensors["cnt"].shape, 1, -1)
    want = padded(tensors, memory)
    read = unpack_chunk(tensors, memory.length, memory.offset, "", {})
    assert makes_keys(model, read)
    assert_same_placed(model, read, want, exact=True)  # from its layout: decoded, then shifted as the padded keys are
    chunk = unpack_chunk(tensors, memory.length, memory.offset, "", {})
    assert_same_chunk(chunk, want)
    assert_same_placed(model, chunk, want)


def test_a_store_hands_out_laid_out_chunks_that_answer_as_the_padded_ones(tmp_path, model, memories):
    texts = [text_of_tokens(n, seed=n) for n in (23, 60, 41)]
    with MemoryStore.create(tmp_path / "s", model, bow_embedder) as store:
        assert store.memory_dtype == "int8"
        ids = store.add(texts, progress=False)
        read = store.memories(ids)
    generator = model.generator()
    for chunk, memory in zip(read, memories):
        assert id(chunk) in compose._LAYOUTS
        want = padded(pack_memory(memory, "int8"), chunk)
        assert_same_chunk(chunk, want)
        assert_same_placed(model, chunk, want)
    fresh = [padded(pack_memory(m, "int8"), c) for m, c in zip(memories, read)]
    unread = store_memories(tmp_path / "s", model)
    a = generator.generate("What is it?", unread, max_new_tokens=4)
    assert all(c.pending is not None for c in unread)  # answering made no padded K/V
    b = generator.generate("What is it?", fresh, max_new_tokens=4)
    assert a == b


def store_memories(path, model) -> list[MemoryChunk]:
    with MemoryStore.open(path, model, bow_embedder) as store:
        return store.memories(store.ids())


def test_a_shard_checksums_the_bytes_its_tensors_are_views_of(tmp_path):
    tensors = {
        "a.k": torch.randint(-127, 128, (7, 16), dtype=torch.int8),
        "a.b": torch.randn(7).to(torch.float16),
        "a.pos": torch.arange(7, dtype=torch.int16),
        "a.v": torch.randn(3, 5, dtype=torch.bfloat16),
    }
    write_shard(tmp_path / "s.safetensors", tensors)
    shard = ShardReader(tmp_path / "s.safetensors")
    for names in (["a.k", "a.v"], ["a.v", "a.b", "a.pos"], list(tensors)):
        assert shard.crc(names) == tensors_crc(shard.tensor(n) for n in names) == tensors_crc(tensors[n] for n in names)


def test_int8_keys_are_made_at_each_placing_into_keys_of_their_own(model, memories):
    """A read int8 chunk's layout holds no float keys: each placing decodes and rotates them in this thread's scratch
    and gathers its own copy, so placing another chunk (from any thread) leaves keys already placed as they were."""
    chunks = [unpack_chunk(pack_memory(m, "int8"), m.length, m.offset, "", {}) for m in memories]
    wants = [padded(pack_memory(m, "int8"), m) for m in memories]
    assert all(makes_keys(model, c) for c in chunks)
    first = place(chunks[0], 9, model.shifter, model.dtype, model.device)
    kept = [k.clone() for k in first.keys]
    for chunk, want in zip(chunks[1:], wants[1:]):
        assert_same_placed(model, chunk, want)
    assert all(same_bits(a, b) for a, b in zip(first.keys, kept))
    errors = []

    def place_often(chunk: MemoryChunk, want: MemoryChunk) -> None:
        try:
            for _ in range(10):
                assert_same_placed(model, chunk, want)
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=place_often, args=pair) for pair in zip(chunks, wants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
