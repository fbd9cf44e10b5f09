"""Train one spec briefly under Accelerate and produce its run record.

The loop keeps everything that is not forward, backward or the optimizer step off the hot path:
batches are gathered from an in-memory token stream with one indexing op, losses stay on the
device and are read only every `SYNC_EVERY` steps, and evaluation windows are built once.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, set_seed
from safetensors.torch import save_model

from workbench import accounting
from workbench.data import Corpus, DataError, eval_documents, load_corpus
from workbench.model import build_model, lm_loss
from workbench.parallel import LAUNCHED, Verdicts, die_with_parent, launch
from workbench.record import (TOKENIZER_FILE, WEIGHTS_FILE, Completion, EvalPoint, EvalSuite, Metrics,
                              PhaseRecord, Pruned, RunRecord, TokenizerStats, read_run_spec, append_metrics, write_record, write_spec)
from workbench.spec import ScheduleSpec, Spec, TrainSpec
from workbench.tokenizer import (TextTokenizer, cached_stream, get_tokenizer, pair_stream, stream_key,
                                 token_stream, tokenizer_stats)

SYNC_EVERY = 10          # steps between reads of the loss (each read waits for the device)
EVALS_PER_RUN = 5


@dataclass
class Text:
    """One corpus as the model sees it: its training stream and its held-out windows."""

    train: torch.Tensor          # (n,) int32 token stream of the training documents
    mask: torch.Tensor | None    # (n,) bool: stream positions that are targets (responses); None: all
    eval_x: torch.Tensor         # (W, T) evaluation windows, int64
    eval_y: torch.Tensor         # (W, T) targets; -1 marks padding and prompt tokens
    eval_bytes: int              # UTF-8 bytes of the scored text: the bpb denominator
    eval_pairs: list[tuple[str, str]]   # held-out (prompt, response); prompt "" for plain text


@dataclass
class Prepared:
    """Everything a run needs from its corpora, built once (and cached on disk) per spec."""

    tokenizer: TextTokenizer
    stats: TokenizerStats
    entropy_bpb: float | None
    texts: dict[str, Text]       # "pretrain", and "finetune" when the spec has that phase

    @property
    def pretrain(self) -> Text:
        return self.texts["pretrain"]


def prepare(spec: Spec) -> Prepared:
    corpus = load_corpus(spec.data)
    tok = get_tokenizer(spec.tokenizer, corpus)
    T = spec.model.context
    texts = {"pretrain": _text(tok, corpus, spec.train.eval_bytes, T)}
    if spec.finetune is not None:
        ft = spec.finetune.recipe(spec.train)
        texts["finetune"] = _text(tok, load_corpus(spec.finetune.data), ft.eval_bytes, T)
    stats = tokenizer_stats(tok, [p + r for p, r in texts["pretrain"].eval_pairs])
    stats = TokenizerStats(kind=tok.kind, vocab_size=tok.vocab_size, bytes_per_token=stats["bytes_per_token"],
                           roundtrip_rate=stats["roundtrip_rate"], unk_rate=stats["unk_rate"])
    return Prepared(tok, stats, corpus.entropy_bits_per_byte, texts)


def warm_caches(spec: Spec) -> None:
    """Train (or load) the tokenizer and cache the plain-text training streams on disk: the
    costly part of `prepare`, done once before a data-parallel job's ranks each prepare."""
    corpus = load_corpus(spec.data)
    tok = get_tokenizer(spec.tokenizer, corpus)
    for c in [corpus] + ([load_corpus(spec.finetune.data)] if spec.finetune is not None else []):
        if c.train_prompts is None:
            cached_stream(tok, c.train, stream_key(c, "train"))


def _text(tok: TextTokenizer, corpus: Corpus, eval_bytes: int, T: int) -> Text:
    docs = eval_documents(corpus, eval_bytes)
    pairs = corpus.pairs(docs, corpus.val_prompts)
    if corpus.train_prompts is None:
        train = cached_stream(tok, corpus.train, stream_key(corpus, "train"))
        x, y = eval_windows(token_stream(tok, docs), T)
        return Text(torch.from_numpy(train.astype(np.int32)), None, x, y,
                    sum(len(d.encode()) for d in docs), pairs)
    train, mask = pair_stream(tok, corpus.pairs(corpus.train, corpus.train_prompts))
    stream, eval_mask = pair_stream(tok, pairs)
    x, y = eval_windows(stream, T, eval_mask)
    return Text(torch.from_numpy(train.astype(np.int32)), torch.from_numpy(mask), x, y,
                sum(len(r.encode()) for _, r in pairs), pairs)


