"""sac_rag's checkpoint: ``sac_config.json``, PEFT's ``adapter_config.json`` + ``adapter_model.safetensors``,
and ``sac_embeddings.safetensors`` (anchor and special embeddings). The base model is named, not copied."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sac_rag.compression.lora import ADAPTER_NAME
from sac_rag.io import atomic_write_dir

if TYPE_CHECKING:
    from sac_rag.model import SACModel

ADAPTER_WEIGHTS = "adapter_model.safetensors"
EMBEDDINGS = "sac_embeddings.safetensors"


def save_sac_weights(model: SACModel, directory: str | Path) -> None:
    def write(tmp: Path) -> None:
        model.config.save(tmp)
        # name the base by its portable id (PEFT records the local path it was loaded from)
        model.peft.peft_config[ADAPTER_NAME].base_model_name_or_path = model.config.base_model
        model.peft.save_pretrained(tmp)  # adapter_config.json + adapter_model.safetensors
        save_file(
            {
                "role_tokens": model.role_tokens.detach().cpu().contiguous(),
                "special_tokens": model.special_tokens.detach().cpu().contiguous(),
            },
            str(tmp / EMBEDDINGS),
            metadata={"format": "sac_rag", "fingerprint": model.fingerprint},
        )

    atomic_write_dir(directory, write)


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the checkpoint")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from e


def _copy_checked(target: torch.nn.Parameter, source: torch.Tensor, what: str) -> None:
    if tuple(source.shape) != tuple(target.shape):
        raise ValueError(f"{what} has shape {tuple(source.shape)}, this model expects {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(source.to(device=target.device, dtype=target.dtype))


def load_sac_weights(model: SACModel, directory: str | Path) -> None:
    directory = Path(directory)
    embeddings = _read(directory / EMBEDDINGS)
    for name in ("role_tokens", "special_tokens"):
        if name not in embeddings:
            raise ValueError(f"{directory / EMBEDDINGS} lacks {name!r}")
        _copy_checked(getattr(model, name), embeddings[name], f"{directory / EMBEDDINGS}:{name}")
    adapter_path = directory / ADAPTER_WEIGHTS
    adapter = _read(adapter_path)
    expected = set(get_peft_model_state_dict(model.peft))
    if set(adapter) != expected:
        missing, unknown = sorted(expected - set(adapter)), sorted(set(adapter) - expected)
        raise ValueError(f"{adapter_path} does not match this model: missing {missing[:3]}, unknown {unknown[:3]}")
    current = get_peft_model_state_dict(model.peft)
    for key, tensor in adapter.items():
        if tuple(tensor.shape) != tuple(current[key].shape):
            raise ValueError(
                f"{adapter_path}:{key} has shape {tuple(tensor.shape)}, expected {tuple(current[key].shape)}"
            )
    set_peft_model_state_dict(model.peft, adapter)
