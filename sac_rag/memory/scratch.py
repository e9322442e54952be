"""Per-thread CPU work buffers, reused from one call to the next.

A store read decodes every memory's entries into temporary float tensors before it gathers them into the layout a
chunk keeps. Made fresh each time, such temporaries are fresh pages from the allocator, and the kernel's page faults on
first touch can cost as much as the decoding (on SmolLM2-135M, about 900 of a read's 4,900 faults for five int8
memories). Reused, they are touched once per thread.
"""

from __future__ import annotations

import math
import threading

import torch

_LOCAL = threading.local()

#: The largest buffer a slot keeps between calls (a larger request gets a tensor of its own, not kept).
MAX_KEPT_BYTES = 32 << 20


def scratch(slot: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A contiguous CPU tensor of ``shape`` and ``dtype``: a view of this thread's buffer ``slot``, grown when too
    small (up to :data:`MAX_KEPT_BYTES`). Its values are whatever the last use left; it is valid until this thread asks
    for ``slot`` again, so nothing that outlives the call may keep it (copy out of it)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_KEPT_BYTES:
        return torch.empty(shape, dtype=dtype)
    try:
        buffers = _LOCAL.buffers
    except AttributeError:
        buffers = _LOCAL.buffers = {}
    held = buffers.get(slot)
    if held is None or held.numel() < nbytes:
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in and out of inference mode
            held = buffers[slot] = torch.empty(max(nbytes, 1), dtype=torch.uint8)
    return held[:nbytes].view(dtype).view(shape)
