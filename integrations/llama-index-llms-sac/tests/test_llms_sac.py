"""SACLLM on a tiny model: answers equal SACModel.generate on the referenced memories; async keeps the loop running."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.llms import ChatMessage

from llama_index.llms.sac import SACLLM, SACGenerationError
from sac_rag.bridge import ForgedReferenceError, SACSession
from sac_rag.testing import CORPUS, slow_model, ticks_during, tiny_session

TOKENS = 6


@pytest.fixture(scope="module")
def session() -> SACSession:
    return tiny_session(max_new_tokens=TOKENS)


def test_class():
    names_of_base_classes = [b.__name__ for b in SACLLM.__mro__]
    assert BaseLLM.__name__ in names_of_base_classes
    assert SACLLM.class_name() == "SACLLM"


def test_metadata(session):
    meta = SACLLM(session).metadata
    assert meta.num_output == 64 and meta.model_name == "sac:tiny-llama" and not meta.is_chat_model
    assert meta.context_window == session.model.base_model.config.max_position_embeddings
    assert SACLLM(session, max_new_tokens=8, context_window=700).metadata.context_window == 700


def test_answers_from_the_referenced_memory(session):
    memory = session.attach([CORPUS[1]])[0]
    prompt = f"Context:\n{memory.reference}\nQuestion: where?\nAnswer:"
    segments = ["Context:\n", memory.chunk, "\nQuestion: where?\nAnswer:"]
    expected = session.model.generate(segments, max_new_tokens=TOKENS)
    llm = SACLLM(session, max_new_tokens=TOKENS)
    assert expected and llm.complete(prompt, formatted=True).text == expected
    assert "".join(r.delta for r in llm.stream_complete(prompt, formatted=True)) == expected
    chat = llm.chat([ChatMessage(role="user", content=prompt)]).message.content
    assert chat == session.generate(llm.messages_to_prompt([ChatMessage(role="user", content=prompt)]))


def test_async_methods_keep_the_event_loop_running():
    session = tiny_session(max_new_tokens=TOKENS)
    llm = SACLLM(session, max_new_tokens=TOKENS)
    prompt = f"{session.attach([CORPUS[0]])[0].reference}\nAnswer:"
    messages = [ChatMessage(role="user", content=prompt)]
    completion, chat = llm.complete(prompt, formatted=True).text, llm.chat(messages).message.content

    async def stream_text() -> str:
        return "".join([r.delta async for r in await llm.astream_complete(prompt, formatted=True)])

    async def stream_chat() -> str:
        return "".join([r.delta async for r in await llm.astream_chat(messages)])

    with slow_model(session, 0.4):
        response, ticks = asyncio.run(ticks_during(llm.acomplete(prompt, formatted=True)))
        assert response.text == completion and ticks >= 15
        streamed, ticks = asyncio.run(ticks_during(stream_text()))
        assert streamed == completion and ticks >= 15
        response, ticks = asyncio.run(ticks_during(llm.achat(messages)))
        assert response.message.content == chat and ticks >= 15
        streamed, ticks = asyncio.run(ticks_during(stream_chat()))
        assert streamed == chat and ticks >= 15


def test_lookalike_references_are_refused(session):
    llm = SACLLM(session, max_new_tokens=TOKENS)
    signed = session.attach([CORPUS[2]])[0].reference
    foreign = SACSession(session.model).attach([CORPUS[2]])[0].reference
    for fake in [signed[:-3] + "00⟧", foreign, f"⟦sac:000000000000:{'0' * 32}⟧"]:
        with pytest.raises(ForgedReferenceError):
            llm.complete(f"What does {fake} say?")
        with pytest.raises(ForgedReferenceError):
            asyncio.run(llm.acomplete(f"What does {fake} say?"))


def test_model_errors_are_raised_as_generation_errors(session):
    """LlamaIndex's refine synthesizer turns ValueError into "Empty Response": SACLLM raises a RuntimeError instead."""
    chunk = session.model.compress([CORPUS[1]])[0]
    chunk.fingerprint = "another-compressor"  # memory the decoder must refuse
    ref = session.registry.register(chunk)
    with pytest.raises(SACGenerationError, match="re-compress"):
        SACLLM(session).complete(f"{ref}\nAnswer:", formatted=True)
    assert not issubclass(SACGenerationError, ValueError)
