"""The store's int8 codec: Hadamard rotation, one scale per head, and the earlier per-channel format."""

import pytest
import torch

from sac_rag.memory.quant import dequantize_int8, hadamard, quantize_int8
from sac_rag.memory.rope import RotaryShifter
from sac_rag.store.codec import decode_kv, encode_kv


@pytest.mark.parametrize("n", [64, 128, 80, 96, 6])
def test_hadamard_is_orthonormal_and_its_own_inverse(n):
    h = hadamard(n)
    torch.testing.assert_close(h @ h, torch.eye(n), atol=1e-6, rtol=0)
    assert torch.equal(h, h.T)


def _keys_with_outlier_channels(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 2, 29, 64, generator=gen)
    x[..., [3, 35]] *= 40  # RoPE'd keys: a few low-frequency channel pairs dominate
    return x


def test_rotation_makes_one_scale_per_head_work_with_outlier_channels():
    x = _keys_with_outlier_channels()
    q, scale = quantize_int8(x)
    assert q.dtype == torch.int8 and scale.shape == (4, 2, 1, 1) and scale.dtype == torch.float16
    rotated_error = (dequantize_int8(q, scale) - x).norm() / x.norm()
    plain_scale = x.abs().amax(dim=(2, 3), keepdim=True) / 127  # the same budget without the rotation
    plain_error = ((x / plain_scale).round() * plain_scale - x).norm() / x.norm()
    assert rotated_error < 0.01
    assert rotated_error < plain_error / 2


def test_int8_encoding_round_trip_and_size():
    keys, values = _keys_with_outlier_channels(1), _keys_with_outlier_channels(2)
    tensors = encode_kv(keys, values, "int8")
    k, v = decode_kv(tensors)
    torch.testing.assert_close(k, keys, atol=0.02 * keys.abs().max().item(), rtol=0)
    torch.testing.assert_close(v, values, atol=0.02 * values.abs().max().item(), rtol=0)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    assert nbytes == 2 * keys.numel() + 2 * 4 * 2 * 2  # int8 K/V, one float16 scale per (K/V, layer, head)


def test_earlier_per_channel_format_still_decodes():
    x = _keys_with_outlier_channels(3)
    scale = (x.abs().amax(dim=2, keepdim=True) / 127).to(torch.float16)  # as the first release wrote them
    q = torch.round(x / scale.float()).clamp(-127, 127).to(torch.int8)
    torch.testing.assert_close(dequantize_int8(q, scale), x, atol=0.01 * x.abs().max().item(), rtol=0)


def test_a_rotation_after_the_hadamard_is_one_product():
    """Decoding with ``rotation = shift(H)`` gives the decoded keys shifted: RoPE and the Hadamard are both linear."""
    shifter = RotaryShifter(1.0 / 10000 ** (torch.arange(0, 16, 2).double() / 16))
    x = torch.randn(2, 3, 7, 16) * 4
    q, scale = quantize_int8(x)
    rotation = shifter.shift(hadamard(16), 41)
    want = shifter.shift(dequantize_int8(q, scale), 41)
    torch.testing.assert_close(dequantize_int8(q, scale, rotation=rotation), want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(want, dequantize_int8(q, scale), atol=1e-3)  # the shift moved them
    with pytest.raises(ValueError, match="per-channel"):
        dequantize_int8(q, torch.ones(2, 3, 1, 16), rotation=rotation)
