"""Loss pieces shared by the training tasks: shifted targets, masked cross-entropy, distillation KL
(against full teacher logits or a teacher's cached top-k log-probabilities)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


def shifted(prompt: Sequence, target: Sequence[int]) -> tuple[list, list[int]]:
    """Teacher-forcing layout: inputs ``prompt + target[:-1]`` and, aligned with them, the labels.

    Position ``i`` predicts input ``i + 1``; only the target tokens are labelled (the prompt's last
    item predicts the first target token), everything else is :data:`IGNORE`.
    """
    if not prompt or not target:
        raise ValueError("shifted() needs a non-empty prompt and target")
    inputs = [*prompt, *target[:-1]]
    labels = [IGNORE] * (len(prompt) - 1) + [int(t) for t in target]
    return inputs, labels


def target_logits(hidden: torch.Tensor, labels: Sequence[int], lm_head: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Float logits ``[t, vocab]`` at the labelled positions of ``hidden`` ``[n, H]``, and their targets ``[t]``.

    The LM head runs only where a label is set (the vocabulary projection is the costly part).
    """
    labels_t = torch.tensor(list(labels), device=hidden.device)
    if labels_t.shape[0] != hidden.shape[0]:
        raise ValueError(f"{hidden.shape[0]} hidden states but {labels_t.shape[0]} labels")
    keep = labels_t != IGNORE
    return lm_head(hidden[keep]).float(), labels_t[keep]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy."""
    return F.cross_entropy(logits, targets)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over tokens of KL(teacher || student) at ``temperature``, scaled by T^2 (Hinton et al.)."""
    t = temperature
    return _mean_kl(F.log_softmax(teacher.detach() / t, dim=-1), F.log_softmax(student / t, dim=-1), t)


def topk_distill_kl(
    student: torch.Tensor, indices: torch.Tensor, teacher_logprobs: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """:func:`distill_kl` against a teacher known by its top k only (``indices``, ``teacher_logprobs`` [t, k]).

    The teacher's distribution is its top k renormalised at ``temperature``; the student keeps its whole
    vocabulary, so the loss is zero only when the student puts all its mass on the teacher's top k, in
    the teacher's proportions (and is never negative).
    """
    t = temperature
    log_p_teacher = F.log_softmax(teacher_logprobs.detach().float() / t, dim=-1)
    log_p_student = F.log_softmax(student / t, dim=-1).gather(-1, indices.to(student.device))
    return _mean_kl(log_p_teacher, log_p_student, t)


def _mean_kl(log_p_teacher: torch.Tensor, log_p_student: torch.Tensor, t: float) -> torch.Tensor:
    """Mean over positions of sum_i p_teacher(i) (log p_teacher(i) - log p_student(i)), scaled by T^2."""
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return kl.mean() * t * t
