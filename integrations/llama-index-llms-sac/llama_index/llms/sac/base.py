"""SACLLM: a LlamaIndex ``CustomLLM`` that answers from the memory its prompt references."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from llama_index.core.base.llms.generic_utils import (
    astream_completion_response_to_chat_response,
    completion_response_to_chat_response,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from sac_rag.bridge import SACSession
from sac_rag.config import DEFAULT_MAX_NEW_TOKENS


class SACGenerationError(RuntimeError):
    """The model refused a prompt (e.g. memory from another compressor), raised so LlamaIndex cannot hide it."""


@contextmanager
def _surfaced() -> Iterator[None]:
    # LlamaIndex's Refine synthesizer turns ValueError into "Empty Response": re-raise as RuntimeError.
    try:
        yield
    except ValueError as e:
        raise SACGenerationError(str(e)) from e


class SACLLM(CustomLLM):
    """A SAC model as a LlamaIndex LLM: memory references in the prompt are decoded from memory.

    Use it with :class:`~llama_index.postprocessor.sac.SACCompressor` on the same :class:`SACSession`;
    prompts without references are answered as plain text. Forged references raise
    :class:`ForgedReferenceError`. ``acomplete``, ``astream_complete``, ``achat`` and ``astream_chat``
    run the model in a worker thread.
    """

    max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, gt=0, description="Most tokens generated per answer.")
    context_window: int = Field(default=8192, gt=0, description="Context window reported to LlamaIndex.")
    model_name: str = Field(default="sac", description="Name reported in the metadata.")

    _session: SACSession = PrivateAttr()

    def __init__(self, session: SACSession, **kwargs: Any) -> None:
        cfg = session.model.base_model.config
        kwargs.setdefault("context_window", getattr(cfg, "max_position_embeddings", None) or 8192)
        kwargs.setdefault("model_name", f"sac:{session.model.config.base_model}")
        super().__init__(**kwargs)
        self._session = session

    @classmethod
    def class_name(cls) -> str:
        return "SACLLM"

    @property
    def session(self) -> SACSession:
        return self._session

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens,
            model_name=self.model_name,
            is_chat_model=False,
        )

    def _prompt(self, prompt: str, formatted: bool) -> str:
        return prompt if formatted else self.completion_to_prompt(prompt)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with _surfaced():
            text = self._session.generate(self._prompt(prompt, formatted), max_new_tokens=self.max_new_tokens)
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        pieces = self._session.stream(self._prompt(prompt, formatted), max_new_tokens=self.max_new_tokens)

        def gen() -> CompletionResponseGen:
            text = ""
            with _surfaced():
                for delta in pieces:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with _surfaced():
            text = await self._session.agenerate(self._prompt(prompt, formatted), max_new_tokens=self.max_new_tokens)
        return CompletionResponse(text=text)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        pieces = self._session.astream(self._prompt(prompt, formatted), max_new_tokens=self.max_new_tokens)

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            with _surfaced():
                async for delta in pieces:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

        return gen()

    # CustomLLM's async chat calls its sync chat: route through the async completions instead.
    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response = await self.acomplete(self.messages_to_prompt(messages), formatted=True, **kwargs)
        return completion_response_to_chat_response(response)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        stream = await self.astream_complete(self.messages_to_prompt(messages), formatted=True, **kwargs)
        return astream_completion_response_to_chat_response(stream)
