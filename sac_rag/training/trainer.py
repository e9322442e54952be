"""The training loop: AdamW with warmup and cosine decay, gradient accumulation and clipping, periodic
held-out evaluation, checkpoints that resume the exact same trajectory, a JSONL log and a loss plot."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sac_rag.compression.lora import READER_NAME
from sac_rag.io import atomic_write_dir
from sac_rag.qa.datasets import QAExample
from sac_rag.training.config import TrainConfig
from sac_rag.training.data import QAPool, TextPool
from sac_rag.training.metrics import MetricsLog, em_f1
from sac_rag.training.state import MODEL_DIR, TrainerState, load_optimizer, save_optimizer
from sac_rag.training.tasks import Task

CHECKPOINT_DIR = "checkpoint"
FINAL_DIR = "final"
METRICS_FILE = "metrics.jsonl"
EMBEDDING_NAMES = ("role_tokens", "special_tokens")


@dataclass
class TrainResult:
    state: TrainerState
    final_dir: Path | None  # None when the run stopped early (interrupted)


class Interrupted(RuntimeError):
    """Raised by the ``interrupt_after`` test hook, standing for a killed process."""


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params: dict[str, torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with up to three groups: the compressor's LoRA at ``lr``, the SAC embeddings at
    ``embedding_lr``, the reader's LoRA at ``reader_lr`` (all on the same schedule)."""
    for p in params.values():
        p.requires_grad_(True)
    reader = [p for n, p in params.items() if f".{READER_NAME}." in n]
    emb = [p for n, p in params.items() if n in EMBEDDING_NAMES]
    lora = [p for n, p in params.items() if n not in EMBEDDING_NAMES and f".{READER_NAME}." not in n]
    groups = [{"params": lora, "lr": cfg.lr, "base_lr": cfg.lr}]
    if emb:
        groups.append({"params": emb, "lr": cfg.embedding_lr, "base_lr": cfg.embedding_lr})
    if reader:
        groups.append({"params": reader, "lr": cfg.reader_lr, "base_lr": cfg.reader_lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), eps=1e-8)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def unrelated_samples(samples: list) -> list[QAExample]:
    """Each QA sample with the passages of the next one (none of them its context), for the memory check."""
    qa = [s for s in samples if isinstance(s, QAExample)]
    if len(qa) < 2:
        return []
    return [
        dataclasses.replace(s, passages=other.prompt_passages)
        for s, other in zip(qa, qa[1:] + qa[:1])
        if not set(other.prompt_passages) & set(s.prompt_passages)
    ]


