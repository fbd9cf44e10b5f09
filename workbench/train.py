"""Train one spec briefly under Accelerate and produce its run record.

The loop keeps everything that is not forward, backward or the optimizer step off the hot path:
batches are gathered from an in-memory token stream with one indexing op, losses stay on the
device and are read only every `SYNC_EVERY` steps, and evaluation windows are built once.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save_model

from workbench import accounting
from workbench.data import DataError, eval_documents, load_corpus
from workbench.model import build_model, lm_loss
from workbench.record import (TOKENIZER_FILE, WEIGHTS_FILE, EvalPoint, RunRecord, TokenizerStats,
                              append_metrics, write_record, write_spec)
from workbench.spec import ScheduleSpec, Spec
from workbench.tokenizer import TextTokenizer, cached_stream, get_tokenizer, token_stream, tokenizer_stats

SYNC_EVERY = 10          # steps between reads of the loss (each read waits for the device)
EVALS_PER_RUN = 5


class Pruned(Exception):
    """Raised by an on_eval callback to stop a run early; the run is recorded as pruned."""


@dataclass
class Prepared:
    """Everything a run needs from the corpus, built once (and cached on disk) per spec."""

    tokenizer: TextTokenizer
    train: torch.Tensor          # (n,) int32 token stream of the training documents
    eval_x: torch.Tensor         # (W, T) evaluation windows, int64
    eval_y: torch.Tensor         # (W, T) targets; -1 marks padding
    eval_bytes: int
    stats: TokenizerStats
    entropy_bpb: float | None


def prepare(spec: Spec) -> Prepared:
    corpus = load_corpus(spec.data)
    tok = get_tokenizer(spec.tokenizer, corpus)
    stream = cached_stream(tok, corpus.train, f"{corpus.fingerprint[:16]}-train")
    docs = eval_documents(corpus, spec.train.eval_bytes)
    x, y = eval_windows(token_stream(tok, docs), spec.model.context)
    stats = tokenizer_stats(tok, docs)
    stats = TokenizerStats(kind=tok.kind, vocab_size=tok.vocab_size, bytes_per_token=stats["bytes_per_token"],
                           roundtrip_rate=stats["roundtrip_rate"], unk_rate=stats["unk_rate"])
    return Prepared(tok, torch.from_numpy(stream.astype(np.int32)), x, y,
                    sum(len(d.encode()) for d in docs), stats, corpus.entropy_bits_per_byte)


def eval_windows(stream: np.ndarray, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut [eos, doc, eos, doc, ..., eos] into non-overlapping windows so every token after the
    first is predicted exactly once; the last window is padded with ignored targets."""
    s = torch.from_numpy(stream.astype(np.int64))
    n = len(s) - 1
    W = -(-n // T)
    x = torch.zeros(W * T, dtype=torch.int64)
    y = torch.full((W * T,), -1, dtype=torch.int64)
    x[:n], y[:n] = s[:-1], s[1:]
    return x.view(W, T), y.view(W, T)


class Batches:
    """Random windows of the training stream (nanoGPT style), reproducible from the seed."""

    def __init__(self, stream: torch.Tensor, batch: int, T: int, seed: int, device: torch.device):
        if len(stream) <= T + 1:
            raise DataError(f"the training split has {len(stream)} tokens; model.context {T} "
                            "needs more: add data or shorten the context")
        self.stream, self.batch, self.device = stream, batch, device
        self.offsets = torch.arange(T + 1)
        self.gen = torch.Generator().manual_seed(seed)
        self.pin = device.type == "cuda"

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.stream) - len(self.offsets) + 1, (self.batch, 1), generator=self.gen)
        chunk = self.stream[starts + self.offsets].long()                        # (B, T+1)
        if self.pin:
            chunk = chunk.pin_memory().to(self.device, non_blocking=True)
        return chunk[:, :-1], chunk[:, 1:]


def lr_factor(s: ScheduleSpec, progress: float) -> float:
    """Multiplier of the peak learning rate after `progress` (0..1] of the budget."""
    if s.warmup and progress < s.warmup:
        return progress / s.warmup
    if s.kind == "constant":
        return 1.0
    if s.kind == "cosine":
        t = (progress - s.warmup) / max(1e-12, 1 - s.warmup)
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    start = 1 - s.decay                                                            # wsd
    if progress <= start:
        return 1.0
    return 1 - (1 - s.min_lr_ratio) * min(1.0, (progress - start) / s.decay)


