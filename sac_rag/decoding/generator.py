"""Answers over memories: a prompt's layout, its composition and the greedy loop (docs/sac.md sections 8 and 12).

A :class:`Generator` holds one decoder (:class:`~sac_rag.decoding.generate.MemoryDecoder`) and what a prompt is
made of (the tokenizer and the config's templates and sink switch); it keeps nothing of a question, so one is
built per model and decoder variant and every question's trip (layout -> composition -> tokens) uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypedDict, Unpack

from transformers import PreTrainedTokenizerBase

from sac_rag.config import DEFAULT_MAX_NEW_TOKENS, SACConfig
from sac_rag.decoding.generate import MemoryDecoder
from sac_rag.decoding.text import TextStream
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.compose import LM, ComposedPrompt, Segment, Sink
from sac_rag.memory.sac import SAC_KIND
from sac_rag.text.prompt import bos_ids, encode, question_ids

PromptSegment = str | MemoryChunk


class GenerationOptions(TypedDict, total=False):
    """How an answer is generated (defaults: :meth:`Generator.stream_ids`'s)."""

    max_new_tokens: int  # the answer's length limit, a final EOS included
    stop_token_ids: Sequence[int] | None  # ids that end the answer besides EOS (yielded, as EOS is)


def is_sac(chunk: MemoryChunk) -> bool:
    """Whether ``chunk`` holds SAC anchors (read after an [LM]; a store's older chunks carry no kind)."""
    return chunk.meta.get("kind", SAC_KIND) == SAC_KIND


class Generator:
    """Lays out, composes and answers prompts over memories with ``decoder``.

    ``check_memory`` refuses a memory the model cannot read (its shape, its maker's fingerprint);
    ``max_positions``: the base model's position limit (None: none), which a prompt and its answer must fit.
    """

    def __init__(
        self,
        decoder: MemoryDecoder,
        tokenizer: PreTrainedTokenizerBase,
        config: SACConfig,
        check_memory: Callable[[MemoryChunk], None],
        max_positions: int | None = None,
    ) -> None:
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.config = config
        self.check_memory = check_memory
        self.max_positions = max_positions

    # ----------------------------------------------------------------- layout
    def build_prompt(
        self, prompt: str | Sequence[PromptSegment], memories: Sequence[MemoryChunk] | None = None
    ) -> list[Segment]:
        """The decoder's segment list for a question over memories, or for an explicit segment list.

        ``prompt`` as a string with ``memories``: the official layout, memories then [LM] and the
        question in its template. ``prompt`` as a list of strings and MemoryChunks: text encoded as
        is, [LM] right after the last SAC memory (other memories get none). A prompt that starts
        with text gets the BOS token; one that starts with a SAC memory gets the attention sink when
        the config asks for it.
        """
        if isinstance(prompt, str):
            if memories:
                for m in memories:
                    self.check_memory(m)
                lm = [LM] if any(is_sac(m) for m in memories) else []
                return self._with_sink([*memories, *lm, question_ids(self.tokenizer, prompt, self.config)])
            return [bos_ids(self.tokenizer) + encode(self.tokenizer, prompt)]
        if memories:
            raise ValueError("pass memories either inside the segment list or as `memories`, not both")
        segments: list[Segment] = []
        last_memory = max((i for i, s in enumerate(prompt) if isinstance(s, MemoryChunk) and is_sac(s)), default=-1)
        for i, seg in enumerate(prompt):
            if isinstance(seg, MemoryChunk):
                self.check_memory(seg)
                segments.append(seg)
                if i == last_memory:
                    segments.append(LM)
            elif isinstance(seg, str):
                ids = encode(self.tokenizer, seg)
                segments.append(bos_ids(self.tokenizer) + ids if i == 0 else ids)
            else:
                raise TypeError(f"prompt segment {i} is {type(seg).__name__}: expected str or MemoryChunk")
        return self._with_sink(segments)

    def memory_prompt(self, memories: Sequence[MemoryChunk], tail: Sequence[Segment]) -> list[Segment]:
        """``memories`` then ``tail`` (e.g. [LM] and token ids), with the attention sink when configured:
        the decoder's input layout, shared by serving and training."""
        return self._with_sink([*memories, *tail])

    def _with_sink(self, segments: list[Segment]) -> list[Segment]:
        opens_with_memory = bool(segments) and isinstance(segments[0], MemoryChunk) and is_sac(segments[0])
        bos = self.tokenizer.bos_token_id
        if self.config.attention_sink and opens_with_memory and bos is not None:
            return [Sink(bos), *segments]
        return segments

    # ----------------------------------------------------------------- composition
    def compose(self, segments: Sequence[Segment]) -> ComposedPrompt:
        """A built prompt (:meth:`build_prompt`) laid out for the decoder: memories' keys rotated into their
        places, text and [LM] at their position ids."""
        return self.decoder.compose(list(segments))

    def _check_fits(self, prompt: ComposedPrompt, max_new_tokens: int) -> None:
        """Refuse a prompt and answer that would run past the base model's positions."""
        limit = self.max_positions
        if limit and prompt.length + max_new_tokens > limit:
            raise ValueError(
                f"the prompt covers {prompt.length} positions ({prompt.memories} memories included) and the answer "
                f"up to {max_new_tokens} more, past the {limit} positions {self.config.base_model} was trained on: "
                "pass fewer or shorter passages, or a smaller max_new_tokens"
            )

    # ----------------------------------------------------------------- the greedy loop
    def stream_ids(
        self,
        prompt: Sequence[Segment] | ComposedPrompt,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stop_token_ids: Sequence[int] | None = None,
    ) -> Iterator[int]:
        """Greedy token ids, one at a time, from a built (:meth:`build_prompt`) or composed
        (:meth:`compose`) prompt; a final EOS (or stop id) is included, as in the official loop."""
        composed = prompt if isinstance(prompt, ComposedPrompt) else self.compose(prompt)
        self._check_fits(composed, max_new_tokens)
        stops = set(stop_token_ids or ())
        if self.tokenizer.eos_token_id is not None:
            stops.add(self.tokenizer.eos_token_id)
        return self.decoder.greedy(composed, max_new_tokens, stops)

    def generate_ids(
        self,
        prompt: str | Sequence[PromptSegment],
        memories: Sequence[MemoryChunk] | None = None,
        **options: Unpack[GenerationOptions],
    ) -> list[int]:
        """Greedy token ids for ``prompt`` over ``memories`` (see :meth:`build_prompt`), a final EOS included."""
        return list(self.stream_ids(self.build_prompt(prompt, memories), **options))

    def generate(
        self,
        prompt: str | Sequence[PromptSegment],
        memories: Sequence[MemoryChunk] | None = None,
        **options: Unpack[GenerationOptions],
    ) -> str:
        """Greedy answer text to ``prompt`` over ``memories`` (see :meth:`build_prompt`)."""
        return self.tokenizer.decode(self.generate_ids(prompt, memories, **options), skip_special_tokens=True)

    def stream(
        self,
        prompt: str | Sequence[PromptSegment],
        memories: Sequence[MemoryChunk] | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Iterator[str]:
        """The answer as text pieces while it is generated (greedy, the same tokens as :meth:`generate`)."""
        yield from TextStream(self.tokenizer, self.stream_ids(self.build_prompt(prompt, memories), **options))
