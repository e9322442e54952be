"""Framework integrations for sac_rag.

``integrations.core`` is framework-neutral (signed memory references, the registry that resolves
them, the session that compresses passages and decodes from prompts). ``integrations.llama_index``
and ``integrations.langchain`` are thin adapters over it; each imports its framework lazily, so
installing only one framework is enough.
"""
