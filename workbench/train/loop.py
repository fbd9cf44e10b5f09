"""Train one spec briefly under Accelerate and produce its run record: the phases in order
(pretraining, then fine-tuning when the spec has it), evaluations along the way, the evaluation
suite of the finished model, and the record.

Everything that is not forward, backward or the optimizer step stays off the hot path: losses
are read only every `SYNC_EVERY` steps, and evaluation windows are built once.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_model

from workbench import accounting
from workbench.data.batches import Batches
from workbench.data.prepared import prepare, warm_caches
from workbench.evaluate import suite as judge
from workbench.evaluate.heldout import heldout_metrics
from workbench.plumbing.errors import Issue, SpecError
from workbench.record import (TOKENIZER_FILE, WEIGHTS_FILE, BranchRecord, EvalPoint, EvalSuite, Metrics,
                              PhaseRecord, Pruned, RunRecord, append_metrics, write_record, write_spec)
from workbench.spec import Spec, TrainSpec
from workbench.train.branches import Branch, Checkpoints, generator_states, plan, restore_generators
from workbench.train.parallel import launch
from workbench.train.step import lr_factor, make_engine, peak_memory, train_step

SYNC_EVERY = 10          # steps between reads of the loss (each read waits for the device)
EVALS_PER_RUN = 5
BRANCHES_DIR = "branches"   # a branched run's saved forks and finished branch records, in its run folder


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
          on_eval: Callable[[EvalPoint], None] | None = None,
          on_branch: Callable[[RunRecord], None] | None = None, checkpoints: Path | None = None) -> RunRecord:
    """Train `spec` from scratch (then fine-tune it, when the spec has that phase) and return
    its record; with run_dir, also write the run folder (spec.yaml, metrics.jsonl, record.json,
    tokenizer.json, model.safetensors).

    A NaN or Inf loss ends the run as `diverged`; an on_eval callback raising Pruned ends it as
    `pruned`. Both still return (and write) a record. With `train.devices` above 1 the run is an
    Accelerate data-parallel job in processes of its own (see parallel.py).

    A branched schedule (see branches.py) hands each branch's record to `on_branch` as it
    finishes (and again, on a resumed run, those that had finished) and returns the last
    branch's; its forks are saved in `checkpoints` (default: run_dir/branches, else a temporary
    folder), from which a run started again resumes.
    """
    too_big = accounting.memory_problem(spec)
    if too_big:
        raise SpecError([Issue(f"spec {spec.name}", None, "model", too_big)])
    if spec.train.devices > 1:
        warm_caches(spec)    # tokenizer and streams cached here, not while the ranks wait in a barrier
        return launch(spec, run_dir, on_eval=on_eval, progress=progress)
    if spec.train.schedule.branches and checkpoints is None and run_dir is None:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="workbench-branches-") as folder:
            return _Run(spec, None, progress, on_eval, on_branch, Path(folder)).run()
    return _Run(spec, run_dir, progress, on_eval, on_branch, checkpoints).run()


def run_here(spec: Spec, run_dir: Path | None = None, *, progress: bool = False,
             on_eval: Callable[[EvalPoint], None] | None = None) -> RunRecord:
    """Train `spec` in this process: the whole run on this process's device, or, inside a
    data-parallel job (rank.py), this process's rank of it."""
    return _Run(spec, run_dir, progress, on_eval).run()


