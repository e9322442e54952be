"""Extra evaluation methods provided by installed packages.

A package adds methods to ``sac-rag eval`` by declaring an entry point in the group
``sac_rag.eval_methods``; its name is the method's name on the command line, its object a factory
``factory(model: SACModel) -> Method | Sequence[Method]`` called with the run's base SAC model::

    [project.entry-points."sac_rag.eval_methods"]
    my_method = "my_package.eval:make_methods"

Installed methods run by default alongside the built-in ones (``--methods`` selects among all).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from sac_rag.eval.methods import ALL_METHODS, Method
from sac_rag.model import SACModel

ENTRY_POINT_GROUP = "sac_rag.eval_methods"


def installed_methods() -> dict[str, EntryPoint]:
    """Entry points of the installed extra methods, by name (a built-in name cannot be taken)."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    clash = sorted(set(found) & set(ALL_METHODS))
    if clash:
        owners = ", ".join(f"{name} ({found[name].value})" for name in clash)
        raise ValueError(f"installed eval method(s) {owners} reuse a built-in method name: rename the entry point")
    return found


def load_installed(name: str, model: SACModel, available: dict[str, EntryPoint] | None = None) -> list[Method]:
    """Build the installed method ``name`` on ``model``; errors name the entry point that failed."""
    available = installed_methods() if available is None else available
    if name not in available:
        raise ValueError(f"no installed eval method {name!r} (entry point group {ENTRY_POINT_GROUP!r})")
    ep = available[name]
    where = f"eval method {name!r} ({ep.value})"
    try:
        factory = ep.load()
    except Exception as e:
        raise RuntimeError(f"{where} could not be loaded: {e}") from e
    if not callable(factory):
        raise TypeError(f"{where} is not callable: its entry point must name a factory(model) function")
    made = factory(model)
    methods = [made] if isinstance(made, Method) else list(made)
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise TypeError(f"{where} returned {made!r}: a factory must return a Method or a non-empty list of them")
    return methods
