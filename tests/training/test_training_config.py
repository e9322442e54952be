"""TrainConfig holds the compressor's SACConfig: old flat files load, flags set every compressor field,
resume compares them, an init checkpoint's config is not contradicted silently."""

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.training import config

from sac_rag.config import SACConfig
from sac_rag.training import TrainConfig
from sac_rag.training.config import CONFIG_NAME, fresh_compressor
from sac_rag.training.pipeline import build_task


def run_cli(argv: list[str], monkeypatch) -> tuple[int, list[TrainConfig]]:
    """``sac-rag train ARGV`` with training replaced by a recorder of the config it gets."""
    import sac_rag.training.pipeline as pipeline
    from sac_rag.cli.commands.train import register

    seen: list[TrainConfig] = []
    done = SimpleNamespace(state=SimpleNamespace(step=0, examples=0, elapsed_s=0.0), final_dir="final")
    monkeypatch.setattr(pipeline, "train", lambda cfg, **kw: seen.append(cfg) or done)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args), seen


def test_a_flat_train_config_from_before_sac_loads_and_resumes_the_same_run(tmp_path):
    cfg = config(tmp_path)
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "sac"}
    legacy.update(ratio=10, lora_rank=16, lora_alpha=32.0)  # how train_config.json files had them
    (tmp_path / CONFIG_NAME).write_text(json.dumps(legacy))
    loaded = TrainConfig.load(tmp_path)
    assert loaded.sac == SACConfig(ratio=10, lora_rank=16, lora_alpha=32.0)
    assert loaded.same_run(TrainConfig.from_dict(loaded.to_dict())) == []
    assert TrainConfig.from_dict({**loaded.to_dict(), "chunk_size": 64}).same_run(loaded) == ["sac.chunk_size"]
    assert TrainConfig.from_dict(json.loads(json.dumps(loaded.to_dict()))) == loaded  # the new file round-trips
    partial = TrainConfig.from_dict({**legacy, "sac": {"ratio": 3}})  # nested and flat, flat wins
    assert (partial.sac.ratio, partial.sac.lora_rank) == (10, 16)
    assert TrainConfig.from_dict({k: v for k, v in legacy.items() if k != "lora_rank"}).sac.lora_rank == 32


def test_run_fields_have_one_home():
    with pytest.raises(ValueError, match=r"TrainConfig.base_model"):
        TrainConfig(output_dir="x", train_files=["f"], sac=SACConfig(base_model="other"))
    with pytest.raises(ValueError, match=r"TrainConfig.reader"):
        TrainConfig(output_dir="x", train_files=["f"], sac=SACConfig(reader_rank=4))
    with pytest.raises(ValueError, match=r"TrainConfig.attention_sink"):
        TrainConfig.from_dict({"output_dir": "x", "train_files": ["f"], "sac": {"attention_sink": True}})
    with pytest.raises(ValueError, match="unknown SACConfig keys"):
        TrainConfig.from_dict({"output_dir": "x", "train_files": ["f"], "sac": {"ratios": 3}})


def test_cli_flags_set_every_compressor_field_and_old_ones_still_work(tmp_path, monkeypatch, capsys):
    train_file = config(tmp_path).train_files[0]
    out = tmp_path / "run"
    argv = ["-o", str(out), "--train-files", train_file, "--ratio", "10", "--lora-rank", "8", "--lora-alpha", "16"]
    argv += ["--chunk-size", "100", "--lora-targets", "q_proj", "k_proj", "v_proj"]
    code, (cfg,) = run_cli(argv, monkeypatch)
    assert code == 0
    expected = SACConfig(
        ratio=10, chunk_size=100, lora_rank=8, lora_alpha=16.0, lora_targets=("q_proj", "k_proj", "v_proj")
    )
    assert cfg.sac == expected
    _, (defaults,) = run_cli(["-o", str(tmp_path / "other"), "--train-files", train_file], monkeypatch)
    assert defaults.sac == fresh_compressor()
    cfg.save(out)  # as the run would have; the same command resumes it, another ratio is refused
    assert run_cli(argv, monkeypatch)[0] == 0
    assert run_cli(["-o", str(out), "--ratio", "5"], monkeypatch) == (2, [])
    assert "['sac.ratio'] differ from the saved run" in capsys.readouterr().out


def test_a_fresh_run_trains_the_compressor_it_asks_for_and_an_init_checkpoint_is_not_contradicted(tmp_path, ckpt):
    import torch

    ckpt = Path(ckpt)
    sac = SACConfig(ratio=4, chunk_size=64, lora_rank=4, lora_alpha=8.0, lora_targets=("q_proj", "k_proj"))
    cfg = config(tmp_path / "a", base_model=str(ckpt.parent / "base"), sac=sac)
    model = build_task(cfg, torch.device("cpu")).model
    assert (model.config.ratio, model.config.chunk_size, model.config.lora_targets) == (4, 64, ("q_proj", "k_proj"))
    assert any("k_proj.lora_A" in name for name in model.sac_parameters())
    init = config(tmp_path / "b", init_checkpoint=str(ckpt))
    assert build_task(init, torch.device("cpu")).model.config.lora_rank == 8  # the checkpoint's own
    same = config(tmp_path / "c", init_checkpoint=str(ckpt), sac=SACConfig(ratio=5, lora_rank=8, lora_alpha=16.0))
    assert build_task(same, torch.device("cpu")).model.config.lora_rank == 8
    with pytest.raises(ValueError, match=r"sets ratio=4.*has ratio=5"):
        build_task(config(tmp_path / "d", init_checkpoint=str(ckpt), sac=sac), torch.device("cpu"))
