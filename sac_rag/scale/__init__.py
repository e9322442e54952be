"""Scale-out: Ray Data batch indexing into (sharded) stores, and IVF / IVF-PQ indexes merged on disk."""

from sac_rag.scale.ivf import IVFIndex
from sac_rag.scale.pipeline import IndexReport, index_with_ray
from sac_rag.scale.recipe import Recipe
from sac_rag.scale.sharded import ShardedStore
from sac_rag.scale.worker import UnitWriter

__all__ = ["IVFIndex", "IndexReport", "Recipe", "ShardedStore", "UnitWriter", "index_with_ray"]
