"""The training loop: only the projector learns; the loss covers the caption tokens and <|im_end|>.

Each optimizer step takes one global batch (batch size x grad-accum x processes) from a seeded
permutation of the training samples, so the step number alone fixes the data order and the
position in it. The loss is the summed cross-entropy of every label token in the global batch
divided by their count, whatever the micro-batch boundaries (normalising per micro-batch would
weight short and long captions unequally). AdamW, linear warmup then cosine decay, gradients
clipped to norm 1.0, as LLaVA-1.5 stage 1 and Prismatic's align stage.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from vlmkit.backends.sequence import (
    IGNORE_INDEX,
    VISUAL_PLACEHOLDER,
    answer_ids,
    embed_rows,
    expand_placeholder,
    prompt_ids,
)
from vlmkit.training.data import Sample, Skipped
from vlmkit.training.distributed import Distributed
from vlmkit.training.features import FeatureSource, SampleError
from vlmkit.training.options import TrainOptions
from vlmkit.training.run_folder import RunFolder, replace_atomic, write_atomic

MAX_GRAD_NORM = 1.0
SAMPLE_TOKENS = 48  # new tokens per validation caption


@dataclass(frozen=True)
class BatchPlan:
    batch_size: int
    grad_accum: int
    world: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    @classmethod
    def make(cls, options: TrainOptions, train_samples: int, world: int) -> BatchPlan:
        """Global batch 256 where the data allows (never more than the training samples)."""
        batch = max(1, min(options.batch_size, -(-train_samples // world)))
        accum = options.grad_accum or max(1, min(256, train_samples) // (batch * world))
        per_epoch = -(-train_samples // (batch * accum * world))
        total = options.max_steps or options.epochs * per_epoch
        return cls(batch, accum, world, per_epoch, total, math.ceil(options.warmup * total))

    def learning_rate(self, step: int, peak: float) -> float:
        """The rate for 0-based `step`: linear warmup, then cosine decay to 0."""
        if step < self.warmup_steps:
            return peak * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return peak * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    elapsed: float = 0.0  # seconds of training, over all sessions
    samples_seen: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    last_loss: float | None = None
    last_val_loss: float | None = None


def training_inputs(llm, tokenizer, prompt: list[int], visual: list[torch.Tensor],
                    answers: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded embeddings [B, L, H], mask [B, L] and labels [B, L] for (visual tokens, answer) pairs.

    The prompt part of each row is exactly what `caption` builds (`ComposedBackend._splice`): the same
    token ids from `sequence.prompt_ids`, the same splice in `sequence.embed_rows`.
    """
    placeholder_id = tokenizer.convert_tokens_to_ids(VISUAL_PLACEHOLDER)
    rows, labels = [], []
    for v, answer in zip(visual, answers):
        expanded = expand_placeholder(prompt, placeholder_id, len(v))
        rows.append(expanded + answer)
        labels.append([IGNORE_INDEX] * len(expanded) + answer)
    embeds, mask = embed_rows(llm, rows, visual, placeholder_id, tokenizer.pad_token_id, padding_side="right")
    width = embeds.shape[1]
    target = torch.tensor([row + [IGNORE_INDEX] * (width - len(row)) for row in labels], device=embeds.device)
    return embeds, mask, target


