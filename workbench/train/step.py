"""One optimizer step and what it runs on: the Accelerate engine (model, optimizer, precision),
the learning-rate schedule, and a clock for `workbench bench` that times each part of a step.

The step keeps everything that is not forward, backward or the optimizer step off the hot path:
losses stay on the device and are read by the caller only now and then.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, set_seed

from workbench import accounting
from workbench.data.batches import Batches
from workbench.model.gpt import build_model, lm_loss
from workbench.spec import ScheduleSpec, Spec


def lr_factor(s: ScheduleSpec, progress: float, warmup: float | None = None) -> float:
    """Multiplier of the peak learning rate after `progress` (0..1] of the budget; `warmup`
    replaces the schedule's warmup fraction (a branch keeps the whole run's warmup steps)."""
    warmup = s.warmup if warmup is None else warmup
    if warmup and progress < warmup:
        return progress / warmup
    if s.kind == "constant":
        return 1.0
    if s.kind == "cosine":
        t = (progress - warmup) / max(1e-12, 1 - warmup)
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    start = 1 - s.decay                                                            # wsd
    if progress <= start:
        return 1.0
    t = min(1.0, (progress - start) / s.decay)
    return 1 - (1 - s.min_lr_ratio) * (math.sqrt(t) if s.shape == "1-sqrt" else t)


def make_optimizer(model: torch.nn.Module, spec: Spec, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over matrices (decayed) and vectors (not decayed), one group per learning-rate
    multiple the model's parametrisation asks for. Each group keeps its `lr_scale` (the loop's
    schedule sets lr = train.lr x factor x lr_scale) and whether it `decays` (fine-tuning resets
    those groups' weight decay)."""
    t = spec.train
    rule = model.parametrization
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():                       # tied weights once
        groups.setdefault((p.dim() >= 2, rule.lr_scale(name, p)), []).append(p)
    # Matrices first, then vectors: under standard these are the two groups there always were.
    order = sorted(groups, key=lambda key: (not key[0], -key[1]))
    return torch.optim.AdamW(
        [{"params": groups[decays, scale], "weight_decay": t.weight_decay if decays else 0.0,
          "lr": t.lr * scale, "lr_scale": scale, "decays": decays} for decays, scale in order],
        lr=t.lr, betas=t.betas, fused=device.type in ("cuda", "cpu"))


class Clock:
    """Seconds spent per phase of a step, for `workbench bench`; the loop in `train` uses the
    disabled clock, whose phases cost one shared null context each."""

    def __init__(self, enabled: bool = False, cuda: bool = False):
        self.enabled, self.cuda = enabled, cuda
        self.seconds: dict[str, float] = {}
        self._null = nullcontext()

    def __call__(self, phase: str):
        return self._timed(phase) if self.enabled else self._null

    @contextmanager
    def _timed(self, phase: str):
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


NO_CLOCK = Clock()


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, count: int | None = None, world: int = 1) -> torch.Tensor:
    """Mean nats over the targets that count (responses); 0 for a micro-batch with none. Under
    data parallelism `count` is the whole micro-batch's (all ranks) and the share is scaled by
    `world`, so the ranks' average (what DDP applies) is the one-device mean."""
    count = int((targets >= 0).sum()) if count is None else count
    return lm_loss(logits, targets, reduction="sum") * (world / max(count, 1))


def train_step(model, optimizer, batches: Batches, accum: int, accelerator: Accelerator,
               grad_clip: float | None, clock: Clock = NO_CLOCK) -> torch.Tensor:
    """One optimizer step over `accum` micro-batches; returns the mean loss, still on device."""
    if batches.mask is None:
        loss_of = lm_loss
    else:
        def loss_of(logits, y):
            return masked_loss(logits, y, batches.targets, batches.world)
    step_loss = None
    for micro in range(accum):
        with clock("data"):
            x, y = next(batches)
        with accelerator.no_sync(model) if micro < accum - 1 else nullcontext():
            with clock("forward"):
                loss = loss_of(model(x), y)
            with clock("backward"):
                accelerator.backward(loss / accum)
        step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
    with clock("optimizer"):
        if grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step_loss / accum


@dataclass
class Engine:
    """The prepared model and optimizer of one run; `model` is `net` compiled when asked."""

    accelerator: Accelerator
    net: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    cuda: bool

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the matmuls run in, read from a probe matmul under the run's autocast:
        asking for fp16 on a CPU leaves the matmuls in fp32 (Accelerate autocasts only bf16
        there), and a peak timed in fp16 would then put MFU above 1."""
        with self.accelerator.autocast():
            probe = torch.nn.functional.linear(torch.ones(1, 8, device=self.device), torch.ones(8, 8, device=self.device))
        return probe.dtype

    def peak_flops(self) -> float:
        """The measured matmul peak of this device in the run's own compute dtype: the ceiling
        MFU divides by (a bf16 run measured against an fp32 peak could exceed 100%)."""
        return accounting.matmul_peak(self.device, self.compute_dtype)


def make_engine(spec: Spec) -> Engine:
    """Seed, then build the model and optimizer on this machine's device under Accelerate."""
    set_seed(spec.train.seed)
    cuda = torch.cuda.is_available()
    # Collectives wait up to an hour (NCCL's default is 10 minutes): a rank may be scoring or
    # sampling while the others wait, and the verdict on an evaluation may come slowly.
    accelerator = Accelerator(mixed_precision=mixed_precision(spec, cuda), cpu=not cuda,
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=1))])
    net = build_model(spec)
    optimizer = make_optimizer(net, spec, accelerator.device)
    net, optimizer = accelerator.prepare(net, optimizer)
    model = torch.compile(net) if spec.train.compile else net
    return Engine(accelerator, net, model, optimizer, cuda)


def mixed_precision(spec: Spec, cuda: bool) -> str:
    choice = spec.train.precision
    if choice == "auto":
        return "bf16" if cuda else "no"
    return "no" if choice == "fp32" else choice


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "process_max_rss"
