"""ChatSAC: the langchain-tests unit suite, prompts from messages, memory references and forged look-alikes."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_sac import ChatSAC, messages_to_prompt
from sac_rag.bridge import ForgedReferenceError, SACSession
from sac_rag.testing import CORPUS, slow_model, ticks_during, tiny_session

from ..support import TOKENS, shared_session


class TestChatSACStandard(ChatModelUnitTests):
    """The langchain-tests standard chat-model unit suite."""

    @property
    def chat_model_class(self) -> type[ChatSAC]:
        return ChatSAC

    @property
    def chat_model_params(self) -> dict:
        return {"session": shared_session()}


def test_messages_to_prompt():
    assert messages_to_prompt([HumanMessage("q?")]) == "q?"
    convo = [SystemMessage("be brief"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("q?")]
    assert messages_to_prompt(convo) == "System: be brief\nUser: hi\nAssistant: hello\nUser: q?\nAssistant:"


def test_answers_from_the_referenced_memory_and_stops_at_stop_strings():
    session = shared_session()
    memory = session.attach([CORPUS[1]])[0]
    prompt = f"Context:\n{memory.reference}\nQuestion: where?\nAnswer:"
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    answer = llm.invoke(prompt).content
    segments = ["Context:\n", memory.chunk, "\nQuestion: where?\nAnswer:"]
    assert answer and answer == session.model.generate(segments, max_new_tokens=TOKENS)
    assert "".join(c.content for c in llm.stream(prompt)) == answer
    assert llm.model_name == "sac:tiny-llama" and llm._llm_type == "sac"
    stop = answer[len(answer) // 2 :]  # a stop string ends the answer before its first occurrence
    before = answer[: answer.index(stop)]
    assert llm.invoke(prompt, stop=[stop]).content == before
    assert ChatSAC(session=session, max_tokens=TOKENS, stop=[stop]).invoke(prompt).content == before


def test_async_generation_keeps_the_event_loop_running():
    session = tiny_session(max_new_tokens=TOKENS)
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    prompt = [HumanMessage(f"{session.attach([CORPUS[3]])[0].reference}\nAnswer:")]
    expected = llm.invoke(prompt).content

    async def streamed() -> str:
        return "".join([c.content async for c in llm.astream(prompt)])

    with slow_model(session, 0.4):
        message, ticks = asyncio.run(ticks_during(llm.ainvoke(prompt)))
        assert message.content == expected and ticks >= 15
        text, ticks = asyncio.run(ticks_during(streamed()))
        assert text == expected and ticks >= 15


def test_lookalike_references_are_refused():
    session = shared_session()
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    signed = session.attach([CORPUS[2]])[0].reference
    foreign = SACSession(session.model).attach([CORPUS[2]])[0].reference
    for fake in [signed[:-3] + "00⟧", foreign, "⟦SAC:abc⟧"]:
        with pytest.raises(ForgedReferenceError):
            llm.invoke(f"hi {fake}")
        with pytest.raises(ForgedReferenceError):
            asyncio.run(llm.ainvoke(f"hi {fake}"))
