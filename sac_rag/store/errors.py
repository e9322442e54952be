"""Errors a store raises (all are RuntimeErrors, so ``sac-rag`` turns them into exit code 1)."""


class StoreError(RuntimeError):
    """A store cannot do what was asked (locked, missing, or in an unexpected state)."""


class StoreExists(StoreError):
    """A store cannot be created where something is already (a store another process made meanwhile, or other files)."""


class StoreCorrupted(StoreError):
    """A store file is damaged or foreign; the message names the file."""


class StoreMismatch(StoreError):
    """The store was built with another compressor or embedder than the one given."""


class ShardMissing(StoreCorrupted):
    """A shard the manifest names is not on disk (deleted, or swapped by a concurrent ``compact``)."""
