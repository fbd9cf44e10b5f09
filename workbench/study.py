"""Running a study: Optuna storage, trial claiming within the budget, heartbeats, retrying the
trials of dead workers, the worker loop, and the supervisor behind `workbench study run`.

Every trial's facts live in the storage (its run record as a user attribute), so status, export,
fits and reports work from any machine that can reach the storage, while run folders (weights,
metrics) stay on the machine that trained them.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.trial import TrialState

from workbench.devices import WorkerPlan, gpu_count, plan_workers
from workbench.parallel import die_with_parent
from workbench.search import Infeasible, Study, ladder_points, make_pruner, make_sampler, sample, spec_for
from workbench.studyspec import PRUNABLE

optuna.logging.set_verbosity(optuna.logging.WARNING)

# A machine's name in the storage; set WORKBENCH_HOST where machines share a hostname (containers).
HOST = os.environ.get("WORKBENCH_HOST") or socket.gethostname()
WORKER_ID = f"{HOST}:{os.getpid()}"


class StorageError(Exception):
    """The storage cannot be reached or does not hold what was asked for."""


# --------------------------------------------------------------------------------- storage


def study_dir(study: Study, root: Path = Path("runs")) -> Path:
    return root / study.name


def default_storage(study: Study) -> str:
    return str(study_dir(study) / "study.journal")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file (a plain path: embedded, safe for many processes on one machine) or an
    RDB URL (postgresql+psycopg://...: shared by machines)."""
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    kwargs = {"pool_pre_ping": True} if url.startswith("postgresql") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:
        raise StorageError(f"cannot reach storage {_redact(url)}: {str(e).splitlines()[0]}") from None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def directions(study: Study) -> list[str]:
    return [d for _, d in study.spec.directions()]


def planned_trials(study: Study) -> int:
    return study.spec.trials + len(study.spec.enqueue) + len(ladder_points(study))


def create_or_resume(study: Study, url: str) -> optuna.Study:
    """Create the Optuna study (enqueueing baselines and ladder points), or resume it after
    checking that its search space is still the one it began with."""
    storage = open_storage(url)
    fingerprint = study.spec.fingerprint(study.base.digest())
    with claim_lock(storage, url, study.name):
        try:
            ostudy = optuna.load_study(study_name=study.name, storage=storage)
        except KeyError:
            ostudy = optuna.create_study(study_name=study.name, storage=storage, directions=directions(study))
            ostudy.set_user_attr("fingerprint", fingerprint)
            ostudy.set_user_attr("planned_trials", planned_trials(study))
            ostudy.set_user_attr("objectives", [n for n, _ in study.spec.directions()])
            ostudy.set_user_attr("study_file", str(study.path))
            for entry in study.spec.enqueue:
                _enqueue_overrides(ostudy, study, entry, "baseline")
            for point in ladder_points(study):
                ostudy.enqueue_trial({}, user_attrs={"origin": "ladder", "overrides": point})
            return ostudy
        _check_fingerprint(ostudy, study, fingerprint)
        # The trial budget may grow (or shrink) between runs of one study; the space may not.
        ostudy.set_user_attr("planned_trials", planned_trials(study))
    return ostudy


def _enqueue_overrides(ostudy: optuna.Study, study: Study, entry: dict, origin: str) -> None:
    # Fields the sampler searches go in as fixed params so samplers learn from them; the rest
    # are plain overrides of the base spec.
    searched = {k: v for k, v in entry.items() if k in study.spec.search and not getattr(study.spec.search[k], "divides", None)}
    rest = {k: v for k, v in entry.items() if k not in searched}
    ostudy.enqueue_trial(searched, user_attrs={"origin": origin, "overrides": rest})


def _check_fingerprint(ostudy: optuna.Study, study: Study, fingerprint: str) -> None:
    old = ostudy.user_attrs.get("fingerprint")
    if old != fingerprint:
        raise StorageError(
            f"study {study.name!r} in this storage began with a different search space, base spec, "
            f"objectives, ladder or baselines ({old} != {fingerprint}); results would be mixed. "
            "Rename the study or use another storage.")


def load_existing(study: Study, url: str, **samplers) -> optuna.Study:
    """The study as stored (raising StorageError if absent or changed); `sampler=` and
    `pruner=` are passed to Optuna for a worker."""
    storage = open_storage(url)
    try:
        ostudy = optuna.load_study(study_name=study.name, storage=storage, **samplers)
    except KeyError:
        raise StorageError(f"no study {study.name!r} in {_redact(url)}; start it with "
                           "`workbench study run`") from None
    _check_fingerprint(ostudy, study, study.spec.fingerprint(study.base.digest()))
    return ostudy


