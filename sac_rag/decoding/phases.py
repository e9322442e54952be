"""Where a question's time goes: CPU time of the calling thread per phase of a prefill."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext


class Phases:
    """Seconds of ``time.thread_time`` (the work this thread did, however loaded the machine) per named phase.

    Phases nest; a phase's time excludes the phases inside it. With one torch thread this is all the work of a
    forward on CPU; other threads' work (more torch threads, a GPU) is not counted.
    """

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._open: list[str] = []
        self._since = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._switch()
        self._open.append(name)
        try:
            yield
        finally:
            self._switch()
            self._open.pop()

    def _switch(self) -> None:
        now = time.thread_time()
        if self._open:
            self.seconds[self._open[-1]] += now - self._since
        self._since = now


def timed(phases: Phases | None, name: str) -> AbstractContextManager:
    """``phases.phase(name)``, or nothing when no one is timing."""
    return nullcontext() if phases is None else phases.phase(name)