class Trainer:
    def __init__(self, *, llm, tokenizer, encoder, projector: torch.nn.Module, features: FeatureSource,
                 train: list[Sample], val: list[Sample], options: TrainOptions, plan: BatchPlan,
                 dist: Distributed, folder: RunFolder, dtype: torch.dtype, device: str, keys: dict, info,
                 on_step: Callable[[dict], None] = lambda m: None, stop: threading.Event | None = None) -> None:
        self.llm, self.tokenizer, self.encoder, self.features = llm, tokenizer, encoder, features
        self.projector = projector  # float32, possibly wrapped in DistributedDataParallel
        self.train_samples, self.val_samples, self.options, self.plan = train, val, options, plan
        self.dist, self.folder, self.dtype, self.device, self.keys = dist, folder, dtype, device, keys
        self.on_step, self.stop = on_step, stop or threading.Event()
        self.projector_info = info  # the ProjectorInfo written into projector.safetensors' metadata
        self.prompt = prompt_ids(tokenizer, options.prompt)
        self.answers: dict[str, list[int]] = {}
        self.optimizer = torch.optim.AdamW(self.params, lr=options.lr, weight_decay=options.weight_decay)
        self.state = LoopState()
        self.bad: set[str] = set()
        self._sequence_tokens = 0

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return list(self.projector.parameters())

    @property
    def module(self) -> torch.nn.Module:
        return getattr(self.projector, "module", self.projector)

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> LoopState:
        """Train to the last step, saving every --save-every steps; returns early (saved) once `stop` is set."""
        if self.state.step < self.plan.total_steps and self._stop_requested():  # Ctrl-C while loading
            self.save()
            return self.state
        while self.state.step < self.plan.total_steps:
            started = time.perf_counter()
            metrics = self._step(self.state.step)
            metrics["step_s"] = time.perf_counter() - started
            self.state.elapsed += metrics["step_s"]
            self.state.step += 1
            last = self.state.step == self.plan.total_steps
            if self.state.step % self.options.eval_every == 0 or last:
                metrics |= self._evaluate()
            stopping = self._stop_requested()
            self._log(metrics)
            if self.state.step % self.options.save_every == 0 or last or stopping:
                self.save()
            if stopping and not last:
                break
        return self.state

    def _step(self, step: int) -> dict:
        share = self._share(step)
        good = self._load(share)
        tokens = self._all_reduce(float(sum(len(self._answer(s)) for s, _ in good)))
        lr = self.plan.learning_rate(step, self.options.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        micro = [good[i:i + self.plan.batch_size] for i in range(0, len(good), self.plan.batch_size)]
        loss_sum, self._sequence_tokens, grad_norm = 0.0, 0, None
        if tokens:
            scale = self.dist.world / tokens  # DDP averages gradients over processes: undo it, then normalise
            if not micro and self.dist.world > 1:
                self._join_gradient_sync()
            for index, batch in enumerate(micro):
                syncing = index == len(micro) - 1 or self.dist.world == 1
                with nullcontext() if syncing else self.projector.no_sync():
                    nll = self._nll(batch)
                    (nll * scale).backward()
                loss_sum += nll.item()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM))  # before clipping
            self.optimizer.step()
        loss_sum = self._all_reduce(loss_sum)
        seen = int(self._all_reduce(float(len(good))))
        sequence_tokens = int(self._all_reduce(float(self._sequence_tokens)))
        self.state.samples_seen += seen
        self.state.last_loss = loss_sum / tokens if tokens else None
        return {"step": step + 1, "epoch": step // self.plan.steps_per_epoch + 1, "loss": self.state.last_loss,
                "lr": lr, "grad_norm": grad_norm, "samples": seen, "tokens": int(tokens),
                "sequence_tokens": sequence_tokens}

    def _share(self, step: int) -> list[Sample]:
        """This process's part of the global batch of `step`: from the epoch's seeded permutation."""
        epoch, within = divmod(step, self.plan.steps_per_epoch)
        order = torch.randperm(len(self.train_samples),
                               generator=torch.Generator().manual_seed(self.options.seed * 100_003 + epoch))
        size = self.plan.global_batch
        batch = order[within * size:(within + 1) * size].tolist()
        return [self.train_samples[i] for i in batch[self.dist.rank::self.dist.world]]

    def _load(self, samples: list[Sample]) -> list[tuple[Sample, torch.Tensor]]:
        good = []
        for sample in samples:
            if sample.key in self.bad:
                continue
            try:
                good.append((sample, self.features(sample)))
            except SampleError as exc:  # skipped, counted, reported; the run goes on
                self.bad.add(sample.key)
                self.state.skipped.append(Skipped(sample.key, str(exc)))
        return good

    def _answer(self, sample: Sample) -> list[int]:
        if sample.key not in self.answers:
            self.answers[sample.key] = answer_ids(self.tokenizer, sample.caption)
        return self.answers[sample.key]

    def _nll(self, batch: list[tuple[Sample, torch.Tensor]]) -> torch.Tensor:
        """Summed cross-entropy of the label tokens of one micro-batch (float32 scalar)."""
        flat = [f.flatten(0, 1) for _, f in batch]  # [T*N, D] each
        projected = self.projector(torch.cat(flat).to(self.device))  # one forward for DDP: [sum T*N, H]
        visual = list(projected.split([len(f) for f in flat]))
        with self._autocast():
            embeds, mask, target = training_inputs(self.llm, self.tokenizer, self.prompt, visual,
                                                   [self._answer(s) for s, _ in batch])
            self._sequence_tokens += int(mask.sum())
            hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, use_cache=False)[0]
            wanted = target[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
            logits = self.llm.get_output_embeddings()(hidden[:, :-1][wanted])  # caption positions only
        return torch.nn.functional.cross_entropy(logits.float(), target[:, 1:][wanted], reduction="sum")

    def _autocast(self):
        if self.device.startswith("cuda") and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return nullcontext()

    def _join_gradient_sync(self) -> None:
        """A process with no sample in this step still joins DDP's gradient all-reduce, with zeros."""
        dim = self.module.linear_1.in_features
        (self.projector(torch.zeros(1, dim, device=self.device)).sum() * 0).backward()

    def _all_reduce(self, value: float) -> float:
        if self.dist.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.dist.reduce_device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item())

    def _stop_requested(self) -> bool:
        return bool(self._all_reduce(float(self.stop.is_set()))) if self.dist.world > 1 else self.stop.is_set()

    # --- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self) -> dict:
        samples = self.val_samples[self.dist.rank::self.dist.world]
        good = self._load(samples)
        nll = sum(self._nll(good[i:i + self.plan.batch_size]).item() for i in range(0, len(good), self.plan.batch_size))
        tokens = self._all_reduce(float(sum(len(self._answer(s)) for s, _ in good)))
        nll = self._all_reduce(nll)
        if not tokens:
            return {}
        self.state.last_val_loss = nll / tokens
        if self.dist.rank == 0 and self.options.sample_count:
            self._write_samples()
        return {"val_loss": self.state.last_val_loss}

    def _write_samples(self) -> None:
        from vlmkit.backends.base import GenerationSettings
        from vlmkit.backends.composed import ComposedBackend

        chosen = [(s, f) for s, f in self._load(self.val_samples[:self.options.sample_count])]
        if not chosen:
            return
        backend = ComposedBackend(self.encoder, self.module, self.llm, self.tokenizer, keys=self.keys,
                                  dtype=self.dtype, device=self.device)
        was_training = self.llm.training
        self.llm.eval()
        try:
            captions = backend.generate_from_features([f for _, f in chosen], self.options.prompt,
                                                      GenerationSettings(max_new_tokens=SAMPLE_TOKENS))
        finally:
            self.llm.train(was_training)
        lines = [json.dumps({"video": s.key, "caption": c.text, "reference": s.caption}, ensure_ascii=False) + "\n"
                 for (s, _), c in zip(chosen, captions)]
        write_atomic(self.folder.samples / f"step-{self.state.step}.jsonl", "".join(lines))

    # --- saving and resuming ---------------------------------------------------------------------

    def _log(self, metrics: dict) -> None:
        seconds = max(metrics.pop("step_s"), 1e-9)
        metrics |= {"samples_per_s": round(metrics["samples"] / seconds, 3),
                    "tokens_per_s": round(metrics.pop("sequence_tokens") / seconds, 1)}
        if self.dist.rank == 0:
            with open(self.folder.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
        self.on_step(metrics | {"total_steps": self.plan.total_steps})

    def save(self) -> None:
        """Rank 0 writes resume/state.pt, then projector.safetensors, each atomically."""
        if self.dist.rank == 0:
            state = {
                "step": self.state.step, "elapsed": self.state.elapsed, "samples_seen": self.state.samples_seen,
                "skipped": [(s.where, s.reason) for s in self.state.skipped], "bad": sorted(self.bad),
                "last_loss": self.state.last_loss, "last_val_loss": self.state.last_val_loss,
                "projector": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            }
            replace_atomic(self.folder.state, lambda path: torch.save(state, path))
            self.save_projector()
        if self.dist.world > 1:
            torch.distributed.barrier()

    def save_projector(self) -> None:
        from vlmkit.projector import save_projector

        replace_atomic(self.folder.projector, lambda path: save_projector(self.module, self.projector_info, path))

    def resume(self) -> None:
        state = torch.load(self.folder.state, map_location="cpu", weights_only=False)
        self.module.load_state_dict(state["projector"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = LoopState(step=state["step"], elapsed=state["elapsed"], samples_seen=state["samples_seen"],
                               skipped=[Skipped(*s) for s in state["skipped"]], last_loss=state["last_loss"],
                               last_val_loss=state["last_val_loss"])
        self.bad = set(state["bad"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if self.dist.rank == 0:
            self.folder.keep_metrics_until(self.state.step)
