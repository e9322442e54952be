"""How a memory chunk's K/V are stored: bfloat16, float16, float32, or int8.

int8 rotates each head's vectors by a fixed Hadamard matrix, then quantises symmetrically with one
float16 scale per (layer, kv head) (:mod:`sac_rag.memory.quant`). That keeps the overhead at
2 x layers x kv heads scales per passage (360 bytes on SmolLM2-135M), so int8 memory is 1/(2r) of a
bf16 full KV cache. Per-channel scales, the usual remedy, would cost 22.5 KiB per passage there (6% of
the int8 memory). Memories written by the earlier per-channel format (scales
``[layers, kv heads, 1, head_dim]``) still decode.

A biased memory (compaction: each (layer, kv head) keeps its own number of entries) is stored ragged:
its real entries only, head after head, as ``[entries, head_dim]`` K/V (int8 scales still one per head),
``b`` their logit biases, ``pos`` their token positions and ``cnt`` the ``[layers, kv heads]`` entry
counts that lay them back out (padding gets a ``-inf`` bias). The bias is float16 (float32 in float32
stores): it is a log-weight of a few units whose error multiplies an entry's attention mass by
``exp(error)``; float16 keeps that within 0.2% (|beta| < 16), bfloat16 would allow 3%.

A biased memory read back (:func:`unpack_chunk`) is decoded entry by entry (int8: only its real entries are
dequantised, not the padding) and gathered straight into the layout its placing uses
(:func:`sac_rag.memory.compose.attach_layout`), so that a question only rotates its keys. The padded K/V (and
positions) its MemoryChunk exposes are made only if someone reads them (:class:`~sac_rag.memory.chunk.DeferredChunk`,
by :func:`unpack_memory`): placing never does.
"""

from __future__ import annotations

import math

import torch

from sac_rag.memory.chunk import DeferredChunk, MemoryChunk
from sac_rag.memory.compose import KeyMaker, attach_layout, layout_rows
from sac_rag.memory.geometry import BIAS_DTYPE
from sac_rag.memory.quant import dequantize_int8, hadamard, quantize_int8
from sac_rag.memory.rope import RotaryShifter
from sac_rag.memory.scratch import scratch

MEMORY_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
    "int8": torch.int8,
}
DEFAULT_MEMORY_DTYPE = "bfloat16"  # of a new store, unless its model's memories ask for another (memory_dtype_for)
SUFFIXES = ("k", "v", "ks", "vs", "pos", "b", "cnt")  # a memory's tensors in a shard, in CRC order


def dtype_name(dtype: torch.dtype | str) -> str:
    """The canonical name of a supported memory dtype ('bfloat16', 'float16', 'float32', 'int8')."""
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        name = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}.get(
            name, name
        )
    else:
        name = str(dtype).removeprefix("torch.")
    if name not in MEMORY_DTYPES:
        raise ValueError(f"memory dtype {dtype!r} is not supported: choose one of {', '.join(MEMORY_DTYPES)}")
    return name


def memory_dtype_for(model) -> str:
    """The dtype a new store holds ``model``'s memories in, unless told otherwise: int8 for int8 compact memories
    (their bytes budget counts int8 entries), else :data:`DEFAULT_MEMORY_DTYPE`."""
    config = model.config
    if config.memory_kind == "compact" and config.compact_dtype == "int8":
        return "int8"
    return DEFAULT_MEMORY_DTYPE


def encode_kv(keys: torch.Tensor, values: torch.Tensor, dtype: str) -> dict[str, torch.Tensor]:
    """The tensors to store for one memory's K/V, by suffix ('k', 'v', and 'ks', 'vs' for int8)."""
    if dtype == "int8":
        k, ks = quantize_int8(keys)
        v, vs = quantize_int8(values)
        return {"k": k, "v": v, "ks": ks, "vs": vs}
    target = MEMORY_DTYPES[dtype]
    return {"k": keys.to(target).contiguous(), "v": values.to(target).contiguous()}


