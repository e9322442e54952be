"""What the library's tests share besides fixtures (those are in ``tests/conftest.py``; tiny models and what the
integration packages' tests share are in ``sac_rag.testing``).

``tests/`` is on ``sys.path`` (pyproject's pytest ``pythonpath``), so a test imports ``support.<module>``:
``store`` (passages, embedder, a saved checkpoint), ``cli`` (the command line in-process), ``training`` (a toy
MRQA file and run config), ``scale`` (Ray workers' recipes), ``models`` (reader weights, token counts) and the
two independent references, ``reference_sac`` (docs/sac.md, literally) and ``reference_biased`` (compact
memories decoded plainly).
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent  # the repository


class Hang(AssertionError):
    """Raised by :func:`deadline` when the code inside runs past its limit."""


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM: it interrupts a blocking
    ``open`` of a FIFO or a ``flock`` wait too; main thread only)."""

    def expired(signum, frame):
        raise Hang(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class SkewedClock:
    """``time.perf_counter`` (patched with ``monkeypatch``) running ahead by the seconds that functions made
    :meth:`slower` are given, without waiting them: what a benchmark times under one label, made slower by far
    more than the machine's noise, shows which way its ratios point."""

    def __init__(self, monkeypatch) -> None:
        self.ahead = 0.0
        real = time.perf_counter
        monkeypatch.setattr(time, "perf_counter", lambda: real() + self.ahead)

    def slower(self, fn: Callable, seconds: float) -> Callable:
        """``fn``, taking ``seconds`` longer each call by this clock."""

        @functools.wraps(fn)
        def slowed(*args, **kwargs):
            self.ahead += seconds
            return fn(*args, **kwargs)

        return slowed
