"""Build the compared methods from names, SAC checkpoints and Full-FT adapters."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from transformers import AutoModelForCausalLM, PreTrainedModel

from sac_rag.eval.methods import (
    ALL_METHODS,
    HEADED_METHODS,
    PLAIN_DECODER,
    SAC,
    SHARED_HEADER,
    TEXT_METHODS,
    Compacted,
    FullFT,
    FullKV,
    Method,
    NoContext,
    PassageAnalyses,
    RawContext,
    SACRefit,
    Truncate,
    UniformDrop,
)
from sac_rag.eval.plugins import installed_methods, load_installed
from sac_rag.home import resolve_model_path
from sac_rag.model import SACModel

DEFAULT_SAC = "default"


def load_sac(spec: str) -> tuple[str, SACModel]:
    """``default`` (the packaged compressor, untrained if none ships) or a checkpoint directory."""
    if spec == DEFAULT_SAC:
        from sac_rag.pretrained import default_checkpoint

        # an untrained default's fresh SAC parts are deterministic (seeded in SACModel), so re-runs reuse them
        return (DEFAULT_SAC if default_checkpoint() else "untrained"), SACModel.default()
    path = Path(spec)
    return path.resolve().name, SACModel.from_pretrained(path)


def base_loader(model: SACModel) -> Callable[[], PreTrainedModel]:
    """A fresh copy of ``model``'s base LM (Full-FT adapters are loaded onto it)."""

    def load() -> PreTrainedModel:
        path = resolve_model_path(model.config.base_model)
        return AutoModelForCausalLM.from_pretrained(path, dtype=model.dtype, attn_implementation="sdpa").eval()

    return load


def reader_tag(model: SACModel) -> str:
    """``""`` for a plain-base decoder; else a suffix naming the reader adapter by a digest of its weights."""
    params = model.reader_parameters()
    if not params:
        return ""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(params[name].detach().float().cpu().numpy().tobytes())
    return f"+reader-{h.hexdigest()[:8]}"


def build_methods(
    names: Sequence[str],
    sac_models: Sequence[tuple[str, SACModel]],
    *,
    full_ft: Sequence[str | Path] = (),
    ratios: Sequence[int] = (),
    load_base: Callable[[], PreTrainedModel] | None = None,
) -> list[Method]:
    """The methods named (see :data:`ALL_METHODS`, and :mod:`sac_rag.eval.plugins` for installed
    extras), all on the first SAC model's base; when that model has a reader adapter, the baselines
    are decoded by it (their keys and labels say so), except text methods named with the ``@base``
    suffix (``raw@base``: the untuned base reading the raw text). A memory method named with the ``@shared_header``
    suffix (``full_kv@shared_header``, ``compact@shared_header``) composes a question's memories with one context
    header instead of one each (:func:`sac_rag.memory.compose.compose`); its key ends ``_shared_header``.

    ``truncate``, ``drop``, ``compact`` (selection + refit) and ``select`` (selection alone) run at each of
    ``ratios`` (default: the SAC models' ratios; compaction keeps ``1/ratio`` of the full K/V's bytes);
    ``full_ft`` once per adapter directory; ``sac`` once per SAC model.
    """
    plain = {f"{n}{PLAIN_DECODER}" for n in TEXT_METHODS} | {f"{n}{SHARED_HEADER}" for n in HEADED_METHODS}
    extras = installed_methods() if set(names) - set(ALL_METHODS) - plain else {}
    unknown = set(names) - set(ALL_METHODS) - plain - set(extras)
    if unknown:
        known = ", ".join([*ALL_METHODS, *sorted(plain), *extras])
        raise ValueError(f"unknown method(s) {sorted(unknown)}: choose from {known}")
    if not sac_models:
        raise ValueError("at least one SAC model is needed (its base model decodes every baseline)")
    base = sac_models[0][1]
    for name, model in sac_models[1:]:
        if model.config.base_model != base.config.base_model:
            raise ValueError(f"SAC checkpoint {name} is on {model.config.base_model}, not {base.config.base_model}")
    if "full_ft" in names and not full_ft:
        raise ValueError("method full_ft needs --full-ft ADAPTER_DIR")
    ratios = sorted(set(ratios or [m.config.ratio for _, m in sac_models]))
    methods: list[Method] = []
    analyses = PassageAnalyses(base)
    for spec in names:
        name, reader = spec.removesuffix(PLAIN_DECODER), not spec.endswith(PLAIN_DECODER)
        shared = name.endswith(SHARED_HEADER)
        name = name.removesuffix(SHARED_HEADER)
        made = len(methods)
        if name == "raw":
            methods.append(RawContext(base, reader=reader))
        elif name == "no_context":
            methods.append(NoContext(base, reader=reader))
        elif name == "full_kv":
            methods.append(FullKV(base, shared_header=shared))
        elif name == "truncate":
            methods += [Truncate(base, r, reader=reader) for r in ratios]
        elif name == "drop":
            methods += [UniformDrop(base, r, reader=reader) for r in ratios]
        elif name in ("compact", "select", "compact_bf16", "select_bf16"):
            dtype = "bfloat16" if name.endswith("_bf16") else base.config.compact_dtype
            refit = name.startswith("compact")
            methods += [Compacted(base, r, analyses, refit=refit, dtype=dtype, shared_header=shared) for r in ratios]
        elif name == "sac_refit":
            methods += [SACRefit(model, label, analyses) for label, model in sac_models]
        elif name == "sac":
            methods += [SAC(model, label) for label, model in sac_models]
        elif name == "full_ft":
            methods += [FullFT(base, d, load_base or base_loader(base)) for d in full_ft]
        else:
            methods += load_installed(name, base, extras)
        for m in methods[made:] if shared else ():
            m.key, m.label = f"{m.key}_shared_header", f"{m.label}, one header"
    tag = reader_tag(base)
    for m in methods:
        if m.reader and not isinstance(m, (SAC, FullFT)):  # baselines decoded by the base model's reader
            m.key, m.label = m.key + tag, f"{m.label.removesuffix(' (base)')} [reader]"
    keys = [m.key for m in methods]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two methods share a key: {keys}")
    return methods
