"""`workbench study run`: create or resume the study, start worker processes placed on this
machine's devices, replace workers that die, and summarise the trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from workbench.plumbing.files import writable_folder
from workbench.plumbing.process import die_with_parent
from workbench.study.devices import WorkerPlan, gpu_count, plan_workers
from workbench.study.roles import ROLES, compute_spent, role, validation_checks, with_role
from workbench.study.schema import StudyFile
from workbench.study.storage import create_or_resume, study_dir
from workbench.study.worker import counted, reap


def spawn_worker(study: StudyFile, url: str, plan: WorkerPlan, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "workbench", "study", "worker", str(study.path), "--storage", url,
           "--index", str(plan.index), "--threads", str(plan.threads), "--gpus-per-trial", str(plan.devices)]
    env = {**os.environ, **plan.env, "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "a") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                # SIGKILL: a killed study leaves no orphans training on; their
                                # trials are then retried on resume.
                                preexec_fn=partial(die_with_parent, signal.SIGKILL) if sys.platform == "linux" else None)


def summary(ostudy: optuna.Study) -> dict[str, Any]:
    """Counts by state and status; the best *searched* trials (the search's objective among the
    trials the sampler proposed, which share one budget: never a ladder point or a baseline);
    the baselines apart; the ladder's progress; failures with their reasons."""
    trials = ostudy.get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    by_role: dict[str, dict[str, int]] = {name: {} for name in ROLES}
    for t in trials:
        state = t.state.name.lower()
        by_state[state] = by_state.get(state, 0) + 1
        if not t.user_attrs.get("retried"):          # a retried trial's place went to its retry
            counts = by_role[role(t.user_attrs)]
            counts[state] = counts.get(state, 0) + 1
    searched = [t for t in trials if t.state == TrialState.COMPLETE and role(t.user_attrs) == "search"]
    objectives = ostudy.user_attrs.get("objectives", ["value"])
    if len(ostudy.directions) == 1:
        sign = 1 if ostudy.direction == optuna.study.StudyDirection.MINIMIZE else -1
        best = sorted(searched, key=lambda t: sign * t.values[0])[:5]
    else:
        best = with_role(ostudy, "search").best_trials if searched else []
    ladder = by_role["ladder"]
    # A branched ladder run stands for all its points until its branches are stored; those it
    # never reached (it diverged or failed first) count as failed once it has ended.
    runs = [t for t in trials if role(t.user_attrs) == "ladder" and "branch" not in t.user_attrs
            and not t.user_attrs.get("retried")]
    points = sum(len(t.user_attrs.get("branch_points") or [None]) for t in runs)
    stored: dict[str, int] = {}
    for t in trials:
        if "branch" in t.user_attrs:
            stored[t.user_attrs.get("branch_key")] = stored.get(t.user_attrs.get("branch_key"), 0) + 1
    unreached = sum(max(0, len(t.user_attrs["branch_points"]) - 1 - stored.get(t.user_attrs.get("forks"), 0))
                    for t in runs if t.user_attrs.get("branch_points") and t.state.is_finished())
    return {
        "study": ostudy.study_name,
        "planned": ostudy.user_attrs.get("planned_trials"),
        "counted": counted(trials),
        "states": by_state,
        "roles": {name: counts for name, counts in by_role.items() if counts},
        "objectives": objectives,
        "best": [_brief(t) for t in best],
        "baselines": [_brief(t) for t in trials if role(t.user_attrs) == "baseline" and not t.user_attrs.get("retried")],
        "ladder": {"planned": points, "done": ladder.get("complete", 0),
                   "failed": ladder.get("fail", 0) + ladder.get("pruned", 0) + unreached,
                   "running": ladder.get("running", 0)},
        "validation": validation_checks(ostudy),
        "compute": compute_spent(trials),
        "failures": [{"number": t.number, "role": role(t.user_attrs), "status": t.user_attrs.get("status"),
                      "reason": t.user_attrs.get("reason")}
                     for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("status") != "duplicate"
                     and role(t.user_attrs) != "validation"],          # shown with its prediction
    }


def _brief(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {"number": t.number, "values": t.values, "status": t.user_attrs.get("status", t.state.name.lower()),
            "fields": t.user_attrs.get("fields", {})}


def supervise(study: StudyFile, url: str, workers: int | str, on_progress=None, poll: float = 1.0,
              trials_per_gpu: int = 1, gpus_per_trial: int | None = None) -> dict:
    """Create or resume the study, run worker processes (see devices.plan_workers) until the
    budget is spent, replacing workers that die (their trials are retried); returns the summary.
    Each trial runs on gpus_per_trial data-parallel devices (default: the base spec's
    train.devices)."""
    folder = writable_folder(study_dir(study), "study folder")
    writable_folder(folder / "trials", "trials folder")       # else every trial would fail and spend the budget
    ostudy = create_or_resume(study, url)
    reap(ostudy, study, url)
    plans = plan_workers(workers, gpu_count(), trials_per_gpu,
                         gpus_per_trial=gpus_per_trial or study.base.train.devices)
    procs = {p.index: spawn_worker(study, url, p, folder / f"worker-{p.index}.log") for p in plans}
    restarts, deaths = 0, []
    try:
        while procs:
            time.sleep(poll)
            for i, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del procs[i]
                if code != 0:
                    deaths.append(f"worker {i} exited with {code}: {worker_error(folder / f'worker-{i}.log')}")
                    reap(ostudy, study, url)
                    left = counted(ostudy.get_trials(deepcopy=False)) < ostudy.user_attrs["planned_trials"] or \
                        ostudy.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                    # Exit code 2 is a user error the worker named (a study file gone, a bad storage
                    # URL): a new worker would only say it again.
                    if left and code != 2 and restarts < 3 * len(plans):
                        restarts += 1
                        procs[i] = spawn_worker(study, url, plans[i], folder / f"worker-{i}.log")
            if on_progress:
                on_progress(summary(ostudy))
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()
    return {**summary(ostudy), "worker_failures": deaths}


def worker_error(log: Path) -> str:
    """The error a dead worker's log ends with (its exception's last line), or why there is none."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log ({log})"
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.replace(".", "").replace("_", "").isalnum() and head.endswith(("Error", "Exception", "Interrupt")):
            return line[:300]
    return (lines[-1][:300] if lines else "no output") + f" (log: {log})"
