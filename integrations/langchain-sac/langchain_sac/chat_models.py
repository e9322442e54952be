"""ChatSAC: a LangChain chat model that answers from the memory its prompt references."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import AliasChoices, ConfigDict, Field, model_validator

from sac_rag.bridge import SACSession
from sac_rag.config import DEFAULT_MAX_NEW_TOKENS


def messages_to_prompt(messages: list[BaseMessage]) -> str:
    """One human message is used as is; a conversation becomes ``Role: text`` lines ending in ``Assistant:``."""
    if len(messages) == 1 and isinstance(messages[0], HumanMessage):
        return messages[0].text
    roles = {"human": "User", "ai": "Assistant", "system": "System"}
    lines = [f"{roles.get(m.type, m.type.capitalize())}: {m.text}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


class ChatSAC(BaseChatModel):
    """A SAC model as a LangChain chat model, streaming; memory references in the prompt are decoded from memory.

    Give it the :class:`SACSession` of the :class:`SACRetriever` whose references it receives. Forged
    references raise :class:`ForgedReferenceError`; ``stop`` strings end the answer before them.
    The async methods run the model in a worker thread, so the event loop is never blocked.
    ``max_tokens`` (alias ``max_new_tokens``) bounds the answer; ``stop`` sets default stop strings.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: SACSession = Field(exclude=True)
    max_tokens: int = Field(
        default=DEFAULT_MAX_NEW_TOKENS, gt=0, validation_alias=AliasChoices("max_tokens", "max_new_tokens")
    )
    stop: list[str] | None = None
    model_name: str = ""

    @model_validator(mode="after")
    def _name(self) -> ChatSAC:
        if not self.model_name:
            self.model_name = f"sac:{self.session.model.config.base_model}"
        return self

    @property
    def _llm_type(self) -> str:
        return "sac"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(ls_provider="sac_rag", ls_model_name=kwargs.get("model", self.model_name))
        params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _options(self, stop: list[str] | None) -> dict[str, Any]:
        return {"max_new_tokens": self.max_tokens, "stop": stop or self.stop}

    def _result(self, text: str) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = messages_to_prompt(messages)
        return self._result(self.session.generate(prompt, **self._options(stop)))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = messages_to_prompt(messages)
        return self._result(await self.session.agenerate(prompt, **self._options(stop)))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self.session.stream(messages_to_prompt(messages), **self._options(stop)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prompt = messages_to_prompt(messages)
        async for piece in self.session.astream(prompt, **self._options(stop)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
