"""SAC LLM for LlamaIndex: :class:`SACLLM` answers from the memory references in its prompt."""

from llama_index.llms.sac.base import SACLLM, SACGenerationError

__all__ = ["SACLLM", "SACGenerationError"]
