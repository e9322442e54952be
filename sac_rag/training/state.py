"""Checkpoint state without pickle: optimizer tensors and RNG in safetensors, the rest in JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
MODEL_DIR = "model"


@dataclass
class TrainerState:
    """Where a run stands: the next step to run, and the elapsed training time."""

    step: int = 0
    elapsed_s: float = 0.0
    examples: int = 0
    best_eval_loss: float | None = None
    history: list[dict] = field(default_factory=list)  # eval records, for the report

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TrainerState:
        return cls(**json.loads((directory / STATE_FILE).read_text(encoding="utf-8")))


def save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Write the optimizer's tensors (``state.<param>.<name>``) to safetensors, its groups and scalars to JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(directory / OPTIMIZER_FILE))
    meta = {"param_groups": sd["param_groups"], "scalars": scalars}
    (directory / "optimizer.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Restore what :func:`save_optimizer` wrote (tensors moved to the parameters' device)."""
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    meta = json.loads((directory / "optimizer.json").read_text(encoding="utf-8"))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = optimizer.param_groups
    if len(meta["param_groups"]) != len(groups) or any(
        len(a["params"]) != len(b["params"]) for a, b in zip(meta["param_groups"], groups)
    ):
        raise ValueError(f"{directory}: optimizer state does not match this run's parameters")
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