@torch.no_grad()
def evaluate(model: torch.nn.Module, p: Prepared, device: torch.device, autocast, batch: int) -> tuple[float, int]:
    """Total nats and predicted tokens over the evaluation text."""
    was_training = model.training
    model.eval()
    nats = torch.zeros((), device=device, dtype=torch.float64)
    for i in range(0, len(p.eval_x), batch):
        x, y = p.eval_x[i:i + batch].to(device), p.eval_y[i:i + batch].to(device)
        with autocast():
            logits = model(x)
        nats += lm_loss(logits, y, reduction="sum").double()
    model.train(was_training)
    return nats.item(), int((p.eval_y >= 0).sum())


def make_optimizer(model: torch.nn.Module, spec: Spec, device: torch.device) -> torch.optim.Optimizer:
    params = {id(p): p for p in model.parameters()}.values()           # tied weights once
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": spec.train.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    t = spec.train
    return torch.optim.AdamW(groups, lr=t.lr, betas=t.betas, fused=device.type in ("cuda", "cpu"))


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


def train_step(model, optimizer, batches: Batches, accum: int, accelerator: Accelerator,
               grad_clip: float | None, clock: Clock = NO_CLOCK) -> torch.Tensor:
    """One optimizer step over `accum` micro-batches; returns the mean loss, still on device."""
    step_loss = None
    for micro in range(accum):
        with clock("data"):
            x, y = next(batches)
        with accelerator.no_sync(model) if micro < accum - 1 else nullcontext():
            with clock("forward"):
                loss = lm_loss(model(x), y)
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


def make_engine(spec: Spec) -> Engine:
    """Seed, then build the model and optimizer on this machine's device under Accelerate."""
    set_seed(spec.train.seed)
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=mixed_precision(spec, cuda), cpu=not cuda)
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


