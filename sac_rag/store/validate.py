"""Input checks for store operations: bad input raises a clear error before anything is written."""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_ID = 2**63 - 1


@dataclass
class Record:
    """A passage about to be stored."""

    text: str
    metadata: dict = field(default_factory=dict)
    id: int = -1
    token_ids: array | None = None  # the text's ids by the model's tokenizer, once known (tokenised once)


def check_id(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ValueError(f"{where} must be an integer in [0, 2**63), got {value!r}")
    return int(value)


def check_ids(ids: Sequence[int] | int) -> list[int]:
    """Ids as a list of ints (a single int allowed), each valid, no repeats."""
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = [ids]
    out = [check_id(i, f"ids[{n}]") for n, i in enumerate(ids)]
    if len(set(out)) != len(out):
        raise ValueError("ids repeat")
    return out


def records(
    texts: Sequence[str] | str,
    metadata: Sequence[dict] | None,
    ids: Sequence[int] | None,
    token_ids: Sequence[Sequence[int]] | None = None,
) -> list[Record]:
    """Validated records: non-empty texts, JSON-safe dict metadata, unique ids, non-empty integer token ids (as
    :func:`token_array` s), all of matching lengths."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("no texts given")
    for n, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{n}] is {type(text).__name__}, expected str")
        if not text.strip():
            raise ValueError(f"texts[{n}] is empty: nothing to store")
        check_unicode(text, f"texts[{n}]")
    metadata = list(metadata) if metadata is not None else [{} for _ in texts]
    if len(metadata) != len(texts):
        raise ValueError(f"{len(metadata)} metadata entries for {len(texts)} texts")
    for n, meta in enumerate(metadata):
        if not isinstance(meta, dict):
            raise TypeError(f"metadata[{n}] is {type(meta).__name__}, expected dict")
        try:
            same = json.loads(json.dumps(meta, allow_nan=False)) == meta
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            raise ValueError(f"metadata[{n}] is not JSON-serialisable: {e}") from e
        if not same:
            raise ValueError(f"metadata[{n}] does not survive JSON unchanged (keys must be strings, lists not tuples)")
    out = [Record(t, dict(m)) for t, m in zip(texts, metadata)]
    if ids is not None:
        checked = check_ids(list(ids))
        if len(checked) != len(texts):
            raise ValueError(f"{len(checked)} ids for {len(texts)} texts")
        for rec, i in zip(out, checked):
            rec.id = i
    if token_ids is not None:
        token_ids = list(token_ids)
        if len(token_ids) != len(texts):
            raise ValueError(f"{len(token_ids)} token id sequences for {len(texts)} texts")
        for n, (rec, seq) in enumerate(zip(out, token_ids)):
            rec.token_ids = token_array(seq, f"token_ids[{n}]")
            if not rec.token_ids:
                raise ValueError(f"token_ids[{n}] is empty, texts[{n}] is not")
    return out


def token_array(ids: Sequence[int], what: str = "token ids") -> array:
    """Token ids as an array of C ints (4 bytes an id; a list of Python ints takes up to 36), for passages that
    carry their ids from splitting to compression. ``ids`` already such an array is returned as is."""
    if isinstance(ids, array) and ids.typecode == "i":
        return ids
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{what} is {type(ids).__name__}, expected a sequence of token ids")
    try:
        return array("i", ids)
    except (TypeError, OverflowError) as e:
        raise ValueError(f"{what} must be integer token ids ({e})") from None


def check_unicode(text: str, what: str) -> str:
    """``text`` if it can be stored as UTF-8 (no lone surrogates), else a ValueError naming ``what``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode text ({e.reason} at {e.start})") from None
    return text


def check_positive(value: object, name: str) -> int:
    """``value`` if it is an integer >= 1, else a ValueError naming the parameter ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query must be a non-empty string")
    return check_unicode(query, "the query")


def check_k(k: object) -> int:
    return check_positive(k, "k")


def compressor_mismatch(model, fingerprint: str, made_by: str | None = None) -> str | None:
    """Why memories made by the compressor ``fingerprint`` (of the base model ``made_by``) are not ``model``'s
    (a :class:`~sac_rag.SACModel`), naming the ``memory_kind`` to load it with when it makes the other kind of
    memory; None when they are its own."""
    if model.fingerprint == fingerprint:
        return None
    kind = model.config.memory_kind
    other = "sac" if kind == "compact" else "compact"
    hint = ""
    if model.memory_fingerprint(other) == fingerprint:
        hint = f": the store holds {other} memories, load the model with memory_kind={other!r} (--memory-kind)"
    source = f" ({made_by})" if made_by else ""
    given = f"the model given is compressor {model.fingerprint} ({kind})"
    return f"its memories were made by {fingerprint}{source}, {given}{hint}"
