"""Scale-out: Ray Data batch indexing into (sharded) stores, IVF / IVF-PQ indexes merged on disk, and
``open_store``, which opens a store of either kind."""

from sac_rag.scale.ivf import IVFIndex
from sac_rag.scale.open import open_store
from sac_rag.scale.ray_index import IndexReport, index_with_ray
from sac_rag.scale.recipe import Recipe
from sac_rag.scale.sharded import ShardedStore
from sac_rag.scale.worker import UnitWriter

__all__ = ["IVFIndex", "IndexReport", "Recipe", "ShardedStore", "UnitWriter", "index_with_ray", "open_store"]
