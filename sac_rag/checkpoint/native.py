"""sac_rag's checkpoint: ``sac_config.json``, PEFT's ``adapter_config.json`` + ``adapter_model.safetensors``,
and ``sac_embeddings.safetensors`` (anchor and special embeddings); a model with a reader adapter adds
the subfolder ``reader/``, a PEFT adapter directory of its own (``PeftModel.from_pretrained`` loads it).
The base model is named, not copied."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sac_rag.checkpoint.parts import SACParts
from sac_rag.compression.lora import ADAPTER_NAME, READER_NAME
from sac_rag.io import atomic_write_dir

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
EMBEDDINGS = "sac_embeddings.safetensors"


def save_sac_weights(model: SACParts, directory: str | Path) -> None:
    def write(tmp: Path) -> None:
        model.config.save(tmp)
        # name the base by its portable id (PEFT records the local path it was loaded from)
        for adapter in model.peft.peft_config.values():
            adapter.base_model_name_or_path = model.config.base_model
        model.peft.save_pretrained(tmp)  # adapter_config.json + adapter_model.safetensors (+ reader/)
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


def load_sac_weights(model: SACParts, directory: str | Path) -> None:
    directory = Path(directory)
    embeddings = _read(directory / EMBEDDINGS)
    for name in ("role_tokens", "special_tokens"):
        if name not in embeddings:
            raise ValueError(f"{directory / EMBEDDINGS} lacks {name!r}")
        _copy_checked(getattr(model, name), embeddings[name], f"{directory / EMBEDDINGS}:{name}")
    adapter_path = directory / ADAPTER_WEIGHTS
    _load_adapter(model, _read(adapter_path), adapter_path, ADAPTER_NAME)
    if model.config.has_reader:
        reader_path = directory / READER_NAME / ADAPTER_WEIGHTS
        _load_adapter(model, _read(reader_path), reader_path, READER_NAME)


def _load_adapter(model: SACParts, weights: dict[str, torch.Tensor], path: Path, adapter: str) -> None:
    current = get_peft_model_state_dict(model.peft, adapter_name=adapter, save_embedding_layers=False)
    if set(weights) != set(current):
        missing, unknown = sorted(set(current) - set(weights)), sorted(set(weights) - set(current))
        raise ValueError(f"{path} does not match this model: missing {missing[:3]}, unknown {unknown[:3]}")
    for key, tensor in weights.items():
        if tuple(tensor.shape) != tuple(current[key].shape):
            raise ValueError(f"{path}:{key} has shape {tuple(tensor.shape)}, expected {tuple(current[key].shape)}")
    set_peft_model_state_dict(model.peft, weights, adapter_name=adapter)


def read_reader_adapter(directory: Path) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """The LoRA config and weights of a plain PEFT adapter directory (e.g. a Full-FT run's ``final/``)."""
    config_path = directory / ADAPTER_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: not a PEFT adapter directory")
    try:
        config = LoraConfig.from_pretrained(str(directory))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{config_path} is not a valid LoRA adapter config: {e}") from e
    return config, _read(directory / ADAPTER_WEIGHTS)


def load_reader_weights(model: SACParts, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Copy a PEFT adapter's weights (from :func:`read_reader_adapter`) into ``model``'s reader."""
    _load_adapter(model, weights, source / ADAPTER_WEIGHTS, READER_NAME)
