"""A study worker: claiming trials within the budget, heartbeats, retrying the trials of dead
workers, and running one trial from suggestion to the storage."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from workbench.plumbing.errors import UserError
from workbench.plumbing.files import writable_folder
from workbench.record import RunRecord
from workbench.study.ladder import largest_budget
from workbench.study.objectives import OBJECTIVES
from workbench.study.roles import role
from workbench.study.samplers import PRUNERS, SAMPLERS, GroupedPruner, SearchView
from workbench.study.schema import FloatParam, StudyFile
from workbench.study.space import Infeasible, grid, space_size, spec_for, suggest
from workbench.study.storage import claim_lock, load_existing, study_dir

# A machine's name in the storage; set WORKBENCH_HOST where machines share a hostname (containers).
HOST = os.environ.get("WORKBENCH_HOST") or socket.gethostname()
WORKER_ID = f"{HOST}:{os.getpid()}"
DESIGN_ATTRS = ("key", "point", "branch_points", "budget", "prediction", "forks")   # what a retry keeps of its trial
MAX_DUPLICATES = 25      # proposals in a row that repeat finished configurations: the space is spent


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that use the budget: all but those replaced by a retry."""
    return sum(1 for t in trials if not t.user_attrs.get("retried"))


def claim(ostudy: optuna.Study, study: StudyFile, url: str, validation: Validation | None = None) -> optuna.Trial | None:
    """The next trial to run: a queued one first (baselines, ladder points, retries, the
    validation run once the ladder has finished), else a new searched trial while the search's
    own budget lasts; None when there is nothing left to claim now."""
    with claim_lock(ostudy._storage, url, study.name):
        reap(ostudy, study, url, locked=True)
        if validation is not None:
            queue_validation(ostudy, study, validation)
        trials = ostudy.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        searched = sum(1 for t in trials if role(t.user_attrs) == "search" and not t.user_attrs.get("retried"))
        if not waiting and searched >= study.spec.trials:
            return None
        trial = ostudy.ask()
        trial.set_user_attr("worker", WORKER_ID)
        trial.set_user_attr("heartbeat", time.time())
        trial.set_user_attr("origin", trial.user_attrs.get("origin", "search"))
        return trial


Validation = Callable[[StudyFile, optuna.Study, float], dict[str, Any]]
"""What plans a validation run (the scaling layer's, handed in by the command that starts the
worker): from the study, its stored trials and the budget, {overrides, prediction}; a UserError
says why there is none."""


def queue_validation(ostudy: optuna.Study, study: StudyFile, plan: Validation) -> None:
    """Once every ladder point has finished, queue the study's validation run: the prediction is
    made and stored on the trial before it starts. A refused prediction is recorded as a failed
    validation trial with the reason. Call under the claim lock."""
    ladder = study.spec.ladder
    if ladder is None or ladder.validate_ is None:
        return
    budget = ladder.validate_.budget(largest_budget(study) or 0.0)
    trials = ostudy.get_trials(deepcopy=False)
    if any(role(t.user_attrs) == "validation" and t.user_attrs.get("budget") == budget for t in trials):
        return
    points = [t for t in trials if role(t.user_attrs) == "ladder" and not t.user_attrs.get("retried")]
    if not points or any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in points):
        return
    try:
        planned = plan(study, ostudy, budget)
    except Exception as e:      # a refusal (UserError) or a failed fit: recorded, never a dead worker
        why = str(e) if isinstance(e, UserError) else f"the fit failed: {type(e).__name__}: {e}"
        ostudy.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
            "origin": "validation", "budget": budget, "status": "refused", "reason": f"no validation run: {why}"}))
        return
    ostudy.enqueue_trial({}, user_attrs={"origin": "validation", "budget": budget, **planned})


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != HOST:
        return True          # another machine: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def reap(ostudy: optuna.Study, study: StudyFile, url: str, locked: bool = False) -> int:
    """Fail running trials whose worker is gone (dead process here, or silent past the grace
    period), and re-enqueue each one's parameters while it has retries left."""
    if not locked:
        with claim_lock(ostudy._storage, url, study.name):
            return reap(ostudy, study, url, locked=True)
    storage, now, n = ostudy._storage, time.time(), 0
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "?:0")
        beat = t.user_attrs.get("heartbeat") or t.datetime_start.timestamp()
        if worker == WORKER_ID or (_alive(worker) and now - beat < study.spec.heartbeat.grace):
            continue
        reason = f"worker {worker} stopped during the trial (last heartbeat {now - beat:.0f} s ago)"
        retries = t.user_attrs.get("retries", 0)
        storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
        storage.set_trial_user_attr(t._trial_id, "reason", reason)
        if retries < study.spec.retries:
            storage.set_trial_user_attr(t._trial_id, "retried", True)
            kept = {k: t.user_attrs[k] for k in DESIGN_ATTRS if k in t.user_attrs}
            ostudy.enqueue_trial(t.params, user_attrs={
                "origin": t.user_attrs.get("origin", "search"), "overrides": t.user_attrs.get("overrides", {}),
                **kept, "retries": retries + 1, "retry_of": t.number})
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
        except optuna.exceptions.UpdateFinishedTrialError:  # finished meanwhile by its own worker
            pass
    return n


