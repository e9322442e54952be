"""Planning a distributed indexing run: which passages go to which store part, in which work unit.

Only passages whose text is not yet compressed in their part travel to the workers, each text once.
A work unit's name is a hash of what it holds (and of the compressor, embedder and dtype), so a unit
re-run after a failure writes to the same place: writes are idempotent, a finished unit is never redone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sac_rag.store.digest import content_hash
from sac_rag.store.validate import Record


def part_of(passage_id: int, parts: int) -> int:
    """The store part a passage id lives in (a sharded store spreads ids evenly; one part: 0)."""
    return passage_id % parts


@dataclass
class WorkUnit:
    """Texts one worker call compresses and embeds into one part store (at most one per text hash)."""

    name: str
    part: int
    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)  # JSON, so Ray's Arrow blocks take any dict
    token_ids: list[list[int]] = field(default_factory=list)  # each text's ids when the driver has them, else []

    def row(self) -> dict:
        return {
            "name": self.name,
            "part": self.part,
            "ids": self.ids,
            "texts": self.texts,
            "metadata": self.metadata,
            "token_ids": self.token_ids,
        }


@dataclass
class Plan:
    """The passages to write per part (all of them) and the units of new texts to compress."""

    passages: list[list[Record]]
    units: list[WorkUnit]

    @property
    def texts_to_compress(self) -> int:
        return sum(len(u.texts) for u in self.units)


def unit_name(salt: str, part: int, hashes: list[str]) -> str:
    h = hashlib.sha256(f"{salt}|{part}|".encode())
    for x in hashes:
        h.update(x.encode())
    return f"unit-{part:04d}-{h.hexdigest()[:24]}"


def make_plan(records: list[Record], known: list[set[str]], unit_size: int, salt: str) -> Plan:
    """Split ``records`` (ids assigned) by part, and their new texts into units of ``unit_size``.

    ``known[p]`` holds the text hashes part ``p`` already has memories for; ``salt`` names the
    compressor, embedder and dtype, so units of different runs never share a name.
    """
    if unit_size < 1:
        raise ValueError(f"unit_size must be >= 1, got {unit_size}")
    parts = len(known)
    passages: list[list[Record]] = [[] for _ in range(parts)]
    todo: list[dict[str, Record]] = [{} for _ in range(parts)]
    for rec in records:
        p = part_of(rec.id, parts)
        passages[p].append(rec)
        h = content_hash(rec.text)
        if h not in known[p]:
            todo[p].setdefault(h, rec)
    units = []
    for p, new in enumerate(todo):
        items = list(new.items())
        for start in range(0, len(items), unit_size):
            chunk = items[start : start + unit_size]
            unit = WorkUnit(unit_name(salt, p, [h for h, _ in chunk]), p)
            for _, rec in chunk:
                unit.ids.append(rec.id)
                unit.texts.append(rec.text)
                unit.metadata.append(json.dumps(rec.metadata))
                unit.token_ids.append([] if rec.token_ids is None else list(rec.token_ids))
            units.append(unit)
    return Plan(passages, units)