class Trainer:
    """Runs ``cfg.steps`` optimizer steps of ``task`` on samples drawn from ``pool``."""

    def __init__(self, cfg: TrainConfig, task: Task, pool: QAPool | TextPool, device: torch.device) -> None:
        self.cfg, self.task, self.pool, self.device = cfg, task, pool, device
        self.out = Path(cfg.output_dir)
        self.params = task.parameters()
        self.optimizer = make_optimizer(self.params, cfg)
        self.eval_samples = pool.eval_samples()

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, state: TrainerState) -> None:
        def write(tmp: Path) -> None:
            self.task.save(tmp / MODEL_DIR)
            save_optimizer(self.optimizer, tmp)
            state.save(tmp)

        atomic_write_dir(self.out / CHECKPOINT_DIR, write)

    def _resume(self) -> TrainerState | None:
        ckpt = self.out / CHECKPOINT_DIR
        if not (ckpt / "trainer_state.json").is_file():
            return None
        self.task.load(ckpt / MODEL_DIR)
        load_optimizer(self.optimizer, ckpt)
        return TrainerState.load(ckpt)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean held-out cross-entropy (and greedy EM/F1 on the first ``eval_generate`` QA samples).

        For a SAC compressor on QA, also the cross-entropy with each question's passages swapped for
        the next held-out question's (``eval_loss_unrelated``): how much the memories actually inform
        the answer is the gap between the two (``memory_information``, nats per answer token).
        """
        out: dict[str, float] = {}
        if self.eval_samples:
            with _autocast(self.cfg, self.device):
                ces = [self.task.loss(s)[1]["ce"] for s in self.eval_samples]
            out["eval_loss"] = sum(ces) / len(ces)
        unrelated = unrelated_samples(self.eval_samples) if self.cfg.task == "sac" else []
        if unrelated:
            with _autocast(self.cfg, self.device):
                ces = [self.task.loss(s)[1]["ce"] for s in unrelated]
            out["eval_loss_unrelated"] = sum(ces) / len(ces)
            out["memory_information"] = out["eval_loss_unrelated"] - out["eval_loss"]
        qa = [s for s in self.eval_samples if isinstance(s, QAExample)][: self.cfg.eval_generate]
        if qa:
            scores = [em_f1(self.task.answer(s), s.answers) for s in qa]
            out["eval_em"] = 100 * sum(e for e, _ in scores) / len(scores)
            out["eval_f1"] = 100 * sum(f for _, f in scores) / len(scores)
            out["eval_generated"] = len(qa)
        return out

    def _log_eval(self, log: MetricsLog, state: TrainerState) -> str:
        """Evaluate, log and remember the result; return it as one line of text."""
        ev = self.evaluate()
        if not ev:
            return ""
        ev.update(kind="eval", step=state.step, elapsed_s=state.elapsed_s)
        log.write(ev)
        state.history.append(ev)
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ev.items())

    # ------------------------------------------------------------------ loop
    def _step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(step, cfg)
        totals: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            sample = self.pool.sample(step * cfg.grad_accum + micro)
            with _autocast(cfg, self.device):
                loss, parts = self.task.loss(sample)
            (loss / cfg.grad_accum).backward()
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v / cfg.grad_accum
        norm = torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals["grad_norm"] = float(norm)
        totals["lr"] = self.optimizer.param_groups[0]["lr"]
        return totals

    def run(self, interrupt_after: int | None = None, checkpoint_every: int | None = None) -> TrainResult:
        """Train (resuming from ``output_dir/checkpoint`` when present).

        ``checkpoint_every`` adds step-based checkpoints to the time-based ones; ``interrupt_after``
        (tests) raises :class:`Interrupted` after that many steps of this process, like a kill.
        """
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._resume()
        resumed = state is not None
        state = state or TrainerState()
        log = MetricsLog(self.out / METRICS_FILE, resume_step=state.step if resumed else None)
        if resumed:
            log.write({"kind": "resume", "step": state.step, "elapsed_s": state.elapsed_s})
        else:
            cfg.save(self.out)
            self._log_eval(log, state)  # the starting point of the curve
        start, last_ckpt, done_here = time.monotonic(), time.monotonic(), 0
        base_elapsed = state.elapsed_s
        bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {cfg.task}/{cfg.stage}", unit="step")
        stopped_early = False
        while state.step < cfg.steps:
            record = self._step(state.step)
            state.step += 1
            state.examples += cfg.grad_accum
            state.elapsed_s = base_elapsed + time.monotonic() - start
            log.write(
                {
                    "kind": "train",
                    "step": state.step,
                    "examples": state.examples,
                    "elapsed_s": state.elapsed_s,
                    **record,
                }
            )
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            done_here += 1
            out_of_time = cfg.max_minutes is not None and state.elapsed_s >= 60 * cfg.max_minutes
            if state.step % cfg.eval_every == 0 or state.step == cfg.steps or out_of_time:
                line = self._log_eval(log, state)
                if line:
                    bar.write(line)
            due = time.monotonic() - last_ckpt >= 60 * cfg.checkpoint_minutes
            due = due or (checkpoint_every is not None and state.step % checkpoint_every == 0)
            if due or out_of_time:
                self._save_checkpoint(state)
                last_ckpt = time.monotonic()
            if interrupt_after is not None and done_here >= interrupt_after:
                bar.close()
                raise Interrupted(f"interrupted after step {state.step}")
            if out_of_time:
                stopped_early = True
                break
        bar.close()
        self._save_checkpoint(state)
        final = self.out / FINAL_DIR
        self.task.save(final)
        log.write({"kind": "final", "step": state.step, "elapsed_s": state.elapsed_s, "stopped_by_time": stopped_early})
        self._plot()
        return TrainResult(state, final)

    def _plot(self) -> None:
        try:
            from sac_rag.training.plots import plot_runs

            plot_runs([(f"{self.cfg.task}/{self.cfg.stage}", self.out / METRICS_FILE)], self.out / "loss.png")
        except ImportError:  # matplotlib is optional for training itself
            pass
