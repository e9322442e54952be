"""The Ray Data actor that compresses and embeds work units into small part stores.

Each actor builds the models once (from a :class:`~sac_rag.scale.recipe.Recipe`) and then, for every
work unit it is handed, writes a complete :class:`~sac_rag.store.MemoryStore` (manifest + one
checksummed shard) with the store's own code, published atomically under the unit's
content-addressed name. A unit already published is not redone, so a retried call after a killed
worker costs only the unfinished unit and leaves nothing behind twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE
from sac_rag.io import atomic_write_dir
from sac_rag.scale.recipe import Recipe
from sac_rag.store import MemoryStore, StoreMismatch
from sac_rag.store.layout import MANIFEST


class UnitWriter:
    """Callable class for ``Dataset.map_batches``: one row in = one work unit written as a part store."""

    def __init__(
        self,
        recipe: Recipe,
        staging: str,
        fingerprint: str,
        memory_dtype: str,
        max_passage_tokens: int,
        batch_size: int = COMPRESS_BATCH_SIZE,
    ) -> None:
        self.model = recipe.build_model()
        if self.model.fingerprint != fingerprint:
            raise StoreMismatch(
                f"this worker built compressor {self.model.fingerprint}, the store holds {fingerprint}: give every "
                "node the same checkpoint (and dtype: a GPU loads bfloat16 by default, which is another compressor)"
            )
        self.embedder = recipe.build_embedder()
        self.staging = Path(staging)
        self.memory_dtype = memory_dtype
        self.max_passage_tokens = max_passage_tokens
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seconds = []
        rows = zip(batch["name"], batch["ids"], batch["texts"], batch["metadata"], batch["token_ids"])
        for name, ids, texts, metadata, token_ids in rows:
            t0 = time.perf_counter()
            token_ids = [[int(t) for t in seq] for seq in token_ids]
            self.write_unit(
                str(name),
                [int(i) for i in ids],
                [str(t) for t in texts],
                [json.loads(m) for m in metadata],
                token_ids if all(token_ids) else None,
            )
            seconds.append(time.perf_counter() - t0)
        return {"name": batch["name"], "part": batch["part"], "seconds": np.array(seconds)}

    def write_unit(
        self,
        name: str,
        ids: list[int],
        texts: list[str],
        metadata: list[dict],
        token_ids: list[list[int]] | None = None,
    ) -> Path:
        """Compress and embed one unit into ``staging/name`` (atomically); skip it if already there. ``token_ids``:
        the texts' ids as the driver split them (compressed as they are; None: the store tokenises each once)."""
        final = self.staging / name
        if (final / MANIFEST).is_file():
            return final

        def fill(tmp: Path) -> None:
            with MemoryStore.create(
                tmp, self.model, self.embedder, self.memory_dtype, max_passage_tokens=self.max_passage_tokens
            ) as store:
                store.flush_every = max(len(texts), 1)  # one shard per unit
                store.add(texts, metadata, ids, batch_size=self.batch_size, progress=False, token_ids=token_ids)

        atomic_write_dir(final, fill)
        return final
