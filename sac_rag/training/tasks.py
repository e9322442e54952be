"""What is trained: a SAC compressor (memories in the decoder) or the Full-FT reference (raw context + LoRA).

A task owns its model, turns a sample into a scalar loss, names its trainable parameters, saves and
reloads its weights, and answers a held-out question for the quick EM/F1.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Protocol

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sac_rag.compression.lora import attach_lora, lora_parameters
from sac_rag.config import SACConfig
from sac_rag.io import atomic_write_dir, atomic_write_text
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.compose import LM
from sac_rag.model import SACModel
from sac_rag.qa.datasets import QAExample
from sac_rag.text.prompt import bos_ids, context_ids, encode, question_ids
from sac_rag.training.data import LMSample
from sac_rag.training.objectives import cross_entropy, distill_kl, shifted, target_logits, topk_distill_kl
from sac_rag.training.teacher_cache import TeacherCache

Sample = QAExample | LMSample
PASSAGE_SEPARATOR = "\n\n"


class Task(Protocol):
    def parameters(self) -> dict[str, nn.Parameter]: ...
    def loss(self, sample: Sample) -> tuple[torch.Tensor, dict[str, float]]: ...
    def save(self, directory: Path) -> None: ...
    def load(self, directory: Path) -> None: ...
    def answer(self, sample: QAExample, max_new_tokens: int = 32) -> str: ...


def answer_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """The QA target: ``ids(answer) + [EOS]`` (docs/sac.md section 2)."""
    return encode(tokenizer, answer) + [tokenizer.eos_token_id]


def raw_context_ids(tokenizer: PreTrainedTokenizerBase, passages: tuple[str, ...], config: SACConfig) -> list[int]:
    """The raw-context prompt of several passages: one official context, passages joined by a blank line."""
    return context_ids(tokenizer, PASSAGE_SEPARATOR.join(passages), config)


def _truncate(ids: list[int], limit: int | None) -> list[int]:
    return ids[:limit] if limit else ids


class SACTask:
    """Train a SAC compressor: passages compressed independently (LoRA on), decoded with LoRA off."""

    def __init__(
        self,
        model: SACModel,
        *,
        max_distractor_tokens: int | None = 400,
        lm_max_tokens: int = 256,
        distill_weight: float = 0.0,
        distill_temperature: float = 1.0,
        teacher: PreTrainedModel | None = None,
        teacher_cache: TeacherCache | None = None,
        train_reader: bool = False,
    ) -> None:
        self.model = model
        self.tok = model.tokenizer
        self.max_distractor_tokens = max_distractor_tokens
        self.lm_max_tokens = lm_max_tokens
        self.distill_weight = distill_weight
        self.distill_temperature = distill_temperature
        self.teacher = teacher  # a frozen causal LM on the same vocabulary (None: the model's own decoder)
        if train_reader and not model.config.has_reader:
            raise ValueError("train_reader needs a model with a reader adapter")
        self.train_reader = train_reader
        if teacher_cache is not None and train_reader and teacher is None:
            raise ValueError("a cached teacher must stay frozen: the reader teaches here, so it cannot be trained")
        self.teacher_cache = teacher_cache  # the teacher's top-k targets, computed once per example

    def parameters(self) -> dict[str, nn.Parameter]:
        """The compressor's parameters, and the reader's when it is trained too."""
        reader = self.model.reader_parameters() if self.train_reader else {}
        return {**self.model.sac_parameters(), **reader}

    def _memories(self, sequences: list[list[int]]) -> list[MemoryChunk]:
        kvs = self.model.encode_sequences(sequences, batch_size=1)  # with grad: the compressor learns
        return [MemoryChunk(kv.keys, kv.values, kv.positions, kv.length) for kv in kvs]

    def _layout(self, sample: Sample) -> tuple[list[list[int]], list, list[int], list[int]]:
        """Compressed sequences, decoder prompt (after the memories), target, and the raw teacher prefix."""
        tok, cfg = self.tok, self.model.config
        if isinstance(sample, QAExample):
            passages = sample.prompt_passages
            seqs = [
                context_ids(tok, p, cfg)
                if p == sample.context  # the gold passage is never cut
                else _truncate(context_ids(tok, p, cfg), self.max_distractor_tokens)
                for p in passages
            ]
            q = question_ids(tok, sample.question, cfg)
            return seqs, [LM, *q], answer_ids(tok, sample.answer), raw_context_ids(tok, passages, cfg) + q
        ids = encode(tok, sample.text)
        whole = len(ids) <= self.lm_max_tokens
        ids = ids[: self.lm_max_tokens]
        if len(ids) < 2:
            raise ValueError(f"text too short for continuation pretraining: {sample.text[:60]!r}")
        cut = len(ids) // 2
        target = ids[cut:] + ([tok.eos_token_id] if whole else [])
        prefix = bos_ids(tok) + ids[:cut]
        return [prefix], [LM], target, prefix

    def loss(self, sample: Sample) -> tuple[torch.Tensor, dict[str, float]]:
        m = self.model
        seqs, prompt, target, teacher_prefix = self._layout(sample)
        memories = self._memories(seqs)
        inputs, labels = shifted(prompt, target)
        generator = m.generator()
        _, hidden, _ = generator.decoder.run(generator.memory_prompt(memories, [LM, inputs[1:]]))
        logits, targets = target_logits(hidden, labels, m.base_model.get_output_embeddings())
        ce = cross_entropy(logits, targets)
        parts = {"ce": ce.item()}
        if self.distill_weight <= 0:
            return ce, parts
        if self.teacher_cache is None:
            kl = distill_kl(logits, self._teacher_logits(teacher_prefix, target), self.distill_temperature)
        else:
            hits = self.teacher_cache.hits
            teach = partial(self._teacher_logits, teacher_prefix, target)  # run on a cache miss only
            top = self.teacher_cache.lookup(teacher_prefix, target, teach)
            parts["teacher_cached"] = float(self.teacher_cache.hits > hits)
            kl = topk_distill_kl(logits, top.indices, top.logprobs, self.distill_temperature)
        parts["kl"] = kl.item()
        return ce + self.distill_weight * kl, parts

    @torch.no_grad()
    def _teacher_logits(self, prefix: list[int], target: list[int]) -> torch.Tensor:
        """The teacher (or the model's own decoder) reading the raw text, at the same target tokens."""
        m = self.model
        inputs, labels = shifted(prefix, target)
        ids = torch.tensor([inputs], device=m.device)
        if self.teacher is not None:
            hidden = self.teacher.model(input_ids=ids).last_hidden_state[0]
            return target_logits(hidden, labels, self.teacher.get_output_embeddings())[0]
        with m.adapter(False):
            hidden = m.transformer(input_ids=ids).last_hidden_state[0]
        return target_logits(hidden, labels, m.base_model.get_output_embeddings())[0]

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)

    def load(self, directory: Path) -> None:
        from sac_rag.checkpoint.native import load_sac_weights

        load_sac_weights(self.model, directory)

    def answer(self, sample: QAExample, max_new_tokens: int = 32) -> str:
        memories = self.model.compress(list(sample.prompt_passages))
        return self.model.generate(sample.question, memories=memories, max_new_tokens=max_new_tokens)


