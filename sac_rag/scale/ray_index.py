"""``index_with_ray``: compress and index a corpus on a Ray cluster, into one store or a sharded one.

The driver reads and plans (passage ids, which texts are new), then a Ray Data pipeline hands work
units to a pool of :class:`~sac_rag.scale.worker.UnitWriter` actors (GPU actors where the cluster has
GPUs), each writing its units as part stores in parallel. The driver merges every finished unit into
the target store as it arrives and builds each vector index once at the end.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE
from sac_rag.config import CONFIG_NAME
from sac_rag.corpus import Passages, read_documents, to_passages
from sac_rag.corpus.passages import DEFAULT_PASSAGE_TOKENS
from sac_rag.scale.merge import PartMerger
from sac_rag.scale.open import open_store
from sac_rag.scale.plan import Plan, make_plan
from sac_rag.scale.recipe import EmbedderSpec, ModelSpec, Recipe
from sac_rag.scale.sharded import ShardedStore
from sac_rag.scale.worker import UnitWriter
from sac_rag.store import MemoryStore, store_kind
from sac_rag.store.codec import dtype_name, memory_dtype_for
from sac_rag.store.validate import Record, records
from sac_rag.text.prompt import encode

STAGING = ".scale-staging"


@dataclass
class IndexReport:
    """What a run did: passages written, texts compressed (new ones only), units, workers and timing."""

    store: str
    passages: int
    compressed: int
    units: int
    workers: int
    gpus_per_worker: float
    seconds: float
    worker_seconds: float = 0.0  # summed time the workers spent writing units (compress + embed + write)

    @property
    def passages_per_s(self) -> float:
        return self.passages / self.seconds if self.seconds else 0.0


def _is_path(item: object) -> bool:
    if isinstance(item, Path):
        return True
    try:
        return isinstance(item, str) and "\n" not in item and Path(item).exists()
    except OSError:  # e.g. a passage longer than a file name may be
        return False


def corpus_records(corpus, load_model: Callable, passage_tokens: int, metadata=None, ids=None) -> list[Record]:
    """Records from :class:`Passages`, a ``ray.data.Dataset`` with a ``text`` column, files, or texts.

    A sequence whose items are all :class:`~pathlib.Path` objects or existing paths is read as files
    (split into passages with stable ids, as ``sac-rag index`` does); any other sequence of strings is
    taken as the passages themselves. ``load_model()`` gives the model whose tokenizer splits files;
    it is called after every file was read and checked. Passages split here keep the ids they were measured by
    (so are :class:`Passages` that carry them): the workers compress those, and no passage is tokenised twice.
    """
    if isinstance(corpus, Passages):
        return records(corpus.texts, corpus.metadata, corpus.ids, corpus.token_ids)
    if hasattr(corpus, "iter_rows"):  # a ray.data.Dataset
        rows = list(corpus.iter_rows())
        has_ids = bool(rows) and "id" in rows[0]
        return records(
            [r["text"] for r in rows],
            [dict(r.get("metadata") or {}) for r in rows],
            [int(r["id"]) for r in rows] if has_ids else ids,
        )
    items = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
    if items and all(_is_path(x) for x in items):
        documents = read_documents(items)
        passages = to_passages(documents, passage_tokens, tokenize=functools.partial(encode, load_model().tokenizer))
        if not passages:
            raise ValueError("the given files hold no text")
        return records(passages.texts, passages.metadata, passages.ids, passages.token_ids)
    return records(items, metadata, ids)


def _worker_recipe(recipe: Recipe, sac, staging: Path) -> Recipe:
    """The recipe workers get: a factory or checkpoint as given; else the driver's model, saved once.

    A base-model name (or the default without a shipped compressor) gets fresh, random SAC weights in
    each process: every worker would be another compressor, so they load the driver's instead.
    """
    if callable(recipe.model) or (recipe.model is not None and (Path(recipe.model) / CONFIG_NAME).is_file()):
        return recipe
    directory = staging / "compressor"
    if not (directory / CONFIG_NAME).is_file():
        sac.save_pretrained(directory)
    return Recipe(str(directory), recipe.embedder)


def _open_target(path: Path, shards: int, model, embedder: EmbedderSpec, memory_dtype) -> list[MemoryStore]:
    """The store parts to write: an existing store's (its layout wins), else new ones."""
    if store_kind(path) is not None:
        store = open_store(path, model, embedder)
        return store.parts if isinstance(store, ShardedStore) else [store]
    if shards > 1:
        return ShardedStore.create(path, model, embedder, memory_dtype, parts=shards).parts
    return [MemoryStore.create(path, model, embedder, memory_dtype)]


