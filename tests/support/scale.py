"""What the scale-out tests share with the Ray workers they start: passages, a worker that fails on purpose, and
the cluster's settings (the workers import this module and ``sac_rag.testing``'s ``tiny_model``, their recipe)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sac_rag.scale import UnitWriter
from support import ROOT, TESTS
from support.store import numbered_text


def corpus(n: int) -> list[str]:
    """``n`` distinct short passages, a few of them repeated (shared texts are compressed once)."""
    texts = [numbered_text(i) for i in range(n)]
    return texts + texts[:3]


def ray_init_args() -> dict:
    """A small local cluster whose workers import this checkout's sac_rag and the tests' support package."""
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {"num_cpus": 2, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}


DIE, FAIL = "die-once.flag", "fail-once.flag"


class FlakyWriter(UnitWriter):
    """A worker that, right after writing a unit, is killed (``os._exit``) while ``DIE`` lies beside the
    store dir, or raises an ``OSError`` (a shared file system's hiccup) while ``FAIL`` does: once each."""

    def write_unit(self, name, ids, texts, metadata, token_ids=None):
        out = super().write_unit(name, ids, texts, metadata, token_ids)
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
