"""The compressor shipped in the package: complete, small, and (slow) answering from its own memories."""

import json

import pytest
from safetensors import safe_open

from sac_rag import SACConfig
from sac_rag.pretrained import default_checkpoint

CKPT = default_checkpoint()
pytestmark = pytest.mark.skipif(CKPT is None, reason="this build ships no default compressor")


def test_shipped_checkpoint_is_complete_and_small():
    config = SACConfig.load(CKPT)
    assert (config.ratio, config.chunk_size, config.lora_targets) == (5, 510, ("q_proj", "v_proj"))
    assert json.loads((CKPT / "adapter_config.json").read_text())["r"] == config.lora_rank
    total = sum(p.stat().st_size for p in CKPT.iterdir())
    assert total < 8 * 2**20, f"the shipped compressor takes {total / 2**20:.1f} MiB"
    with safe_open(str(CKPT / "sac_embeddings.safetensors"), "pt") as f:
        assert f.get_slice("role_tokens").get_shape()[0] == config.mem_size
        assert f.get_slice("special_tokens").get_shape()[0] == 2
    with safe_open(str(CKPT / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert len(keys) == 4 * 30  # A and B of q_proj and v_proj in each of SmolLM2-135M's 30 layers


@pytest.mark.slow
def test_default_model_answers_a_squad_question_from_its_memory():
    from sac_rag import SACModel

    model = SACModel.default()
    context = (
        "Super Bowl 50 was an American football game to determine the champion of the National Football League "
        "(NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos defeated the "
        "National Football Conference (NFC) champion Carolina Panthers 24-10 to earn their third Super Bowl title."
    )
    answer = model.generate("Who won Super Bowl 50?", memories=model.compress([context]), max_new_tokens=12)
    assert answer.strip() and len(answer) < 80  # a short, answer-shaped reply (its accuracy: docs/training.md)