@contextmanager
def claim_lock(storage: optuna.storages.BaseStorage, url: str, name: str) -> Iterator[None]:
    """Serialise budget checks and retries across processes: a file lock beside a journal, a
    PostgreSQL advisory lock for a shared database."""
    if "://" not in url:
        with open(f"{url}.claim", "a") as f:   # not `.lock`: the journal backend owns that name
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    if url.startswith("postgresql"):
        from sqlalchemy import text
        key = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFFFFFFFFFF
        rdb = getattr(storage, "_backend", storage)       # optuna wraps RDB storages in a cache
        with rdb.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    yield


# ---------------------------------------------------------------------------------- trials


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that use the budget: all but those replaced by a retry."""
    return sum(1 for t in trials if not t.user_attrs.get("retried"))


def claim(ostudy: optuna.Study, study: Study, url: str) -> optuna.Trial | None:
    """The next trial to run (a waiting one first), or None when the budget is spent."""
    with claim_lock(ostudy._storage, url, study.name):
        reap(ostudy, study, url, locked=True)
        trials = ostudy.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and counted(trials) >= ostudy.user_attrs.get("planned_trials", 0):
            return None
        trial = ostudy.ask()
        trial.set_user_attr("worker", WORKER_ID)
        trial.set_user_attr("heartbeat", time.time())
        trial.set_user_attr("origin", trial.user_attrs.get("origin", "search"))
        return trial


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


def reap(ostudy: optuna.Study, study: Study, url: str, locked: bool = False) -> int:
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
            ostudy.enqueue_trial(t.params, user_attrs={
                "origin": t.user_attrs.get("origin", "search"), "overrides": t.user_attrs.get("overrides", {}),
                "retries": retries + 1, "retry_of": t.number})
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


def objective_values(study: Study, record: Any) -> list[float]:
    suite = record.suite
    pick = {"val_bpb": record.val_bpb, "val_loss": record.val_loss, "params": record.params["total"],
            "flops": record.compute["6N+attn"], "tokens_per_s": record.tokens_per_s,
            "wall_time": record.wall_s, "top1": suite and suite.metrics.top1,
            "completion_exact": suite and suite.completion and suite.completion.exact_match,
            "completion_bleu": suite and suite.completion and suite.completion.bleu,
            "int8_bpb": suite and suite.int8_bpb, "finetune_val_bpb": record.finetune_val_bpb,
            "finetune_val_loss": record.finetune_val_loss, "finetune_gain_bpb": record.finetune_gain_bpb,
            "forgetting_bpb": record.forgetting_bpb}
    values = [pick[name] for name, _ in study.spec.directions()]
    missing = [name for (name, _), v in zip(study.spec.directions(), values) if v is None]
    if missing and record.suite_error:
        raise ValueError(f"the run has no {', '.join(missing)}: its evaluation suite failed ({record.suite_error})")
    if missing:
        raise ValueError(f"the run has no {', '.join(missing)} (no held-out completion task: "
                         "train.completions is 0, or no held-out line of 16-160 characters)")
    return [float(v) for v in values]


def run_trial(ostudy: optuna.Study, study: Study, trial: optuna.Trial, root: Path,
              devices: int | None = None) -> str:
    """Sample, check and train one trial (on `devices` data-parallel processes when given),
    then tell the storage; returns its status. Errors inside the trial are recorded on it and
    never escape."""
    import torch

    from workbench.record import Pruned
    from workbench.train import train

    start = time.perf_counter()
    attrs = trial.user_attrs
    overrides = attrs.get("overrides", {})
    try:
        chosen = overrides if attrs.get("origin") == "ladder" else sample(trial, study, overrides)
        spec = spec_for(study, {**chosen, **({"train.devices": devices} if devices else {})}, trial.number)
    except Infeasible as e:
        return _finish(ostudy, trial, "infeasible", str(e))
    trial.set_user_attr("fields", chosen)
    trial.set_user_attr("spec", spec.model_dump(mode="json"))
    run_dir = root / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    # Ladder points and baselines are a designed experiment: they always run to the end.
    can_prune = len(study.spec.directions()) == 1 and study.spec.pruner.kind != "none" \
        and attrs.get("origin", "search") == "search"
    # Prune on the curve of what the objective measures: the fine-tuning corpus's after fine-tuning
    # (or for the suite of a fine-tuned model), else the pretraining corpus's; bpb or loss alike.
    objective = study.spec.directions()[0][0]
    judged = "finetune" if spec.finetune and objective not in ("val_bpb", "val_loss") else "pretrain"
    watched = PRUNABLE.get(objective, "val_bpb")
    evals = 0

    def report(point) -> None:
        nonlocal evals
        if point.phase != judged:
            return
        evals += 1
        if can_prune:
            value = getattr(point, watched)
            trial.report(value, point.step)
            if evals > study.spec.pruner.warmup_evals and trial.should_prune():
                raise Pruned(f"pruned at step {point.step} ({watched.replace('_', ' ')} {value:.4f})")

    try:
        with Heartbeat(ostudy._storage, trial._trial_id, study.spec.heartbeat.interval):
            before_train = time.perf_counter() - start
            record = train(spec, run_dir, on_eval=report)
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


def work(study: Study, url: str, index: int = 0, root: Path | None = None, devices: int | None = None) -> int:
    """The worker loop: claim, run, repeat until the budget is spent and no other worker's
    trial is still running (a dead worker's trial is then retried here). Returns trials run."""
    ostudy = load_existing(study, url, sampler=make_sampler(study, index), pruner=make_pruner(study))
    root = root or study_dir(study)
    n = 0
    while True:
        trial = claim(ostudy, study, url)
        if trial is None:
            if not ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return n
            time.sleep(study.spec.heartbeat.interval)
            continue
        run_trial(ostudy, study, trial, root, devices)
        n += 1


# ------------------------------------------------------------------------------ supervisor


def spawn_worker(study: Study, url: str, plan: WorkerPlan, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "workbench", "study", "worker", str(study.path), "--storage", url,
           "--index", str(plan.index), "--threads", str(plan.threads), "--gpus-per-trial", str(plan.devices)]
    env = {**os.environ, **plan.env, "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "a") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                # SIGKILL: a killed study leaves no orphans training on; their
                                # trials are then retried on resume.
                                preexec_fn=partial(die_with_parent, signal.SIGKILL) if sys.platform == "linux" else None)


def summary(ostudy: optuna.Study) -> dict[str, Any]:
    """Counts by state and status, the best trials, and failures with their reasons."""
    trials = ostudy.get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.state.name.lower()] = by_state.get(t.state.name.lower(), 0) + 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    objectives = ostudy.user_attrs.get("objectives", ["value"])
    if len(ostudy.directions) == 1:
        sign = 1 if ostudy.direction == optuna.study.StudyDirection.MINIMIZE else -1
        best = sorted(complete, key=lambda t: sign * t.values[0])[:5]
    else:
        best = ostudy.best_trials
    return {
        "study": ostudy.study_name,
        "planned": ostudy.user_attrs.get("planned_trials"),
        "counted": counted(trials),
        "states": by_state,
        "objectives": objectives,
        "best": [{"number": t.number, "values": t.values, "fields": t.user_attrs.get("fields", {})}
                 for t in best],
        "failures": [{"number": t.number, "status": t.user_attrs.get("status"), "reason": t.user_attrs.get("reason")}
                     for t in trials if t.state == TrialState.FAIL],
    }


