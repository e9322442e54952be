"""Shared builders for the scale-out tests (no tests here): recipes Ray workers rebuild, a local cluster."""

from __future__ import annotations

import os
import time
from pathlib import Path

from test_store_support import bow_embedder, model

from sac_rag.scale import UnitWriter

TESTS = Path(__file__).parent


def tiny_model():
    """The tests' tiny SAC model: a module-level factory, so a Ray worker can build the same one."""
    return model()


def corpus(n: int) -> list[str]:
    """``n`` distinct short passages, a few of them repeated (shared texts are compressed once)."""
    texts = [f"passage {i} tells about topic {i % 7} and number {i * 13 % 101}." for i in range(n)]
    return texts + texts[:3]


def ray_init_args() -> dict:
    """A small local cluster whose workers can import the tests' modules (for the recipes above)."""
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {"num_cpus": 2, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}


FLAG = "die-once.flag"


class DiesOnceWriter(UnitWriter):
    """A worker killed (``os._exit``) right after writing a unit, while ``FLAG`` lies beside the store dir."""

    def write_unit(self, name, ids, texts, metadata):
        out = super().write_unit(name, ids, texts, metadata)
        try:
            os.unlink(self.staging.parent.parent / FLAG)
        except FileNotFoundError:
            return out
        time.sleep(0.1)
        os._exit(1)


__all__ = ["FLAG", "DiesOnceWriter", "bow_embedder", "corpus", "ray_init_args", "tiny_model"]
