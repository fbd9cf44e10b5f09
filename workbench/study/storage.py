"""Where a study's trials live: an Optuna journal file (one machine) or a PostgreSQL database
(many), created with the study's baselines and ladder enqueued, or resumed after checking that
what it measures has not changed; and the lock under which workers claim trials.

Every trial's facts live in the storage (its run record as a user attribute), so status, export,
fits and reports work from any machine that can reach the storage, while run folders (weights,
metrics) stay on the machine that trained them.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna
from optuna.trial import TrialState

from workbench.plumbing.errors import StorageError
from workbench.study.ladder import key, ladder_points
from workbench.study.schema import StudyFile

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_dir(study: StudyFile | str, root: Path = Path("runs")) -> Path:
    """The run folder of a study (or of a study name): its journal, worker logs, trials."""
    return root / (study if isinstance(study, str) else study.name)


def default_storage(study: StudyFile) -> str:
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


def directions(study: StudyFile) -> list[str]:
    return [d for _, d in study.spec.directions()]


def designed(study: StudyFile) -> list[dict]:
    """The runs the study file designs, in order: its baselines, then its ladder's runs. Each is
    {origin, key, entry, point}: `key` tells a run already stored from a new one."""
    runs = [{"origin": "baseline", "key": key(entry), "entry": entry, "point": None} for entry in study.spec.enqueue]
    runs += [{"origin": "ladder", "key": key(run["overrides"]), "entry": run["overrides"], "point": run["point"],
              "points": run["points"]} for run in ladder_points(study)]
    return runs


def create_or_resume(study: StudyFile, url: str) -> optuna.Study:
    """Create the Optuna study, or resume it after checking that what it measures has not
    changed; then queue every designed run (baseline, ladder point, tuning run) not yet stored,
    and withdraw queued ones the file no longer designs. So a ladder grows: finished points are
    kept and only new ones train."""
    storage = open_storage(url)
    with claim_lock(storage, url, study.name):
        try:
            ostudy = optuna.load_study(study_name=study.name, storage=storage)
        except KeyError:
            ostudy = optuna.create_study(study_name=study.name, storage=storage, directions=directions(study))
            ostudy.set_user_attr("fingerprints", study.spec.fingerprints(study.base.digest()))
            ostudy.set_user_attr("objectives", [n for n, _ in study.spec.directions()])
            ostudy.set_user_attr("study_file", str(study.path))
        else:
            _check_fingerprint(ostudy, study)
        _queue_design(ostudy, study)
    return ostudy


def _queue_design(ostudy: optuna.Study, study: StudyFile) -> None:
    trials = ostudy.get_trials(deepcopy=False)
    stored = {_stored_key(t) for t in trials}
    wanted = designed(study)
    for run in wanted:
        if run["key"] in stored:
            continue
        if run["origin"] == "baseline":
            _enqueue_overrides(ostudy, study, run["entry"], "baseline", {"key": run["key"]})
        else:   # a designed point applies all its fields itself: nothing is left to the sampler
            branched = {"branch_points": run["points"]} if len(run["points"]) > 1 else {}
            ostudy.enqueue_trial({}, user_attrs={"origin": "ladder", "overrides": run["entry"], "key": run["key"],
                                                 "point": run["point"], **branched})
    keys = {run["key"] for run in wanted}
    for t in trials:      # queued, never started, and no longer designed: withdrawn, not counted
        if t.state == TrialState.WAITING and t.user_attrs.get("origin") in ("baseline", "ladder") \
                and _stored_key(t) not in keys:
            ostudy._storage.set_trial_user_attr(t._trial_id, "status", "withdrawn")
            ostudy._storage.set_trial_user_attr(t._trial_id, "retried", True)
            ostudy._storage.set_trial_user_attr(t._trial_id, "reason", "no longer in the study file's design")
            ostudy._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    validation = 1 if study.spec.ladder and study.spec.ladder.validate_ else 0
    done = ostudy.get_trials(deepcopy=False)
    # A branched run is a trial for each of its points (its branches are added as they finish).
    ostudy.set_user_attr("planned_trials", study.spec.trials + validation + sum(
        len(t.user_attrs.get("branch_points") or [None]) for t in done
        if t.user_attrs.get("origin") in ("baseline", "ladder") and "branch" not in t.user_attrs
        and not t.user_attrs.get("retried")))


def _stored_key(t: optuna.trial.FrozenTrial) -> str | None:
    """A stored designed run's key (studies begun before keys were stored: its overrides)."""
    attrs = t.user_attrs
    if attrs.get("origin") not in ("baseline", "ladder") or "branch" in attrs:     # a branch is its run's
        return None
    return attrs.get("key") or key({**t.system_attrs.get("fixed_params", {}), **attrs.get("overrides", {})})


def _enqueue_overrides(ostudy: optuna.Study, study: StudyFile, entry: dict, origin: str, attrs: dict) -> None:
    # Fields the sampler searches go in as fixed params so samplers learn from them; the rest
    # are plain overrides of the base spec.
    searched = {k: v for k, v in entry.items() if k in study.spec.search and not getattr(study.spec.search[k], "divides", None)}
    rest = {k: v for k, v in entry.items() if k not in searched}
    ostudy.enqueue_trial(searched, user_attrs={"origin": origin, "overrides": rest, **attrs})


def _check_fingerprint(ostudy: optuna.Study, study: StudyFile) -> None:
    now = study.spec.fingerprints(study.base.digest())
    old = ostudy.user_attrs.get("fingerprints")
    if old is None:             # begun before fingerprints were kept part by part
        raise StorageError(f"study {study.name!r} in this storage was begun by an older workbench whose "
                           "records cannot be matched run by run; rename the study or use another storage")
    changed = [name for name in now if name in old and old[name] != now[name]]
    if changed:
        raise StorageError(
            f"study {study.name!r} in this storage began with a different {', '.join(changed)}; results "
            "would be mixed. Rename the study or use another storage (adding ladder points, baselines or "
            "trials is fine)")


def load_existing(study: StudyFile, url: str, **samplers) -> optuna.Study:
    """The study as stored (raising StorageError if absent or changed); `sampler=` and
    `pruner=` are passed to Optuna for a worker."""
    storage = open_storage(url)
    try:
        ostudy = optuna.load_study(study_name=study.name, storage=storage, **samplers)
    except KeyError:
        raise StorageError(f"no study {study.name!r} in {_redact(url)}; start it with "
                           "`workbench study run`") from None
    _check_fingerprint(ostudy, study)
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