def _assign_ids(batch: list[Record], parts: list[MemoryStore]) -> None:
    if batch and batch[0].id < 0:
        first = max(p.manifest.next_id() for p in parts)
        for n, rec in enumerate(batch):
            rec.id = first + n


@contextmanager
def _holding_locks(parts: list[MemoryStore]) -> Iterator[None]:
    """Hold every part's single-writer lock for the whole run."""
    with ExitStack() as stack:
        for part in parts:
            stack.enter_context(part.writing())
        yield


def _connect(address: str | None, ray_init: dict | None) -> bool:
    """Join the cluster at ``address`` (or start a local one); True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, **(ray_init or {}))
    return True


def _run_units(plan: Plan, mergers: list[PartMerger], writer: type, writer_args: dict, workers: int, **actor) -> float:
    """Run the units through a pool of ``workers`` actors (``actor``: their resources, as Ray takes them),
    merging each finished unit into its part as it streams back; return the workers' busy seconds, summed.
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    retry_on = context.actor_task_retry_on_errors
    if retry_on is False:  # unless the caller chose: an I/O error (a shared file system's hiccup) re-runs the unit
        context.actor_task_retry_on_errors = [OSError]
    busy = 0.0
    try:
        dataset = ray.data.from_items([u.row() for u in plan.units], override_num_blocks=len(plan.units))
        written = dataset.map_batches(
            writer,
            fn_constructor_kwargs=writer_args,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            **actor,
        )
        staging = Path(writer_args["staging"])
        for batch in written.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            for name, part in zip(batch["name"], batch["part"]):
                mergers[int(part)].merge_unit(staging / str(name))
            busy += float(batch["seconds"].sum())
    finally:
        context.actor_task_retry_on_errors = retry_on
    return busy


def index_with_ray(
    paths_or_texts,
    store_dir: str | Path,
    address: str | None = None,
    *,
    model: ModelSpec = None,
    embedder: EmbedderSpec = None,
    memory_dtype: torch.dtype | str | None = None,
    metadata: Sequence[dict] | None = None,
    ids: Sequence[int] | None = None,
    shards: int = 1,
    workers: int = 2,
    num_gpus: float | None = None,
    unit_size: int = 64,
    batch_size: int = COMPRESS_BATCH_SIZE,
    passage_tokens: int = DEFAULT_PASSAGE_TOKENS,
    worker_cls: type = UnitWriter,
    ray_init: dict | None = None,
) -> IndexReport:
    """Index a corpus with a pool of Ray actors into ``store_dir`` (a store, or a sharded one if ``shards > 1``).

    ``model`` / ``embedder`` are recipes every worker builds itself from (see :class:`Recipe`): a
    checkpoint dir or model name, or a module-level factory; ``None`` means the offline defaults.
    Passages with the same id are replaced, as ``upsert`` does; texts the store already holds are not
    compressed again. ``num_gpus`` per worker defaults to 1 when the cluster has GPUs, else 0.
    ``worker_cls`` may be a subclass of :class:`UnitWriter`. An existing store keeps its layout and dtype.
    """
    import ray

    t0 = time.perf_counter()
    recipe = Recipe(model, embedder)
    load_model = functools.cache(recipe.build_model)
    batch = corpus_records(paths_or_texts, load_model, passage_tokens, metadata, ids)
    sac = load_model()
    store_dir = Path(store_dir)
    parts = _open_target(store_dir, shards, sac, embedder, dtype_name(memory_dtype or memory_dtype_for(sac)))
    staging = store_dir / STAGING
    started = False
    try:
        started = _connect(address, ray_init)
        with _holding_locks(parts):
            _assign_ids(batch, parts)
            salt = f"{sac.fingerprint}|{parts[0].embedder_name}|{parts[0].memory_dtype}"
            plan = make_plan(batch, [set(p.manifest.memory_rows()) for p in parts], unit_size, salt)
            mergers = [PartMerger(p, recs) for p, recs in zip(parts, plan.passages)]
            if num_gpus is None:
                num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            busy = 0.0
            if plan.units:
                writer_args = {
                    "recipe": _worker_recipe(recipe, sac, staging),
                    "staging": str(staging),
                    "fingerprint": sac.fingerprint,
                    "memory_dtype": parts[0].memory_dtype,
                    "max_passage_tokens": parts[0].max_passage_tokens,
                    "batch_size": batch_size,
                }
                resources = {"num_gpus": num_gpus, "num_cpus": 0 if num_gpus else 1}
                busy = _run_units(plan, mergers, worker_cls, writer_args, workers, **resources)
            for merger in mergers:
                merger.finish()
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        for part in parts:
            part.close()
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    counts = (len(batch), plan.texts_to_compress, len(plan.units))
    return IndexReport(str(store_dir), *counts, workers, num_gpus, seconds, busy)
