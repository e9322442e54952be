"""The ``sac-rag`` command line, run in this process."""

from __future__ import annotations

from sac_rag.cli.main import main


def sac_rag(*args: object) -> int:
    """``sac-rag ARGS``'s exit code (arguments may be paths or numbers)."""
    return main([str(a) for a in args])