def supervise(study: Study, url: str, workers: int | str, on_progress=None, poll: float = 1.0,
              trials_per_gpu: int = 1, gpus_per_trial: int | None = None) -> dict:
    """Create or resume the study, run worker processes (see devices.plan_workers) until the
    budget is spent, replacing workers that die (their trials are retried); returns the summary.
    Each trial runs on gpus_per_trial data-parallel devices (default: the base spec's
    train.devices)."""
    ostudy = create_or_resume(study, url)
    reap(ostudy, study, url)
    folder = study_dir(study)
    folder.mkdir(parents=True, exist_ok=True)
    plans = plan_workers(workers, gpu_count(), trials_per_gpu,
                         gpus_per_trial=gpus_per_trial or study.base.train.devices)
    procs = {p.index: spawn_worker(study, url, p, folder / f"worker-{p.index}.log") for p in plans}
    restarts = 0
    try:
        while procs:
            time.sleep(poll)
            for i, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del procs[i]
                if code != 0:
                    reap(ostudy, study, url)
                    left = counted(ostudy.get_trials(deepcopy=False)) < ostudy.user_attrs["planned_trials"] or \
                        ostudy.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                    if left and restarts < 3 * len(plans):
                        restarts += 1
                        procs[i] = spawn_worker(study, url, plans[i], folder / f"worker-{i}.log")
            if on_progress:
                on_progress(summary(ostudy))
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()
    return summary(ostudy)
