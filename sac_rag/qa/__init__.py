"""Real QA data: the question type (``QAExample``) and the MRQA ``.jsonl(.gz)`` and SQuAD ``.json`` readers
shared by training and evaluation (not the documents a store indexes: ``sac_rag.corpus`` reads those)."""

from sac_rag.qa.datasets import MalformedRecord, QAExample, load_qa

__all__ = ["MalformedRecord", "QAExample", "load_qa"]
