"""Re-positioning cached keys: RoPE rotations compose, R(p + d) = R(d) R(p)."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

# RoPE variants whose frequencies do not depend on the position or the sequence length.
_POSITION_FREE_ROPE = {"default", "linear", "llama3", "yarn", "longrope_static"}


def _rope_type(config) -> str:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else "default"


def _find_inv_freq(model: PreTrainedModel) -> torch.Tensor:
    for module in model.modules():
        inv_freq = getattr(module, "original_inv_freq", None)
        if inv_freq is None:
            inv_freq = getattr(module, "inv_freq", None)
        if isinstance(inv_freq, torch.Tensor) and type(module).__name__.endswith("RotaryEmbedding"):
            return inv_freq.detach().float().cpu()
    raise ValueError(f"{type(model).__name__} has no rotary embedding: SAC needs a RoPE decoder")


class RotaryShifter:
    """Rotates keys that were RoPE-encoded at positions p to positions p + delta.

    Uses the model's own inverse frequencies (rope scaling included) and the half-split layout of
    transformers' ``rotate_half``. Scaling whose frequencies depend on the sequence length
    (``dynamic``) cannot be composed and is refused.
    """

    def __init__(self, inv_freq: torch.Tensor) -> None:
        self.inv_freq = inv_freq.double()

    @classmethod
    def from_model(cls, model: PreTrainedModel) -> RotaryShifter:
        rope_type = _rope_type(model.config)
        if rope_type not in _POSITION_FREE_ROPE:
            raise ValueError(
                f"rope type {rope_type!r} depends on the sequence length: stored keys cannot be re-positioned "
                "by rotation; re-encode the passages instead"
            )
        return cls(_find_inv_freq(model))

    def _cos_sin(self, delta: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        angles = float(delta) * self.inv_freq.to(device)
        return torch.cat([angles.cos(), angles.cos()]).float(), angles.sin().float()

    def shift(
        self, keys: torch.Tensor, delta: int, *, fused: bool = False, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Keys ``[..., n, head_dim]`` rotated by ``delta`` positions (computed in float32 or better). ``fused``: with
        fused multiply-adds, fewer passes over the keys, equal up to float rounding (where the CPU fuses them, a
        product is not rounded before its addition), so not bit-identical to the plain rotation. ``out``: where float32
        ``keys`` are rotated to (not ``keys`` themselves); with ``delta`` 0, ``keys`` come back as they are."""
        if delta == 0:
            return keys
        cos, sin = self._cos_sin(delta, keys.device)
        k = keys.float()
        half = k.shape[-1] // 2
        if out is not None and (k is not keys or out.shape != k.shape or out.dtype != k.dtype):
            raise ValueError(f"rotating {keys.dtype} keys {tuple(keys.shape)} into {out.dtype} {tuple(out.shape)}")
        # k * cos + rotate_half(k) * sin, rounded the same way, with one full-size temporary instead of four
        out = torch.mul(k, cos, out=out)
        if fused:
            out[..., :half].addcmul_(k[..., half:], sin, value=-1)
            out[..., half:].addcmul_(k[..., :half], sin)
        else:
            out[..., :half] -= k[..., half:] * sin
            out[..., half:] += k[..., :half] * sin
        return out.to(keys.dtype)

    def shift_fused(self, keys: torch.Tensor, delta: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`shift` with ``fused=True`` (what compact memories are placed with)."""
        return self.shift(keys, delta, fused=True, out=out)
