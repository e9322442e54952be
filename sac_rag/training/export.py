"""Export a trained SAC checkpoint compactly (e.g. into ``sac_rag/pretrained/``): float tensors cast to bf16.

``python -m sac_rag.training.export RUN/final sac_rag/pretrained/smollm2-135m-r5 [--card card.md]``
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sac_rag.compression.lora import READER_NAME
from sac_rag.config import CONFIG_NAME
from sac_rag.io import atomic_write_dir

WEIGHT_FILES = ("adapter_model.safetensors", "sac_embeddings.safetensors")
COPIED_FILES = (CONFIG_NAME, "adapter_config.json")
READER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # in the reader/ subfolder, if any


def export_checkpoint(
    source: str | Path, target: str | Path, dtype: torch.dtype = torch.bfloat16, card: str | None = None
) -> Path:
    """Copy the checkpoint ``source`` to ``target`` with its weights in ``dtype`` (``card`` becomes README.md)."""
    source, target = Path(source), Path(target)
    missing = [n for n in (*COPIED_FILES, *WEIGHT_FILES) if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} is not a complete SAC checkpoint: missing {missing}")

    reader = source / READER_NAME
    if reader.is_dir() and not all((reader / n).is_file() for n in READER_FILES):
        raise FileNotFoundError(f"{reader} is not a complete reader adapter: it needs {list(READER_FILES)}")

    def write(tmp: Path) -> None:
        for name in COPIED_FILES:
            shutil.copyfile(source / name, tmp / name)
        for name in WEIGHT_FILES:
            _cast(source / name, tmp / name, dtype)
        if reader.is_dir():
            (tmp / READER_NAME).mkdir()
            shutil.copyfile(reader / READER_FILES[0], tmp / READER_NAME / READER_FILES[0])
            _cast(reader / READER_FILES[1], tmp / READER_NAME / READER_FILES[1], dtype)
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")

    atomic_write_dir(target, write)
    return target


def _cast(source: Path, target: Path, dtype: torch.dtype) -> None:
    with safe_open(str(source), "pt") as f:
        metadata = f.metadata()
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(str(source)).items()}
    save_file(tensors, str(target), metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--card", help="a Markdown file copied as the target's README.md")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = p.parse_args(argv)
    card = Path(args.card).read_text(encoding="utf-8") if args.card else None
    export_checkpoint(args.source, args.target, torch.float32 if args.fp32 else torch.bfloat16, card)
    print(f"exported {args.source} -> {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