FULLFT_INFO = "fullft_info.json"


def load_fullft_teacher(adapter_dir: str | Path, base: PreTrainedModel, expected_base: str | None) -> PreTrainedModel:
    """``base`` with the Full-FT adapter in ``adapter_dir`` merged in, frozen: a distillation teacher.

    ``expected_base`` (the student's base model name) must be the one the adapter was trained on.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json, not a Full-FT adapter directory")
    info_path = adapter_dir / FULLFT_INFO
    if info_path.is_file():
        trained_on = json.loads(info_path.read_text(encoding="utf-8")).get("sac_config", {}).get("base_model")
        if expected_base and trained_on and trained_on != expected_base:
            raise ValueError(f"{adapter_dir} was trained on {trained_on}, the student's base is {expected_base}")
    teacher = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class FullFTTask:
    """The paper's Full-FT reference: the same base with a LoRA of the same size, reading the raw context.

    Prompt ``raw_context_ids + question_ids`` (official strings), target ``answer + EOS``. Saved as a
    plain PEFT adapter directory (``PeftModel.from_pretrained(base, dir)`` loads it).
    """

    def __init__(self, base: nn.Module, tokenizer: PreTrainedTokenizerBase, config: SACConfig) -> None:
        for p in base.parameters():
            p.requires_grad_(False)
        self.config = config
        self.tok = tokenizer
        self.peft: PeftModel = attach_lora(base, config, base_name=config.base_model)
        self.peft.train(False)

    @property
    def device(self) -> torch.device:
        return next(self.peft.parameters()).device

    def parameters(self) -> dict[str, nn.Parameter]:
        return lora_parameters(self.peft)

    def _prompt(self, sample: QAExample) -> list[int]:
        return raw_context_ids(self.tok, sample.prompt_passages, self.config) + question_ids(
            self.tok, sample.question, self.config
        )

    def loss(self, sample: Sample) -> tuple[torch.Tensor, dict[str, float]]:
        if not isinstance(sample, QAExample):
            raise TypeError("the Full-FT reference trains on QA samples only")
        inputs, labels = shifted(self._prompt(sample), answer_ids(self.tok, sample.answer))
        model = self.peft.get_base_model()
        hidden = model.model(input_ids=torch.tensor([inputs], device=self.device)).last_hidden_state[0]
        ce = cross_entropy(*target_logits(hidden, labels, model.get_output_embeddings()))
        return ce, {"ce": ce.item()}

    def save(self, directory: Path) -> None:
        def write(tmp: Path) -> None:
            self.peft.save_pretrained(tmp)
            info = {
                "what": "sac_rag Full-FT reference: LoRA fine-tuned on raw-context QA",
                "prompt": "context_ids(context) + question_ids(question), official strings (docs/sac.md section 2)",
                "target": "ids(answer) + [EOS]",
                "passages_joined_by": PASSAGE_SEPARATOR,
                "sac_config": self.config.to_dict(),
            }
            atomic_write_text(tmp / FULLFT_INFO, json.dumps(info, indent=2) + "\n")

        atomic_write_dir(directory, write)

    def load(self, directory: Path) -> None:
        set_peft_model_state_dict(self.peft, load_file(str(Path(directory) / "adapter_model.safetensors")))

    @torch.no_grad()
    def answer(self, sample: QAExample, max_new_tokens: int = 32) -> str:
        ids = torch.tensor([self._prompt(sample)], device=self.device)
        out = self.peft.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.tok.eos_token_id,
            pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id,
        )
        return self.tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
