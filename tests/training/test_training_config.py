"""TrainConfig holds the model's SACConfig, the one home of its settings (base model, sink and reader shape
included): old flat files load, flags set every SACConfig field, resume compares them, an init checkpoint's
config is not contradicted silently."""

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.training import config

from sac_rag.config import SACConfig
from sac_rag.training import TrainConfig
from sac_rag.training.config import CONFIG_NAME, fresh_compressor, nest_sac_keys
from sac_rag.training.run import build_task


def run_cli(argv: list[str], monkeypatch) -> tuple[int, list[TrainConfig]]:
    """``sac-rag train ARGV`` with training replaced by a recorder of the config it gets."""
    import sac_rag.training.run as training_run
    from sac_rag.cli.commands.train import register

    seen: list[TrainConfig] = []
    done = SimpleNamespace(state=SimpleNamespace(step=0, examples=0, elapsed_s=0.0), final_dir="final")
    monkeypatch.setattr(training_run, "train", lambda cfg, **kw: seen.append(cfg) or done)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args), seen


def test_a_flat_train_config_from_before_sac_loads_and_resumes_the_same_run(tmp_path):
    cfg = config(tmp_path)
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "sac"}
    legacy.update(ratio=10, lora_rank=16, lora_alpha=32.0)  # how train_config.json files had them
    legacy.update(base_model=None, attention_sink=None, reader=None)  # and these, before they moved into sac
    (tmp_path / CONFIG_NAME).write_text(json.dumps(legacy))
    loaded = TrainConfig.load(tmp_path)
    assert loaded.sac == SACConfig(ratio=10, lora_rank=16, lora_alpha=32.0)
    assert loaded.same_run(TrainConfig.from_dict(loaded.to_dict())) == []
    assert replace(loaded, sac=replace(loaded.sac, chunk_size=64)).same_run(loaded) == ["sac.chunk_size"]
    assert TrainConfig.from_dict(json.loads(json.dumps(loaded.to_dict()))) == loaded  # the new file round-trips
    both = TrainConfig.from_dict({**legacy, "sac": {"ratio": 10, "chunk_size": 64}})  # nested and flat, agreeing
    assert (both.sac.ratio, both.sac.chunk_size, both.sac.lora_rank) == (10, 64, 16)
    with pytest.raises(ValueError, match=r"ratio is set twice: 10 at the top level .* and 3 in sac"):
        TrainConfig.from_dict({**legacy, "sac": {"ratio": 3}})
    assert TrainConfig.from_dict({k: v for k, v in legacy.items() if k != "lora_rank"}).sac.lora_rank == 32


def test_the_model_settings_live_in_sac_only():
    assert not {f.name for f in fields(TrainConfig)} & {f.name for f in fields(SACConfig)}
    old = {"output_dir": "x", "train_files": ["f"], "base_model": "other", "attention_sink": True}
    cfg = TrainConfig.from_dict(old)  # a file from before base_model and attention_sink moved into sac
    assert (cfg.sac.base_model, cfg.sac.attention_sink) == ("other", True)
    assert "base_model" not in cfg.to_dict() and cfg.to_dict()["sac"]["attention_sink"] is True
    assert TrainConfig.from_dict({**old, "sac": {"base_model": "other"}}).sac.base_model == "other"  # no conflict
    assert TrainConfig.from_dict({**old, "base_model": None, "sac": {"base_model": "b"}}).sac.base_model == "b"
    with pytest.raises(ValueError, match=r"base_model is set twice: 'other' at the top level"):
        TrainConfig.from_dict({**old, "sac": {"base_model": "b"}})
    # the last layout before the move: sac nested, holding these at their defaults, the run's values beside it
    before = {**TrainConfig(output_dir="x", train_files=["f"]).to_dict(), "base_model": "b", "attention_sink": True}
    assert before["sac"]["base_model"] is None and before["sac"]["attention_sink"] is False
    cfg = TrainConfig.from_dict(before)
    assert (cfg.sac.base_model, cfg.sac.attention_sink, cfg.sac.lora_rank) == ("b", True, 32)
    assert cfg.same_run(TrainConfig.from_dict(cfg.to_dict())) == []
    assert nest_sac_keys({"lora_targets": ("q_proj",), "sac": {"lora_targets": ["q_proj"]}}) == {
        "sac": {"lora_targets": ("q_proj",)}
    }
    with pytest.raises(TypeError, match="base_model"):
        TrainConfig(output_dir="x", train_files=["f"], base_model="other")  # the field is gone
    with pytest.raises(ValueError, match="leave sac.reader_rank at 0"):
        TrainConfig(output_dir="x", train_files=["f"], reader="adapter", sac=SACConfig(reader_rank=4))
    with pytest.raises(ValueError, match="apply to task 'sac' only"):
        TrainConfig(output_dir="x", train_files=["f"], task="fullft", sac=SACConfig(attention_sink=True))
    with pytest.raises(ValueError, match="apply to task 'sac' only"):
        TrainConfig(output_dir="x", train_files=["f"], task="fullft", sac=SACConfig(reader_rank=4))
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