class _Progress:
    """A rich progress bar (tokens, loss, tokens/s, ETA), or nothing."""

    def __init__(self, enabled: bool, name: str, total_tokens: int | None):
        self.bar = None
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed:,.0f}/{task.total:,.0f} tok"),
                            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task(name, total=total_tokens or 1, loss="-", rate="-")
        self.bar.start()

    def update(self, tokens: int, loss: float, rate: float, total: int | None = None) -> None:
        if self.bar:
            self.bar.update(self.task, completed=tokens, loss=f"{loss:.3f}", rate=f"{rate:,.0f}",
                            **({"total": total} if total else {}))

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def train(spec: Spec, run_dir: Path | None = None, *, progress: bool = False,
          on_eval: Callable[[EvalPoint], None] | None = None) -> RunRecord:
    """Train `spec` from scratch and return its record; with run_dir, also write the run folder
    (spec.yaml, metrics.jsonl, record.json, tokenizer.json, model.safetensors).

    A NaN or Inf loss ends the run as `diverged`; an on_eval callback raising Pruned ends it as
    `pruned`. Both still return (and write) a record.
    """
    wall_start = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t = spec.train
    prep = prepare(spec)
    if prep.tokenizer.vocab_size > spec.tokenizer.size:
        raise AssertionError(f"tokenizer has {prep.tokenizer.vocab_size} tokens; the model is built for {spec.tokenizer.size}")
    engine = make_engine(spec)
    accelerator, model, net, optimizer, cuda = (engine.accelerator, engine.model, engine.net,
                                                engine.optimizer, engine.cuda)
    device = engine.device
    T = spec.model.context
    accum = t.batch_tokens // t.micro_tokens
    batches = Batches(prep.train, t.micro_tokens // T, T, t.seed, device)
    fpt = accounting.flops_per_token(spec)
    planned = accounting.budget_tokens(spec)
    total_steps = planned // t.batch_tokens if planned else None
    eval_every = t.eval_every or max(1, (total_steps or 100) // EVALS_PER_RUN)
    peak_flops = accounting.matmul_peak(device, torch.bfloat16 if cuda else torch.float32)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_spec(run_dir, spec)
        prep.tokenizer.save(run_dir / TOKENIZER_FILE)
    setup_s = time.perf_counter() - wall_start

    bar = _Progress(progress, spec.name, planned)
    curve: list[EvalPoint] = []
    status, reason = "completed", None
    step, train_s, eval_s, compile_s = 0, 0.0, 0.0, None
    timed_tokens, timed_s = 0, 0.0
    last_loss, pending = float("nan"), []
    lr = t.lr

    def eval_point(train_loss: float) -> EvalPoint:
        nonlocal eval_s
        start = time.perf_counter()
        nats, n = evaluate(model, prep, device, accelerator.autocast, max(1, t.micro_tokens // T))
        eval_s += time.perf_counter() - start
        point = EvalPoint(step=step, tokens=step * t.batch_tokens, elapsed_s=train_s, lr=lr,
                          train_loss=train_loss, val_loss=nats / n,
                          val_bpb=nats / (math.log(2) * prep.eval_bytes))
        curve.append(point)
        if run_dir is not None:
            append_metrics(run_dir, {"kind": "eval", **point.model_dump()})
        return point

    try:
        model.train()
        while True:
            if total_steps is not None and step >= total_steps:
                break
            if t.budget.seconds is not None and train_s >= t.budget.seconds:
                break
            progress_after = (step + 1) / total_steps if total_steps else train_s / t.budget.seconds
            lr = t.lr * lr_factor(t.schedule, min(1.0, max(progress_after, 1e-3)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_start = time.perf_counter()
            step_loss = train_step(model, optimizer, batches, accum, accelerator, t.grad_clip)
            pending.append(step_loss)
            step += 1
            if cuda and (step % SYNC_EVERY == 0 or step == 1):
                torch.cuda.synchronize()
            step_time = time.perf_counter() - step_start
            train_s += step_time
            if step == 1:
                compile_s = step_time if t.compile else None
            else:
                timed_tokens += t.batch_tokens
                timed_s += step_time
            due_eval = step % eval_every == 0 or step == total_steps
            if step % SYNC_EVERY == 0 or due_eval or step == 1:
                losses = torch.stack(pending).tolist()
                pending.clear()
                last_loss = losses[-1]
                bad = next((v for v in losses if not math.isfinite(v)), None)
                if bad is not None:
                    status, reason = "diverged", f"training loss became {bad} by step {step}"
                    break
                rate = timed_tokens / timed_s if timed_s else step * t.batch_tokens / train_s
                if t.budget.seconds is not None:
                    planned = int(rate * t.budget.seconds)
                bar.update(step * t.batch_tokens, last_loss, rate, planned)
                if run_dir is not None:
                    append_metrics(run_dir, {"kind": "train", "step": step, "tokens": step * t.batch_tokens,
                                             "loss": last_loss, "lr": lr, "elapsed_s": train_s})
            if due_eval:
                point = eval_point(last_loss)
                if not math.isfinite(point.val_loss):
                    status, reason = "diverged", f"validation loss became {point.val_loss} at step {step}"
                    break
                if on_eval:
                    on_eval(point)
        if status == "completed" and (not curve or curve[-1].step != step):
            eval_point(last_loss)
    except Pruned as e:
        status, reason = "pruned", str(e) or f"pruned at step {step}"
    finally:
        bar.close()

    tokens = step * t.batch_tokens
    final = curve[-1] if curve and status == "completed" else None
    rate = timed_tokens / timed_s if timed_s else (tokens / train_s if train_s else None)
    mem, mem_kind = peak_memory(device)
    finite_bpb = [p.val_bpb for p in curve if math.isfinite(p.val_bpb)]
    record = RunRecord(
        name=spec.name, spec_digest=spec.digest(), status=status, reason=reason,
        started_at=started_at, device=_device_name(device), precision=accelerator.mixed_precision,
        params=asdict(accounting.count_params(spec)), flops_per_token=fpt, tokens=tokens, steps=step,
        compute=accounting.compute(spec, tokens),
        train_loss=last_loss if math.isfinite(last_loss) else None,
        val_loss=final.val_loss if final else None,
        val_ppl=math.exp(final.val_loss) if final else None,
        val_bpb=final.val_bpb if final else None,
        best_val_bpb=min(finite_bpb) if finite_bpb else None,
        eval_bytes=prep.eval_bytes, eval_tokens=int((prep.eval_y >= 0).sum()),
        entropy_bpb=prep.entropy_bpb, tokens_per_s=rate,
        mfu=rate * fpt["6N+attn"] / peak_flops if rate else None, peak_flops=peak_flops,
        peak_memory_bytes=mem, peak_memory_kind=mem_kind,
        wall_s=time.perf_counter() - wall_start, setup_s=setup_s, train_s=train_s, eval_s=eval_s,
        compile_s=compile_s, tokenizer=prep.stats, curve=curve)
    if run_dir is not None:
        if status != "diverged":
            save_model(accelerator.unwrap_model(net), str(run_dir / WEIGHTS_FILE))
        write_record(run_dir, record)
    return record


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
