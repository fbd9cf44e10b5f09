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

from workbench.plumbing.errors import StorageError
from workbench.study.ladder import ladder_points
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


def planned_trials(study: StudyFile) -> int:
    return study.spec.trials + len(study.spec.enqueue) + len(ladder_points(study))


def create_or_resume(study: StudyFile, url: str) -> optuna.Study:
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


def _enqueue_overrides(ostudy: optuna.Study, study: StudyFile, entry: dict, origin: str) -> None:
    # Fields the sampler searches go in as fixed params so samplers learn from them; the rest
    # are plain overrides of the base spec.
    searched = {k: v for k, v in entry.items() if k in study.spec.search and not getattr(study.spec.search[k], "divides", None)}
    rest = {k: v for k, v in entry.items() if k not in searched}
    ostudy.enqueue_trial(searched, user_attrs={"origin": origin, "overrides": rest})


def _check_fingerprint(ostudy: optuna.Study, study: StudyFile, fingerprint: str) -> None:
    old = ostudy.user_attrs.get("fingerprint")
    if old != fingerprint:
        raise StorageError(
            f"study {study.name!r} in this storage began with a different search space, base spec, "
            f"objectives, ladder or baselines ({old} != {fingerprint}); results would be mixed. "
            "Rename the study or use another storage.")


def load_existing(study: StudyFile, url: str, **samplers) -> optuna.Study:
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
