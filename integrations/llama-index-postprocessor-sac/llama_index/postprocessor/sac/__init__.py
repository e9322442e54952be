"""SAC node postprocessor for LlamaIndex: :class:`SACCompressor` (use it with ``llama_index.llms.sac.SACLLM``)."""

from llama_index.postprocessor.sac.base import SACCompressor

__all__ = ["SACCompressor"]