class Heartbeat:
    """Marks a running trial alive every `interval` seconds from a background thread."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def objective_values(study: StudyFile, record: RunRecord) -> list[float]:
    """The study's objectives read from a finished run's record (ValueError naming what is missing)."""
    names = [name for name, _ in study.spec.directions()]
    values = [OBJECTIVES[name].get(record) for name in names]
    missing = [name for name, v in zip(names, values) if v is None]
    if missing and record.suite_error:
        raise ValueError(f"the run has no {', '.join(missing)}: its evaluation suite failed ({record.suite_error})")
    if missing:
        raise ValueError(f"the run has no {', '.join(missing)} (no held-out completion task: "
                         "train.completions is 0, or no held-out line of 16-160 characters)")
    return [float(v) for v in values]


def budget_group(spec) -> str:
    """What a trial's curve can be compared on: its budgets and schedules (pretraining and
    fine-tuning), as canonical JSON. The pruner compares only trials with equal groups."""
    data = spec.model_dump(mode="json")
    finetune = data.get("finetune") or {}
    return json.dumps({"train": {k: data["train"][k] for k in ("budget", "schedule")},
                       "finetune": {k: finetune[k] for k in ("budget", "schedule") if k in finetune}}, sort_keys=True)


def run_trial(ostudy: optuna.Study, study: StudyFile, trial: optuna.Trial, root: Path,
              devices: int | None = None) -> str:
    """Sample, check and train one trial (on `devices` data-parallel processes when given),
    then tell the storage; returns its status. Errors inside the trial are recorded on it and
    never escape."""
    import torch

    from workbench.record import Pruned
    from workbench.train.loop import train

    start = time.perf_counter()
    attrs = trial.user_attrs
    overrides = attrs.get("overrides", {})
    try:
        designed = attrs.get("origin") in ("ladder", "validation")
        chosen = overrides if designed else suggest(trial, study, overrides)
        spec = spec_for(study, {**chosen, **({"train.devices": devices} if devices else {})}, trial.number)
    except Infeasible as e:
        return _finish(ostudy, trial, "infeasible", str(e))
    twin = _finished_twin(ostudy, study, trial)
    if twin is not None:
        # A discrete space's configuration that already finished would teach nothing new: this
        # trial gives its place in the budget back (retried), and the worker asks again.
        trial.set_user_attr("retried", True)
        return _finish(ostudy, trial, "duplicate", f"the same configuration as finished trial {twin}")
    trial.set_user_attr("fields", chosen)
    trial.set_user_attr("spec", spec.model_dump(mode="json"))
    trial.set_user_attr("group", budget_group(spec))
    run_dir = root / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    # Ladder points and baselines are a designed experiment: they always run to the end.
    can_prune = len(study.spec.directions()) == 1 and study.spec.pruner.kind != "none" \
        and attrs.get("origin", "search") == "search"
    # Prune on the curve of what the objective measures: the fine-tuning corpus's after fine-tuning
    # (or for the suite of a fine-tuned model), else the pretraining corpus's; bpb or loss alike.
    objective = OBJECTIVES[study.spec.directions()[0][0]]
    judged = "finetune" if spec.finetune and objective.last_phase else "pretrain"
    watched = objective.curve or "val_bpb"
    evals = 0

    def report(point) -> None:
        nonlocal evals
        if point.phase != judged:
            return
        evals += 1
        if can_prune:
            value = getattr(point, watched)
            # Keyed by tokens seen, so trials of one group with different batch sizes are compared
            # only where they have seen the same data.
            trial.report(value, point.tokens)
            if evals > study.spec.pruner.warmup_evals and trial.should_prune():
                raise Pruned(f"pruned at step {point.step} ({watched.replace('_', ' ')} {value:.4f})")

    # A branched run keeps its forks in a folder of its own (named by its design's key, or by
    # the trial it began as), which its retries keep, so a retry after a killed worker resumes
    # from the last finished branch; each branch is added to the study as it finishes.
    if spec.train.schedule.branches and "forks" not in attrs:
        name = hashlib.sha256(attrs["key"].encode()).hexdigest()[:16] if "key" in attrs else f"trial-{trial.number:04d}"
        trial.set_user_attr("forks", name)
    forks = root / "branches" / trial.user_attrs["forks"] if "forks" in trial.user_attrs else None

    def branch(record: RunRecord) -> None:
        add_branch(ostudy, study, trial, spec, record, forks)

    try:
        with Heartbeat(ostudy._storage, trial._trial_id, study.spec.heartbeat.interval):
            before_train = time.perf_counter() - start
            record = train(spec, run_dir, on_eval=report, on_branch=branch, checkpoints=forks)
    except (torch.OutOfMemoryError, MemoryError) as e:
        return _finish(ostudy, trial, "failed", f"out of memory: {str(e).splitlines()[0][:300]}")
    except Exception as e:
        return _finish(ostudy, trial, "failed", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    trial.set_user_attr("record", record.model_dump(mode="json"))
    trial.set_user_attr("startup_s", before_train + record.setup_s)   # trial start to first step
    if record.status == "completed":
        try:
            values = objective_values(study, record)
        except ValueError as e:
            return _finish(ostudy, trial, "failed", str(e))
        return _finish(ostudy, trial, "completed", None, values)
    return _finish(ostudy, trial, record.status, record.reason)


def add_branch(ostudy: optuna.Study, study: StudyFile, trial: optuna.Trial, spec, record: RunRecord,
               forks: Path) -> None:
    """Store a finished branch of `trial`'s branched run as a trial of its own (a ladder point
    when the run is one; else role `branch`), once: a resumed run hands on again the branches
    that had finished, and those already stored are skipped."""
    index, run_key = record.branch.index, forks.name          # the run's folder names it
    for t in ostudy.get_trials(deepcopy=False):
        if t.user_attrs.get("branch_key") == run_key and t.user_attrs.get("branch") == index:
            return
    from workbench.accounting import budget_tokens
    attrs = trial.user_attrs
    data = spec.model_dump(mode="json")         # the separate run this branch stands for: same warmup tokens
    schedule, budget = data["train"]["schedule"], data["train"]["budget"]
    schedule["warmup"] = schedule["warmup"] * budget_tokens(spec) / record.tokens
    schedule["branches"] = None
    budget.update(tokens=record.tokens, flops=None, steps=None, seconds=None)     # its convention stays
    # A branch is a ladder point only where the ladder designed it so (ladder.branches); a
    # branched base spec under a plain ladder gives branches outside the ladder's design.
    user = {"origin": "ladder" if attrs.get("branch_points") else "branch", "branch": index,
            "branch_of": trial.number, "branch_key": run_key, "worker": WORKER_ID, "fields": attrs.get("fields", {}),
            "spec": data, "run_dir": str(forks), "record": record.model_dump(mode="json"), "status": record.status}
    if attrs.get("branch_points"):
        user["point"] = attrs["branch_points"][index]
    if record.reason:
        user["reason"] = record.reason
    values = None
    if record.status == "completed":
        try:
            values = objective_values(study, record)
        except ValueError as e:
            user["status"], user["reason"] = "failed", str(e)
    ostudy.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE if values else TrialState.FAIL,
                                               values=values, user_attrs=user))


def _finished_twin(ostudy: optuna.Study, study: StudyFile, trial: optuna.Trial) -> int | None:
    """A completed searched trial with exactly this trial's parameters, where the search space
    is discrete (every float range would make an exact repeat a coincidence worth running)."""
    if trial.user_attrs.get("origin", "search") != "search" or not trial.params or "retry_of" in trial.user_attrs \
            or any(isinstance(p, FloatParam) for p in study.spec.search.values()):
        return None
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != trial.number and t.params == trial.params and t.user_attrs.get("origin") == "search":
            return t.number
    return None


def _finish(ostudy: optuna.Study, trial: optuna.Trial, status: str, reason: str | None,
            values: list[float] | None = None) -> str:
    trial.set_user_attr("status", status)
    if reason:
        trial.set_user_attr("reason", reason)
    if values is not None:
        ostudy.tell(trial, values)
    else:
        ostudy.tell(trial, state=TrialState.PRUNED if status == "pruned" else TrialState.FAIL)
    return status


def work(study: StudyFile, url: str, index: int = 0, root: Path | None = None, devices: int | None = None,
         validation: Validation | None = None) -> int:
    """The worker loop: claim, run, repeat until the budget is spent and no other worker's
    trial is still running (a dead worker's trial is then retried here). `validation` plans the
    study's validation run when it declares one. Returns trials run."""
    s = study.spec.sampler
    ostudy = load_existing(study, url)
    # Each worker draws its own stream, from the study seed, its index and the trials already
    # stored: a resumed or concurrent worker never replays another's (or its own earlier) draws.
    seed = int(np.random.SeedSequence([s.seed, index, len(ostudy.get_trials(deepcopy=False))]).generate_state(1)[0])
    ostudy = load_existing(study, url, sampler=SearchView(SAMPLERS[s.kind].make(seed, grid(study))),
                           pruner=GroupedPruner(PRUNERS[study.spec.pruner.kind].make))
    root = root or study_dir(study)
    writable_folder(root / "trials", "trials folder")
    n = duplicates = 0
    size = space_size(study)
    while True:
        done = {tuple(sorted(t.params.items())) for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("origin") == "search"}
        if size is not None and len(done) >= size and not ostudy.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            print(f"worker {index}: all {size} configurations of the discrete search space are done; "
                  "the rest of the budget cannot be spent without repeating one", flush=True)
            return n
        trial = claim(ostudy, study, url, validation)
        if trial is None:
            if not ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return n
            time.sleep(study.spec.heartbeat.interval)
            continue
        status = run_trial(ostudy, study, trial, root, devices)
        duplicates = duplicates + 1 if status == "duplicate" else 0
        if duplicates >= MAX_DUPLICATES:
            print(f"worker {index}: {duplicates} proposals in a row repeated finished configurations: "
                  "the discrete search space looks exhausted; stopping", flush=True)
            return n
        n += status != "duplicate"
