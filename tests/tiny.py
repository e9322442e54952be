"""Tiny random models and a tiny tokenizer, built in seconds for the tests (they live in ``sac_rag.testing``)."""

from sac_rag.testing import TOKENIZER_CORPUS as CORPUS
from sac_rag.testing import randomize_sac, text_of_tokens, tiny_llama, tiny_qwen2, tiny_tokenizer

__all__ = ["CORPUS", "randomize_sac", "text_of_tokens", "tiny_llama", "tiny_qwen2", "tiny_tokenizer"]