def eval_windows(stream: np.ndarray, T: int, mask: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut [eos, doc, eos, doc, ..., eos] into non-overlapping windows so every token after the
    first is predicted exactly once; the last window is padded with ignored targets, and so are
    targets outside `mask` (prompts)."""
    s = torch.from_numpy(stream.astype(np.int64))
    n = len(s) - 1
    W = -(-n // T)
    x = torch.zeros(W * T, dtype=torch.int64)
    y = torch.full((W * T,), -1, dtype=torch.int64)
    x[:n], y[:n] = s[:-1], s[1:]
    if mask is not None:
        y[:n][~torch.from_numpy(mask[1:])] = -1
    return x.view(W, T), y.view(W, T)


class Batches:
    """Random windows of the training stream (nanoGPT style), reproducible from the seed. Under
    data parallelism every rank draws the same windows and keeps its own equal share of rows, so
    the ranks together see exactly the batch one device would."""

    def __init__(self, stream: torch.Tensor, batch: int, T: int, seed: int, device: torch.device,
                 mask: torch.Tensor | None = None, rank: int = 0, world: int = 1):
        if len(stream) <= T + 1:
            raise DataError(f"the training split has {len(stream)} tokens; model.context {T} "
                            "needs more: add data or shorten the context")
        self.stream, self.mask, self.batch, self.device, self.world = stream, mask, batch, device, world
        self.offsets = torch.arange(T + 1)
        self.rows = slice(rank * batch // world, (rank + 1) * batch // world)
        self.targets = 0        # with a mask: targets in the last micro-batch, all ranks' rows
        self.gen = torch.Generator().manual_seed(seed)
        self.pin = device.type == "cuda"

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.pin_memory().to(self.device, non_blocking=True) if self.pin else t

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.stream) - len(self.offsets) + 1, (self.batch, 1), generator=self.gen)
        idx = starts[self.rows] + self.offsets
        chunk = self.stream[idx].long()                                          # (B, T+1)
        if self.mask is None:
            chunk = self._to(chunk)
            return chunk[:, :-1], chunk[:, 1:]
        counted = self.mask[starts + self.offsets[1:]]                            # every rank's rows
        self.targets = int(counted.sum())
        y = chunk[:, 1:].masked_fill(~counted[self.rows], -1)
        return self._to(chunk[:, :-1]), self._to(y)


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
def evaluate(model: torch.nn.Module, text: Text, device: torch.device, autocast, batch: int,
             accelerator: Accelerator | None = None) -> Metrics:
    """The model on a corpus's held-out windows; under data parallelism each rank scores its
    share of the windows and the sums are added up."""
    was_training = model.training
    model.eval()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    sums = torch.zeros(2, device=device, dtype=torch.float64)                      # nats, correct
    for i in range(rank * batch, len(text.eval_x), batch * world):
        x, y = text.eval_x[i:i + batch].to(device), text.eval_y[i:i + batch].to(device)
        with autocast():
            logits = model(x)
        sums[0] += lm_loss(logits, y, reduction="sum").double()
        sums[1] += (logits.argmax(-1) == y).sum()
    if world > 1:
        sums = accelerator.reduce(sums, "sum")
    model.train(was_training)
    nats, correct = sums.tolist()
    n = int((text.eval_y >= 0).sum())
    loss = nats / n
    return Metrics(loss=loss, ppl=math.exp(min(loss, 700.0)), bpb=nats / (math.log(2) * text.eval_bytes),
                   top1=correct / n, tokens=n, bytes=text.eval_bytes)


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
    """Train `spec` from scratch (then fine-tune it, when the spec has that phase) and return
    its record; with run_dir, also write the run folder (spec.yaml, metrics.jsonl, record.json,
    tokenizer.json, model.safetensors).

    A NaN or Inf loss ends the run as `diverged`; an on_eval callback raising Pruned ends it as
    `pruned`. Both still return (and write) a record. With `train.devices` above 1 the run is an
    Accelerate data-parallel job in processes of its own (see parallel.py).
    """
    if spec.train.devices > 1 and not os.environ.get(LAUNCHED):
        warm_caches(spec)    # tokenizer and streams cached here, not while the ranks wait in a barrier
        return launch(spec, run_dir, on_eval=on_eval, progress=progress)
    return _Run(spec, run_dir, progress, on_eval).run()


class _Run:
    """One run: the phases in order, then the evaluation suite and the record."""

    def __init__(self, spec: Spec, run_dir: Path | None, progress: bool,
                 on_eval: Callable[[EvalPoint], None] | None):
        self.wall_start = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.spec, self.progress, self.on_eval = spec, progress, on_eval
        self.engine = make_engine(spec)
        acc = self.engine.accelerator
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        self.run_dir = run_dir if self.main else None           # one writer per run folder
        with acc.main_process_first():                          # tokenizer and streams cached once
            self.prep = prepare(spec)
        if self.prep.tokenizer.vocab_size > spec.tokenizer.size:
            raise AssertionError(f"tokenizer has {self.prep.tokenizer.vocab_size} tokens; "
                                 f"the model is built for {spec.tokenizer.size}")
        self.peak_flops = accounting.matmul_peak(self.device, torch.bfloat16 if self.engine.cuda else torch.float32)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_spec(self.run_dir, spec)
            self.prep.tokenizer.save(self.run_dir / TOKENIZER_FILE)
        self.setup_s = time.perf_counter() - self.wall_start
        self.status, self.reason = "completed", None
        self.curves: dict[str, list[EvalPoint]] = {"pretrain": [], "finetune": []}
        self.phases: list[PhaseRecord] = []
        self.train_s = self.eval_s = self.timed_s = 0.0
        self.timed_tokens, self.compile_s, self.last_loss, self.step = 0, None, float("nan"), 0
        if self.world > 1:         # same initial weights on every rank, but each its own dropout
            torch.manual_seed(spec.train.seed + 7919 * self.rank)

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def run(self) -> RunRecord:
        spec = self.spec
        try:
            self.phase("pretrain", spec)
            if spec.finetune is not None and self.status == "completed":
                ft = spec.finetune.recipe(spec.train)
                self.restart_optimizer(ft)
                self.phase("finetune", spec.model_copy(update={"train": ft}))
        except Pruned as e:
            self.status, self.reason = "pruned", str(e) or f"pruned at step {self.step}"
        if self.run_dir is not None and self.status != "diverged":
            save_model(self.engine.accelerator.unwrap_model(self.engine.net), str(self.run_dir / WEIGHTS_FILE))
        suite, suite_error = None, None
        if self.status == "completed":
            # The training is done and saved: a failing suite (out of memory, say) costs the suite only.
            self.engine.optimizer.state.clear()
            try:
                suite = self.suite()
            except Exception as e:
                suite_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        record = self.record(suite, suite_error)
        if self.run_dir is not None:
            write_record(self.run_dir, record)
        return record

    def restart_optimizer(self, t: TrainSpec) -> None:
        """Fine-tuning starts from the weights with fresh AdamW moments and its own decay."""
        opt = self.engine.optimizer
        opt.state.clear()
        opt.param_groups[0]["weight_decay"] = t.weight_decay        # matrices (see make_optimizer)

    def agreed(self, value: float) -> float:
        """The main process's value on every rank (ranks' clocks differ slightly)."""
        if self.world == 1:
            return value
        from accelerate.utils import broadcast
        return broadcast(torch.tensor([value], device=self.device, dtype=torch.float64)).item()

    def metrics(self, text_name: str, model: torch.nn.Module | None = None) -> Metrics:
        """The run's model (or `model`) scored on one of its corpora's held-out text."""
        start = time.perf_counter()
        acc = self.engine.accelerator
        # Ranks may score unequal numbers of windows: evaluate outside the DDP wrapper.
        if model is None:
            model = self.engine.model if self.world == 1 else acc.unwrap_model(self.engine.net)
        m = evaluate(model, self.prep.texts[text_name], self.device, acc.autocast,
                     max(1, self.spec.train.micro_tokens // self.spec.model.context // self.world), acc)
        self.eval_s += time.perf_counter() - start
        return m

    def phase(self, name: str, spec: Spec) -> None:
        """Train one phase of `spec` (its train section is the phase's recipe) to its budget,
        evaluating its own corpus along the way, then score the model on every corpus of the run."""
        engine, acc, t = self.engine, self.engine.accelerator, spec.train
        model, optimizer, cuda = engine.model, engine.optimizer, engine.cuda
        text = self.prep.texts[name]
        T = spec.model.context
        accum = t.batch_tokens // t.micro_tokens
        batches = Batches(text.train, t.micro_tokens // T, T, t.seed, self.device, text.mask, self.rank, self.world)
        planned = accounting.budget_tokens(spec)
        total_steps = planned // t.batch_tokens if planned else None
        eval_every = t.eval_every or max(1, (total_steps or 100) // EVALS_PER_RUN)
        bar = _Progress(self.progress and self.main, f"{spec.name} {name}", planned)
        curve = self.curves[name]
        step, train_s, last_loss, pending, lr = 0, 0.0, self.last_loss, [], t.lr
        first_step, finished = not self.phases, False

        # step -> this phase's corpus scored there; fine-tuning starts where pretraining's scores are
        scored: dict[int, Metrics] = {0: self.phases[-1].metrics[name]} if self.phases and self.phases[-1].metrics else {}

        def eval_point(judged: bool) -> EvalPoint:
            """Score the phase's corpus now; `judged` points go to on_eval (here, or in the caller
            of a data-parallel job, which reads the flag from metrics.jsonl)."""
            m = scored[step] = scored[step] if step in scored else self.metrics(name)
            point = EvalPoint(step=step, tokens=step * t.batch_tokens, elapsed_s=train_s, lr=lr,
                              train_loss=last_loss, val_loss=m.loss, val_bpb=m.bpb, phase=name)
            curve.append(point)
            judged = judged and math.isfinite(m.loss)
            if self.run_dir is not None:
                append_metrics(self.run_dir, {"kind": "eval", "judged": judged, **point.model_dump()})
            if judged and self.on_eval:
                self.on_eval(point)
            return point

        try:
            if name == "finetune":
                eval_point(judged=True)              # the pretrained model on the fine-tuning corpus
            model.train()
            while True:
                if total_steps is not None and step >= total_steps:
                    break
                if t.budget.seconds is not None:
                    train_s = self.agreed(train_s)
                    if train_s >= t.budget.seconds:
                        break
                progress_after = (step + 1) / total_steps if total_steps else train_s / t.budget.seconds
                lr = t.lr * lr_factor(t.schedule, min(1.0, max(progress_after, 1e-3)))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                step_start = time.perf_counter()
                pending.append(train_step(model, optimizer, batches, accum, acc, t.grad_clip))
                step += 1
                if cuda and (step % SYNC_EVERY == 0 or step == 1):
                    torch.cuda.synchronize()
                step_time = time.perf_counter() - step_start
                train_s += step_time
                if step == 1 and first_step:
                    self.compile_s = step_time if spec.train.compile else None
                else:
                    self.timed_tokens += t.batch_tokens
                    self.timed_s += step_time
                due_eval = step % eval_every == 0 or step == total_steps
                if step % SYNC_EVERY == 0 or due_eval or step == 1:
                    losses = torch.stack(pending)
                    losses = (acc.reduce(losses, "mean") if self.world > 1 else losses).tolist()
                    pending.clear()
                    last_loss = losses[-1]
                    bad = next((v for v in losses if not math.isfinite(v)), None)
                    if bad is not None:
                        self.status, self.reason = "diverged", f"{name} loss became {bad} by step {step}"
                        break
                    rate = self.timed_tokens / self.timed_s if self.timed_s else step * t.batch_tokens / train_s
                    if t.budget.seconds is not None:
                        planned = int(rate * t.budget.seconds)
                    bar.update(step * t.batch_tokens, last_loss, rate, planned)
                    if self.run_dir is not None:
                        append_metrics(self.run_dir, {"kind": "train", "phase": name, "step": step,
                                                      "tokens": step * t.batch_tokens, "loss": last_loss,
                                                      "lr": lr, "elapsed_s": train_s})
                if due_eval:
                    point = eval_point(judged=True)
                    if not math.isfinite(point.val_loss):
                        self.status, self.reason = "diverged", f"{name} validation loss became {point.val_loss} at step {step}"
                        break
            if self.status == "completed" and (not curve or curve[-1].step != step):
                eval_point(judged=False)             # the end of a seconds budget
            finished = self.status == "completed"
        finally:
            bar.close()
            self.train_s += train_s
            self.last_loss, self.step = last_loss, step
            if finished or name == "pretrain":
                self.phases.append(PhaseRecord(
                    name=name, tokens=step * t.batch_tokens, steps=step, train_s=train_s, lr=t.lr,
                    metrics={k: scored[step] if k == name and step in scored else self.metrics(k)
                             for k in self.prep.texts} if finished else None))

    def suite(self) -> EvalSuite:
        """The finished model judged beyond loss on the corpus it was last trained on: int8
        weights, held-out completions and samples to read."""
        from workbench import evaluate as ev
        from workbench.sample import generate
        acc, t = self.engine.accelerator, self.spec.train
        target = self.phases[-1].name
        text = self.prep.texts[target]
        net = acc.unwrap_model(self.engine.net)
        q = self.metrics(target, ev.quantize_int8(net))
        start = time.perf_counter()
        completion, samples = None, []
        if self.main:
            tok = self.prep.tokenizer
            if text.mask is None:
                tasks = ev.completion_tasks([r for _, r in text.eval_pairs], t.completions, seed=t.seed)
            else:
                pairs = [(p, r.split("\n", 1)[0]) for p, r in text.eval_pairs if r.strip()]
                tasks = pairs[::max(1, len(pairs) // t.completions)][:t.completions] if t.completions else []
            if tasks:
                outputs = ev.greedy_complete(net, tok, [p for p, _ in tasks])
                refs = [r for _, r in tasks]
                completion = Completion(
                    tasks=len(tasks), exact_match=ev.exact_match(outputs, refs), bleu=ev.bleu(outputs, refs),
                    examples=[{"prompt": p[-120:], "reference": r, "output": o}
                              for (p, r), o in list(zip(tasks, outputs))[:5]])
            prompts = [p if p else r.split("\n", 1)[0][:40] for p, r in text.eval_pairs[:t.samples]]
            samples = [{"prompt": p, "text": generate(net, tok, p, 64, seed=t.seed + i)} for i, p in enumerate(prompts)]
        acc.wait_for_everyone()
        self.eval_s += time.perf_counter() - start
        return EvalSuite(corpus=target, metrics=self.phases[-1].metrics[target], int8_bpb=q.bpb, int8_loss=q.loss,
                         int8_weight_error=ev.int8_error(net), completion=completion, samples=samples)

    def record(self, suite: EvalSuite | None, suite_error: str | None) -> RunRecord:
        spec, engine = self.spec, self.engine
        pre = self.phases[0]
        curve = self.curves["pretrain"]
        final = curve[-1] if curve and pre.metrics else None
        rate = self.timed_tokens / self.timed_s if self.timed_s else (pre.tokens / self.train_s if self.train_s else None)
        fpt = accounting.flops_per_token(spec)
        mem, mem_kind = peak_memory(self.device)
        finite_bpb = [p.val_bpb for p in curve if math.isfinite(p.val_bpb)]
        ft = self.phases[1] if len(self.phases) > 1 else None
        return RunRecord(
            name=spec.name, spec_digest=spec.digest(), status=self.status, reason=self.reason,
            started_at=self.started_at, device=_device_name(self.device) + (f" x{self.world}" if self.world > 1 else ""),
            precision=engine.accelerator.mixed_precision,
            params=asdict(accounting.count_params(spec)), flops_per_token=fpt, tokens=pre.tokens, steps=pre.steps,
            compute=accounting.compute(spec, pre.tokens),
            train_loss=self.last_loss if math.isfinite(self.last_loss) else None,
            val_loss=final.val_loss if final else None,
            val_ppl=math.exp(final.val_loss) if final else None,
            val_bpb=final.val_bpb if final else None,
            best_val_bpb=min(finite_bpb) if finite_bpb else None,
            eval_bytes=self.prep.pretrain.eval_bytes, eval_tokens=int((self.prep.pretrain.eval_y >= 0).sum()),
            entropy_bpb=self.prep.entropy_bpb, tokens_per_s=rate,
            mfu=rate * fpt["6N+attn"] / (self.peak_flops * self.world) if rate else None, peak_flops=self.peak_flops,
            peak_memory_bytes=mem, peak_memory_kind=mem_kind,
            wall_s=time.perf_counter() - self.wall_start, setup_s=self.setup_s, train_s=self.train_s,
            eval_s=self.eval_s, compile_s=self.compile_s, tokenizer=self.prep.stats, curve=curve,
            devices=self.world, phases=self.phases, finetune_curve=self.curves["finetune"],
            finetune_val_loss=ft.metrics["finetune"].loss if ft else None,
            finetune_val_bpb=ft.metrics["finetune"].bpb if ft else None,
            finetune_gain_bpb=pre.metrics["finetune"].bpb - ft.metrics["finetune"].bpb if ft else None,
            forgetting_bpb=ft.metrics["pretrain"].bpb - pre.metrics["pretrain"].bpb if ft else None,
            suite=suite, suite_error=suite_error)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    """A rank of a data-parallel job (see parallel.launch): `python -m workbench.train RUN_DIR
    [--judged]` trains the run folder's spec; a failing rank leaves its error for the caller."""
    run_dir = Path(sys.argv[1])
    die_with_parent()
    try:
        train(read_run_spec(run_dir), run_dir, on_eval=Verdicts(run_dir) if "--judged" in sys.argv else None)
    except BaseException as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        (run_dir / f".error-rank{os.environ.get('RANK', '0')}").write_text(f"{type(e).__name__}: {first}")
        raise


if __name__ == "__main__":
    main()
