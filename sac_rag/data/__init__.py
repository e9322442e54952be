"""Real QA data: MRQA ``.jsonl(.gz)`` and SQuAD ``.json`` readers shared by training and evaluation."""

from sac_rag.data.qa import MalformedRecord, QAExample, load_qa

__all__ = ["MalformedRecord", "QAExample", "load_qa"]
