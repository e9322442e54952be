"""The library's tests: offline, slow and fuzz runs opt-in, and the fixtures tests in several folders share.

Helpers that are not fixtures live in ``tests/support/``; tiny models in ``sac_rag.testing``. Nothing is imported
here before the environment is set: the Hugging Face libraries read it when first imported.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if config.getoption("-m"):
        return
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="slow: run with -m slow (real default model)"))
        elif "fuzz" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="more generated inputs: run with -m fuzz"))


@pytest.fixture(scope="module")
def sac():
    """The tiny SAC model (ratio 5, random LoRA) of one test module: its stores are made and read with it."""
    from sac_rag.testing import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> str:
    """A saved tiny SAC checkpoint (its base, a saved tiny Llama, beside it in ``../base``) for ``--model``; read
    only, shared by every test that loads one."""
    from support.store import tiny_checkpoint

    return str(tiny_checkpoint(tmp_path_factory.mktemp("ckpt")))