class _Run:
    """One run: the phases in order, then the evaluation suite and the record."""

    def __init__(self, spec: Spec, run_dir: Path | None, progress: bool,
                 on_eval: Callable[[EvalPoint], None] | None,
                 on_branch: Callable[[RunRecord], None] | None = None, checkpoints: Path | None = None):
        self.wall_start = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.spec, self.progress, self.on_eval = spec, progress, on_eval
        self.engine = make_engine(spec)
        acc = self.engine.accelerator
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        self.run_dir = run_dir if self.main else None           # one writer per run folder
        with acc.main_process_first():                          # tokenizer and streams cached once
            self.prep = prepare(spec, progress=progress and self.main)
        if self.prep.tokenizer.vocab_size > spec.tokenizer.size:
            raise AssertionError(f"tokenizer has {self.prep.tokenizer.vocab_size} tokens; "
                                 f"the model is built for {spec.tokenizer.size}")
        self.peak_flops = self.engine.peak_flops()
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
        self.on_branch = on_branch
        self.forks = None
        if spec.train.schedule.branches:
            folder = checkpoints or (run_dir / BRANCHES_DIR if run_dir is not None else None)
            self.forks = Checkpoints(folder, spec.digest())

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def run(self) -> RunRecord:
        if self.forks is None:
            return self._run()
        self.forks.acquire()
        try:
            record = self._run()
        except BaseException:
            self.forks.close(done=False)     # killed or failed: the forks stay for a resume
            raise
        self.forks.close()                   # the run ended: its forks are no longer needed
        return record

    def _run(self) -> RunRecord:
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
                suite_error = _error_line(e)
        record = self.record(suite, suite_error, branch=self.branch_record(-1) if self.forks else None)
        if self.run_dir is not None:
            write_record(self.run_dir, record)
        return record

    def restart_optimizer(self, t: TrainSpec) -> None:
        """Fine-tuning starts from the weights with fresh AdamW moments and its own decay."""
        opt = self.engine.optimizer
        opt.state.clear()
        for group in opt.param_groups:                                # matrices (see make_optimizer)
            if group["decays"]:
                group["weight_decay"] = t.weight_decay

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
        m = heldout_metrics(model, self.prep.texts[text_name], self.device, acc.autocast,
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
        forks: list[Branch] = []
        if name == "pretrain" and self.forks is not None:
            self.branches = plan(t.schedule, total_steps)
            forks = [b for b in self.branches[:-1] if b.fork < b.end]
            saved = self.forks.latest()
            done = self.forks.finished() if saved else {}
            if saved:                           # a run started again: on from its latest fork
                gens = self.forks.load(saved, engine.accelerator.unwrap_model(engine.net), optimizer)
                restore_generators(gens, batches.gen)
                loop = saved["loop"]
                step, train_s, last_loss = loop["step"], loop["train_s"], loop["last_loss"]
                self.timed_tokens, self.timed_s = loop["timed_tokens"], loop["timed_s"]
                curve += [EvalPoint.model_validate(p) for p in loop["curve"]]
                first_step = False
                for record in done.values():
                    if self.on_branch:
                        self.on_branch(record)
            forks = [b for b in forks if b.index not in done and b.fork >= step]

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
                while forks and forks[0].fork == step:
                    self.branch(forks.pop(0), spec, batches, {
                        "step": step, "train_s": train_s, "last_loss": last_loss, "timed_tokens": self.timed_tokens,
                        "timed_s": self.timed_s, "curve": [p.model_dump() for p in curve]})
                    model.train()
                if total_steps is not None and step >= total_steps:
                    break
                if t.budget.seconds is not None:
                    train_s = self.agreed(train_s)
                    if train_s >= t.budget.seconds:
                        break
                progress_after = (step + 1) / total_steps if total_steps else train_s / t.budget.seconds
                lr = t.lr * lr_factor(t.schedule, min(1.0, max(progress_after, 1e-3)))
                _set_lr(optimizer, lr)
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

    def branch(self, b: Branch, spec: Spec, batches: Batches, loop: dict) -> None:
        """Branch `b` of a branched schedule, at its fork: save the run's state, train a copy
        through the branch's decay, score and record it (handing the record on), then put the
        saved state back so the run goes on as if the branch had never been."""
        engine, acc, t = self.engine, self.engine.accelerator, spec.train
        model, optimizer = engine.model, engine.optimizer
        saved = self.forks.save(b.fork, acc.unwrap_model(engine.net), optimizer,
                                generator_states(batches.gen, engine.cuda), loop)
        accum = t.batch_tokens // t.micro_tokens
        status, reason, train_s, last_loss, pending, lr = "completed", None, loop["train_s"], loop["last_loss"], [], t.lr
        model.train()
        for step in range(b.fork + 1, b.end + 1):
            lr = t.lr * lr_factor(t.schedule, max(step / b.end, 1e-3), warmup=b.warmup)
            _set_lr(optimizer, lr)
            start = time.perf_counter()
            pending.append(train_step(model, optimizer, batches, accum, acc, t.grad_clip))
            if engine.cuda and (step % SYNC_EVERY == 0 or step == b.end):
                torch.cuda.synchronize()
            took = time.perf_counter() - start
            train_s, self.timed_s, self.timed_tokens = train_s + took, self.timed_s + took, self.timed_tokens + t.batch_tokens
            if step % SYNC_EVERY == 0 or step == b.end:
                losses = torch.stack(pending).tolist()
                pending.clear()
                last_loss = losses[-1]
                bad = next((v for v in losses if not math.isfinite(v)), None)
                if bad is not None:
                    status, reason = "diverged", f"branch {b.index + 1} loss became {bad} by step {step}"
                    break
                if self.run_dir is not None:
                    append_metrics(self.run_dir, {"kind": "train", "phase": "pretrain", "branch": b.index, "step": step,
                                                  "tokens": step * t.batch_tokens, "loss": last_loss, "lr": lr,
                                                  "elapsed_s": train_s})
        metrics, curve = None, [EvalPoint.model_validate(p) for p in loop["curve"] if p["step"] <= b.fork]
        if status == "completed":
            metrics = {k: self.metrics(k) for k in self.prep.texts}
            m = metrics["pretrain"]
            if not math.isfinite(m.loss):
                status, reason, metrics = "diverged", f"branch {b.index + 1} validation loss became {m.loss}", None
            else:
                point = EvalPoint(step=b.end, tokens=b.end * t.batch_tokens, elapsed_s=train_s, lr=lr,
                                  train_loss=last_loss, val_loss=m.loss, val_bpb=m.bpb)
                curve.append(point)
                if self.run_dir is not None:
                    append_metrics(self.run_dir, {"kind": "eval", "judged": False, "branch": b.index, **point.model_dump()})
        steps = b.end if status == "completed" else step
        phase = PhaseRecord(name="pretrain", tokens=steps * t.batch_tokens, steps=steps, train_s=train_s, lr=t.lr,
                            metrics=metrics)
        suite, suite_error = None, None
        if status == "completed":
            try:
                suite = self.suite(phase)
            except Exception as e:
                suite_error = _error_line(e)
        record = self.record(suite, suite_error, branch=self.branch_record(b.index), phases=[phase], curve=curve,
                             status=status, reason=reason, last_loss=last_loss, train_s=train_s)
        self.forks.finish(b.index, record)
        if self.on_branch:
            self.on_branch(record)
        restore_generators(self.forks.load(saved, acc.unwrap_model(engine.net), optimizer), batches.gen)

    def branch_record(self, index: int) -> BranchRecord:
        """What branch `index` (-1: the last, the run's own end) is among its run's, and its charge."""
        b, last, batch = self.branches[index], self.branches[-1], self.spec.train.batch_tokens
        decay = accounting.compute(self.spec, (b.end - b.fork) * batch)
        shared = accounting.compute(self.spec, last.fork * batch)
        charged = {k: decay[k] + (shared[k] if b is last else 0.0) for k in decay}
        if b is last and self.status != "completed":      # stopped early: charged what it trained
            charged = accounting.compute(self.spec, self.phases[0].tokens)
        return BranchRecord(index=b.index, count=len(self.branches), fraction=b.fraction, fork_tokens=b.fork * batch,
                            decay_tokens=(b.end - b.fork) * batch, shared_tokens=last.fork * batch,
                            charged_compute=charged)

    def suite(self, phase: PhaseRecord | None = None) -> EvalSuite:
        """The finished model (or a branch's: `phase`) judged beyond loss on the corpus it was
        last trained on: int8 weights, held-out completions and samples to read."""
        acc, t = self.engine.accelerator, self.spec.train
        phase = phase or self.phases[-1]
        target = phase.name
        net = acc.unwrap_model(self.engine.net)
        q = self.metrics(target, judge.quantize_int8(net))
        start = time.perf_counter()
        completion, samples = judge.completions_and_samples(
            net, self.prep.tokenizer, self.prep.texts[target], t.completions, t.samples, t.seed) \
            if self.main else (None, [])
        acc.wait_for_everyone()
        self.eval_s += time.perf_counter() - start
        return EvalSuite(corpus=target, metrics=phase.metrics[target], int8_bpb=q.bpb, int8_loss=q.loss,
                         int8_weight_error=judge.int8_error(net), completion=completion, samples=samples)

    def record(self, suite: EvalSuite | None, suite_error: str | None, *, branch: BranchRecord | None = None,
               phases: list[PhaseRecord] | None = None, curve: list[EvalPoint] | None = None,
               status: str | None = None, reason: str | None = None, last_loss: float | None = None,
               train_s: float | None = None) -> RunRecord:
        """The run's record; a branch's gives its own phases, curve, outcome and training time."""
        spec, engine = self.spec, self.engine
        phases = phases or self.phases
        status, reason = status or self.status, reason if status else self.reason
        last_loss = self.last_loss if last_loss is None else last_loss
        train_s = self.train_s if train_s is None else train_s
        pre = phases[0]
        curve = self.curves["pretrain"] if curve is None else curve
        final = curve[-1] if curve and pre.metrics else None
        rate = self.timed_tokens / self.timed_s if self.timed_s else (pre.tokens / train_s if train_s else None)
        fpt = accounting.flops_per_token(spec)
        mem, mem_kind = peak_memory(self.device)
        finite_bpb = [p.val_bpb for p in curve if math.isfinite(p.val_bpb)]
        ft = phases[1] if len(phases) > 1 else None
        return RunRecord(
            name=spec.name, spec_digest=spec.digest(), status=status, reason=reason,
            started_at=self.started_at, device=_device_name(self.device) + (f" x{self.world}" if self.world > 1 else ""),
            precision=engine.accelerator.mixed_precision,
            params=asdict(accounting.count_params(spec)), flops_per_token=fpt, tokens=pre.tokens, steps=pre.steps,
            unique_tokens=self.prep.unique_tokens, epochs=pre.tokens / self.prep.unique_tokens,
            compute=accounting.compute(spec, pre.tokens),
            train_loss=last_loss if math.isfinite(last_loss) else None,
            val_loss=final.val_loss if final else None,
            val_ppl=math.exp(final.val_loss) if final else None,
            val_bpb=final.val_bpb if final else None,
            best_val_bpb=min(finite_bpb) if finite_bpb else None,
            eval_bytes=self.prep.pretrain.eval_bytes, eval_tokens=int((self.prep.pretrain.eval_y >= 0).sum()),
            entropy_bpb=self.prep.entropy_bpb, tokens_per_s=rate,
            mfu=rate * fpt["6N+attn"] / (self.peak_flops * self.world) if rate else None, peak_flops=self.peak_flops,
            peak_dtype=str(self.engine.compute_dtype).removeprefix("torch."),
            peak_memory_bytes=mem, peak_memory_kind=mem_kind,
            wall_s=time.perf_counter() - self.wall_start, setup_s=self.setup_s, train_s=train_s,
            eval_s=self.eval_s, compile_s=self.compile_s, tokenizer=self.prep.stats, curve=curve,
            devices=self.world, phases=phases, finetune_curve=self.curves["finetune"],
            finetune_val_loss=ft.metrics["finetune"].loss if ft else None,
            finetune_val_bpb=ft.metrics["finetune"].bpb if ft else None,
            finetune_gain_bpb=pre.metrics["finetune"].bpb - ft.metrics["finetune"].bpb if ft else None,
            forgetting_bpb=ft.metrics["pretrain"].bpb - pre.metrics["pretrain"].bpb if ft else None,
            suite=suite, suite_error=suite_error,
            corpus=self.prep.corpora["pretrain"], finetune_corpus=self.prep.corpora.get("finetune"), branch=branch)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate on every parameter group, times the group's parametrisation multiple."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def _error_line(e: Exception) -> str:
    """An exception as one short line for a record (a failed suite keeps the training)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
