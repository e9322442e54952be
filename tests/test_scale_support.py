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


DIE, FAIL = "die-once.flag", "fail-once.flag"


class FlakyWriter(UnitWriter):
    """A worker that, right after writing a unit, is killed (``os._exit``) while ``DIE`` lies beside the
    store dir, or raises an ``OSError`` (a shared file system's hiccup) while ``FAIL`` does: once each."""

    def write_unit(self, name, ids, texts, metadata):
        out = super().write_unit(name, ids, texts, metadata)
        beside = self.staging.parent.parent
        if _take(beside / DIE):
            time.sleep(0.1)
            os._exit(1)
        if _take(beside / FAIL):
            raise OSError("simulated I/O error")
        return out


def _take(flag: Path) -> bool:
    """Remove ``flag``; True if this call removed it (so one worker only acts on it)."""
    try:
        flag.unlink()
    except FileNotFoundError:
        return False
    return True


__all__ = ["DIE", "FAIL", "FlakyWriter", "bow_embedder", "corpus", "ray_init_args", "tiny_model"]
