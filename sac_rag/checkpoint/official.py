"""Import the official SAC release's adapter (docs/sac.md section 9) into a SACModel."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from sac_rag.checkpoint.parts import SACParts

OFFICIAL_LORA_SCALE = 2.0


def _official_lora_names(model: SACParts) -> dict[str, torch.nn.Module]:
    """Official key prefix (``model.model.layers.{i}.self_attn.q_proj``) -> our LoRA layer."""
    names = {}
    for name, module in model.peft.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            # PEFT: base_model.model.<name inside the CausalLM>; official: model.<name inside the CausalLM>
            inner = name.removeprefix("base_model.model.")
            names[f"model.{inner}"] = module
    return names


def expected_official_shapes(model: SACParts) -> dict[str, tuple[int, ...]]:
    hidden = model.base_model.config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {
        "role_tokens": (model.config.mem_size, hidden),
        "special_tokens": (2, hidden),
    }
    for prefix, module in _official_lora_names(model).items():
        a = module.lora_A["default"].weight  # PEFT: [rank, in]
        b = module.lora_B["default"].weight  # PEFT: [out, rank]
        shapes[f"{prefix}.lora_A"] = (a.shape[1], a.shape[0])
        shapes[f"{prefix}.lora_B"] = (b.shape[1], b.shape[0])
    return shapes


def load_official_adapter(model: SACParts, path: str | Path) -> None:
    """Read an official ``adapter.pt`` with ``torch.load(weights_only=True)`` and copy it in.

    Refuses, naming the file, anything but a flat dict of tensors with exactly the expected keys and shapes.
    """
    path = Path(path)
    if model.config.lora_scale != OFFICIAL_LORA_SCALE:
        raise ValueError(
            f"official adapters use LoRA scale 2; this model has lora_alpha/lora_rank = {model.config.lora_scale} "
            f"(set lora_alpha = 2 * lora_rank = {2 * model.config.lora_rank})"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"{path} is not an official SAC adapter (torch.load failed: {e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not an official SAC adapter: expected a flat dict of tensors")
    expected = expected_official_shapes(model)
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise ValueError(
            f"{path} does not fit this model: {len(missing)} missing keys {missing[:4]}, "
            f"{len(unknown)} unknown keys {unknown[:4]}"
        )
    wrong = [(k, tuple(state[k].shape), s) for k, s in expected.items() if tuple(state[k].shape) != s]
    if wrong:
        k, got, want = wrong[0]
        raise ValueError(f"{path}: {k} has shape {got}, this model expects {want} ({len(wrong)} mis-shaped keys)")
    with torch.no_grad():
        model.role_tokens.copy_(state["role_tokens"].to(model.role_tokens))
        model.special_tokens.copy_(state["special_tokens"].to(model.special_tokens))
        for prefix, module in _official_lora_names(model).items():
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            a.copy_(state[f"{prefix}.lora_A"].T.to(a))
            b.copy_(state[f"{prefix}.lora_B"].T.to(b))