def decode_kv(tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values back from :func:`encode_kv`'s tensors (views when not quantised)."""
    if "ks" in tensors:
        return dequantize_int8(tensors["k"], tensors["ks"]), dequantize_int8(tensors["v"], tensors["vs"])
    return tensors["k"], tensors["v"]


def pack_memory(chunk: MemoryChunk, dtype: str) -> dict[str, torch.Tensor]:
    """A chunk's tensors as stored, by suffix: K/V in ``dtype`` (with scales for int8) and positions; a
    biased chunk's real entries only, with their biases and per-head counts."""
    if chunk.bias is None:
        tensors = {**encode_kv(chunk.keys, chunk.values, dtype), "pos": chunk.positions.to(torch.int64)}
    else:
        real = torch.isfinite(chunk.bias)
        tensors = encode_kv(chunk.keys, chunk.values, dtype)
        tensors["k"], tensors["v"] = tensors["k"][real], tensors["v"][real]
        positions = chunk.positions[real]
        wide = positions.numel() and int(positions.max()) > torch.iinfo(torch.int16).max
        tensors["pos"] = positions.to(torch.int32 if wide else torch.int16)
        tensors["b"] = chunk.bias[real].to(torch.float32 if dtype == "float32" else BIAS_DTYPE)
        tensors["cnt"] = real.sum(-1).to(torch.int32)
    return {s: tensors[s].cpu().contiguous() for s in SUFFIXES if s in tensors}


def unpack_memory(
    tensors: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keys, values, positions and bias (None for an unbiased memory) from :func:`pack_memory`'s tensors."""
    if "cnt" not in tensors:
        keys, values = decode_kv(tensors)
        return keys, values, tensors["pos"], None
    counts = _counts(tensors)
    width = int(counts.max())
    real = torch.arange(width)[None, None, :] < counts[..., None]  # [layers, heads, width]

    def spread(flat: torch.Tensor, fill: float) -> torch.Tensor:
        out = torch.full((*real.shape, *flat.shape[1:]), fill, dtype=flat.dtype)
        out[real] = flat
        return out

    padded = {name: spread(tensors[name], 0) for name in ("k", "v")}
    padded.update({name: tensors[name] for name in ("ks", "vs") if name in tensors})
    keys, values = decode_kv(padded)
    bias = spread(tensors["b"].float(), -math.inf)
    return keys, values, spread(tensors["pos"].long(), -1), bias


def _counts(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    counts = tensors["cnt"].long()
    if counts.ndim != 2 or int(counts.sum()) != tensors["b"].shape[0] or bool((counts < 0).any()):
        raise ValueError(f"entry counts {tuple(counts.shape)} do not match {tensors['b'].shape[0]} stored entries")
    return counts


def _decode_entries(
    q: torch.Tensor,
    scale: torch.Tensor | None,
    counts: torch.Tensor,
    out: torch.Tensor,
    rotation: torch.Tensor | None = None,
) -> None:
    """Stored entries ``q [entries, head_dim]`` decoded into ``out`` as :func:`decode_kv` decodes them padded (int8:
    each entry scaled by its head's scale, then rotated back; by ``rotation`` instead of the Hadamard when given, see
    :func:`~sac_rag.memory.quant.dequantize_int8`), without the padding."""
    if scale is None:
        out.copy_(q)
        return
    per_head = scale.float().reshape(counts.numel(), -1)  # float before it is repeated per entry
    per_entry = per_head.repeat_interleave(counts.view(-1), dim=0, output_size=q.shape[0])
    work = scratch("codec.scaled", tuple(q.shape), torch.float32)
    dequantize_int8(q, per_entry, out=out, work=work, rotation=rotation)


def _decoded(
    q: torch.Tensor, scale: torch.Tensor | None, counts: torch.Tensor, rotation: torch.Tensor | None = None
) -> torch.Tensor:
    """Stored entries ``q [entries, head_dim]`` decoded (:func:`_decode_entries`), then a zero row (what padding
    gathers): a view of this thread's scratch, valid until the next call (gather out of it)."""
    dtype = q.dtype if scale is None else torch.float32
    decoded = scratch("codec.decoded", (q.shape[0] + 1, q.shape[1]), dtype)
    _decode_entries(q, scale, counts, decoded[:-1], rotation)
    decoded[-1].zero_()
    return decoded


def _key_maker(q: torch.Tensor, scale: torch.Tensor, counts: torch.Tensor, kept: torch.Tensor) -> KeyMaker:
    """What makes a chunk's int8 keys, rotated, in its layout (``kept``: the rows of :func:`_decoded` it gathers):
    decoded entry by entry in scratch, then gathered, so that a read never holds them as float and a placing writes
    only the keys it places. The inverse Hadamard and the RoPE shift are one ``[d, d]`` product (both are linear in
    a row: ``shift(x @ H) = x @ shift(H)``), so the keys equal rotating the decoded ones up to float rounding (about
    1e-6 of their size), not bit for bit; at ``delta`` 0 they are the decoded keys exactly. Padding gathers the zero
    row. Keys of the earlier per-channel format (not Hadamard-rotated) are decoded, then shifted."""

    def make(shifter: RotaryShifter, delta: int) -> torch.Tensor:
        rotation = shifter.shift(hadamard(q.shape[1]), delta)
        return _decoded(q, scale, counts, rotation).index_select(0, kept)

    def make_per_channel(shifter: RotaryShifter, delta: int) -> torch.Tensor:  # the first release's unrotated format
        decoded = _decoded(q, scale, counts)
        rotated = shifter.shift_fused(decoded, delta, out=scratch("codec.rotated", tuple(decoded.shape), torch.float32))
        return rotated.index_select(0, kept)

    return make if scale.shape[-1] == 1 else make_per_channel


def unpack_chunk(
    tensors: dict[str, torch.Tensor], length: int, offset: int, fingerprint: str, meta: dict
) -> MemoryChunk:
    """The :class:`MemoryChunk` of :func:`pack_memory`'s tensors (those :func:`unpack_memory` gives); a biased one
    decoded entry by entry (int8: the padding is not dequantised) into its placing layout
    (:func:`~sac_rag.memory.compose.attach_layout`), its padded K/V and positions made from ``tensors`` only when
    read (a :class:`~sac_rag.memory.chunk.DeferredChunk`)."""
    if "cnt" not in tensors:
        keys, values, positions, _ = unpack_memory(tensors)
        return MemoryChunk(keys, values, positions, length, offset, fingerprint, meta)
    counts = _counts(tensors)
    entries = tensors["b"].shape[0]
    if any(tensors[n].shape[0] != entries for n in ("k", "v", "pos")):
        shapes = [tuple(tensors[n].shape) for n in ("k", "v", "pos")]
        raise ValueError(f"{entries} stored entries, but K/V/positions shaped {shapes}")
    bias = tensors["b"].float()
    if counts.shape[1] == 0 or not bool(torch.isfinite(bias).all()):  # entries that lay out otherwise: no layout
        keys, values, positions, bias = unpack_memory(tensors)
        return MemoryChunk(keys, values, positions, length, offset, fingerprint, meta, bias)
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in and out of inference mode
        widths = counts.amax(1)  # per layer, the columns some head uses: each head's entries come first
        shape = (*counts.shape, int(widths.max()))
        real = (torch.arange(shape[2])[None, None, :] < counts[..., None]).reshape(-1)
        rows = torch.where(real, real.cumsum(0) - 1, entries).view(shape)  # each padded row's entry; padding: the fill
        kept = layout_rows(rows, widths)  # the rows its placing layout gathers
        k, v, k_scale, v_scale = (tensors.get(n) for n in ("k", "v", "ks", "vs"))
        dtype = k.dtype if k_scale is None else torch.float32
        # int8 keys are decoded and rotated only when placed (never held as float); the rest gathered now
        if k_scale is not None:
            keys = _key_maker(k, k_scale, counts, kept)
        else:
            keys = _decoded(k, None, counts).index_select(0, kept)
        laid = [keys, _decoded(v, v_scale, counts).index_select(0, kept)]
        bias = torch.cat([bias, torch.full((1,), -math.inf)])

        def padded() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            with torch.inference_mode(False), torch.no_grad():  # as if made now: plain tensors
                return unpack_memory(tensors)[:3]

        dims = (*shape, k.shape[1])
        padded_bias = bias.index_select(0, rows.view(-1)).view(shape)
        chunk = DeferredChunk.later(padded, dims, dtype, length, offset, fingerprint, meta, padded_bias)
        attach_layout(chunk, widths.tolist(), *laid, bias.index_select(0, kept))
    return chunk
