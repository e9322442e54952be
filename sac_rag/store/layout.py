"""Names of a store directory's parts (see docs/store.md)."""

MANIFEST = "manifest.sqlite"
SHARDS = "shards"
INDEX = "index"
LOCK = "write.lock"