def test_cli_flags_of_the_base_model_sink_and_reader_set_sac_and_old_runs_resume(tmp_path, monkeypatch, capsys):
    train_file = config(tmp_path).train_files[0]
    out = tmp_path / "run"
    argv = ["-o", str(out), "--train-files", train_file, "--base-model", "my-base", "--attention-sink", "true"]
    code, (cfg,) = run_cli([*argv, "--reader", "adapter"], monkeypatch)
    assert code == 0 and (cfg.sac.base_model, cfg.sac.attention_sink, cfg.reader) == ("my-base", True, "adapter")
    # a run saved before base_model and attention_sink moved into sac resumes as the same run
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "sac"}
    legacy.update(base_model="my-base", attention_sink=True, ratio=5, lora_rank=32, lora_alpha=64.0)
    out.mkdir()
    (out / CONFIG_NAME).write_text(json.dumps(legacy))
    assert run_cli(["-o", str(out)], monkeypatch)[1] == [cfg]
    assert run_cli(["-o", str(out), "--base-model", "other"], monkeypatch) == (2, [])
    assert "['sac.base_model'] differ from the saved run" in capsys.readouterr().out
    # an older --config file, its compressor fields at the top level: flags still override them
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**legacy, "output_dir": "elsewhere"}))
    _, (again,) = run_cli(["-o", str(tmp_path / "b"), "--config", str(old), "--ratio", "7"], monkeypatch)
    assert (again.sac.ratio, again.sac.base_model, again.sac.attention_sink) == (7, "my-base", True)
    fresh = ["--reader-rank", "4", "--reader-alpha", "8", "--reader-targets", "q_proj"]
    _, (reader,) = run_cli(["-o", str(tmp_path / "c"), "--train-files", train_file, *fresh], monkeypatch)
    assert (reader.sac.reader_rank, reader.sac.reader_alpha, reader.sac.reader_targets) == (4, 8.0, ("q_proj",))
    # a run switches an init checkpoint's sink on, never off: an explicit false is refused, not ignored
    sink = tmp_path / "sink"
    sink.mkdir()
    SACConfig(attention_sink=True).save(sink)
    init = ["-o", str(tmp_path / "d"), "--train-files", train_file, "--init-checkpoint", str(sink)]
    assert run_cli([*init, "--attention-sink", "false"], monkeypatch) == (2, [])
    assert "cannot switch off the attention sink" in capsys.readouterr().out
    assert run_cli([*init, "--attention-sink", "true"], monkeypatch)[0] == 0


def test_a_fresh_run_trains_the_compressor_it_asks_for_and_an_init_checkpoint_is_not_contradicted(tmp_path, ckpt):
    import torch

    ckpt = Path(ckpt)
    base = str(ckpt.parent / "base")
    sac = SACConfig(ratio=4, chunk_size=64, lora_rank=4, lora_alpha=8.0, lora_targets=("q_proj", "k_proj"))
    cfg = config(tmp_path / "a", sac=replace(sac, base_model=base))
    model = build_task(cfg, torch.device("cpu")).model
    assert (model.config.ratio, model.config.chunk_size, model.config.lora_targets) == (4, 64, ("q_proj", "k_proj"))
    assert any("k_proj.lora_A" in name for name in model.sac_parameters())
    assert model.config.base_model == base and not model.config.attention_sink
    init = config(tmp_path / "b", init_checkpoint=str(ckpt))
    assert build_task(init, torch.device("cpu")).model.config.lora_rank == 8  # the checkpoint's own
    same = config(tmp_path / "c", init_checkpoint=str(ckpt), sac=SACConfig(ratio=5, lora_rank=8, lora_alpha=16.0))
    assert build_task(same, torch.device("cpu")).model.config.lora_rank == 8
    with pytest.raises(ValueError, match=r"sets ratio=4.*has ratio=5"):
        build_task(config(tmp_path / "d", init_checkpoint=str(ckpt), sac=sac), torch.device("cpu"))


def test_sac_changes_an_init_checkpoints_base_name_and_sink_and_gives_a_fresh_run_a_reader(tmp_path, ckpt):
    import torch

    ckpt = Path(ckpt)
    base = str(ckpt.parent / "base")
    cpu = torch.device("cpu")
    plain = build_task(config(tmp_path / "a", init_checkpoint=str(ckpt)), cpu).model
    assert not plain.config.attention_sink and plain.config.base_model == base  # left at default: the checkpoint's
    moved = tmp_path / "base-copy"
    moved.symlink_to(base, target_is_directory=True)
    changed = replace(fresh_compressor(), base_model=str(moved), attention_sink=True)
    model = build_task(config(tmp_path / "b", init_checkpoint=str(ckpt), sac=changed), cpu).model
    assert model.config.attention_sink and model.config.base_model == str(moved)
    assert model.config.lora_rank == 8  # the rest is the checkpoint's
    with_reader = replace(fresh_compressor(), base_model=base, lora_rank=4, reader_rank=4, reader_alpha=8.0)
    t = build_task(config(tmp_path / "c", sac=with_reader, reader_lr=1e-3), cpu)
    assert t.model.config.reader_rank == 4 and t.model.reader_parameters()
    assert set(t.model.reader_parameters()) <= set(t.parameters())  # a fresh reader, trained jointly
