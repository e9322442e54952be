"""Documents in, passages out: reading txt/md/jsonl files, splitting them, and the demo corpus."""

from sac_rag.corpus.documents import Document, read_documents
from sac_rag.corpus.indexing import IndexResult, index_documents
from sac_rag.corpus.passages import Passages, passage_id, to_passages
from sac_rag.corpus.split import split_passages, split_with_ids

__all__ = [
    "Document",
    "IndexResult",
    "Passages",
    "index_documents",
    "passage_id",
    "read_documents",
    "split_passages",
    "split_with_ids",
    "to_passages",
]
