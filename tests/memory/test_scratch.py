"""Per-thread scratch buffers (a store read's temporaries) and rotating keys into one."""

from __future__ import annotations

import threading

import pytest
import torch

from sac_rag.memory import scratch as scratch_module
from sac_rag.memory.rope import RotaryShifter
from sac_rag.memory.scratch import scratch


def test_a_slot_is_reused_grown_and_kept_per_thread():
    a = scratch("test.a", (4, 8), torch.float32)
    a.fill_(3.0)
    b = scratch("test.a", (2, 8), torch.float32)  # smaller: the same memory, what the last use left
    assert b.data_ptr() == a.data_ptr() and bool((b == 3.0).all())
    assert scratch("test.b", (2, 8), torch.float32).data_ptr() != a.data_ptr()  # another slot
    c = scratch("test.a", (64, 64), torch.float32)  # larger: grown
    assert c.shape == (64, 64) and c.is_contiguous()
    assert scratch("test.a", (3,), torch.int64).dtype == torch.int64
    with torch.inference_mode():  # made outside inference mode: written in and out of it
        scratch("test.c", (5,), torch.float32).zero_()
    scratch("test.c", (5,), torch.float32).add_(1)
    big = scratch("test.a", (scratch_module.MAX_KEPT_BYTES // 4 + 1,), torch.float32)  # too large to keep: its own
    assert big.data_ptr() != scratch("test.a", (64, 64), torch.float32).data_ptr()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(scratch("test.a", (64, 64), torch.float32).data_ptr()))
    thread.start()
    thread.join()
    assert seen[0] != scratch("test.a", (64, 64), torch.float32).data_ptr()


def test_keys_rotated_into_a_buffer_are_the_keys_rotated():
    shifter = RotaryShifter(1.0 / 10000 ** (torch.arange(0, 16, 2).double() / 16))
    keys = torch.randn(2, 3, 7, 16)
    out = torch.full_like(keys, float("nan"))
    got = shifter.shift_fused(keys, 11, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert torch.equal(got, shifter.shift_fused(keys, 11))
    assert shifter.shift_fused(keys, 0, out=out) is keys  # no rotation: the keys themselves
    with pytest.raises(ValueError, match="rotating"):
        shifter.shift_fused(keys.bfloat16(), 3, out=out)
