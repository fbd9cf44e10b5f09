"""Study workers: a killed worker's trial is failed and retried once, on one machine or across
machines sharing only a PostgreSQL URL, and a trial can run data-parallel."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from support import BASE, write_study
from workbench.study.file import load_study
from workbench.study.storage import create_or_resume, load_existing
from workbench.study.supervisor import supervise

SLOW = {**BASE, "train": {**BASE["train"], "budget": {"seconds": 2.0}}}
"""A base spec whose trials train for two seconds: long enough to be killed in the middle."""


def _worker(path: Path, url: str, cwd: Path, host: str | None = None) -> subprocess.Popen:
    env = {**os.environ, **({"WORKBENCH_HOST": host} if host else {})}
    return subprocess.Popen([sys.executable, "-m", "workbench", "study", "worker", str(path), "--storage", url,
                             "--threads", "1"], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _training(ostudy: optuna.Study, worker: str = "", need_done: bool = False) -> optuna.trial.FrozenTrial | None:
    """A trial of `worker` (a prefix) that has chosen its parameters and trained for half a
    second (after a completed trial, with need_done), or None."""
    trials = ostudy.get_trials()
    if need_done and not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    for t in trials:
        if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").startswith(worker) \
                and "run_dir" in t.user_attrs and time.time() - t.datetime_start.timestamp() > 0.5:
            return t
    return None


def _wait_for(find, seconds: float = 120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.1)
    pytest.fail("no trial reached training in time")


def _kill_and_resume(tmp_path: Path, url: str) -> None:
    path = write_study(tmp_path, trials=3, search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}}, base=SLOW)
    study = load_study(path)
    create_or_resume(study, url)
    worker = _worker(path, url, tmp_path)
    ostudy = load_existing(study, url)
    try:
        victim = _wait_for(lambda: _training(ostudy, need_done=True))
        before = {t.number: t.values for t in ostudy.get_trials() if t.state == TrialState.COMPLETE}
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()

    supervise(study, url, workers=1, poll=0.2)
    by_number = {t.number: t for t in load_existing(study, url).get_trials()}
    for number, values in before.items():
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].values == values
    dead = by_number[victim.number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["retried"]
    assert "stopped during the trial" in dead.user_attrs["reason"]
    retries = [t for t in by_number.values() if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == dead.params and dead.params
    assert sum(t.state == TrialState.COMPLETE for t in by_number.values()) == 3 and len(by_number) == 4, \
        [(t.number, t.state, t.user_attrs.get("reason")) for t in by_number.values()]


def test_killed_worker_is_retried_once_on_journal_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _kill_and_resume(tmp_path, str(tmp_path / "k.journal"))


def test_killed_worker_is_retried_once_on_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    _kill_and_resume(tmp_path, postgres_url)


def test_a_study_trial_runs_data_parallel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=1))
    supervise(study, str(tmp_path / "s.journal"), workers=1, poll=0.2, gpus_per_trial=2)
    (trial,) = load_existing(study, str(tmp_path / "s.journal")).get_trials()
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
    assert trial.user_attrs["record"]["devices"] == 2 and trial.user_attrs["spec"]["train"]["devices"] == 2


# ------------------------------------------------------- two machines, one PostgreSQL database


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory, module_postgres_url):
    """Two workers as two machines: separate folders, separate host names, one PostgreSQL URL.
    Machine a is killed mid-trial; machine b notices only through the missing heartbeat (4 s
    grace), fails that trial and runs it again. Returns (folder, victim number, trials by number)."""
    folder, url = tmp_path_factory.mktemp("machines"), module_postgres_url
    path = write_study(folder, trials=4, search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}},
                       heartbeat={"interval": 0.5, "grace": 4.0}, base=SLOW)
    study = load_study(path)
    create_or_resume(study, url)
    for host in ("a", "b"):
        (folder / host).mkdir()
    machines = {host: _worker(path, url, folder / host, f"machine-{host}") for host in ("a", "b")}
    ostudy = load_existing(study, url)
    try:
        victim = _wait_for(lambda: _training(ostudy, "machine-a:")).number
        os.kill(machines["a"].pid, signal.SIGKILL)
        machines["a"].wait()
        assert machines["b"].wait(timeout=180) == 0
    finally:
        for proc in machines.values():
            proc.kill()
    return folder, victim, {t.number: t for t in load_existing(study, url).get_trials()}


def test_the_live_machine_fails_the_dead_machines_trial(two_machines):
    _, victim, trials = two_machines
    dead = trials[victim]
    assert dead.state == TrialState.FAIL and dead.user_attrs["retried"]
    assert "machine-a" in dead.user_attrs["reason"] and "stopped during the trial" in dead.user_attrs["reason"]


def test_the_live_machine_runs_the_dead_trial_again_with_its_parameters(two_machines):
    _, victim, trials = two_machines
    (retry,) = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[victim].params != {}
    assert retry.user_attrs["worker"].startswith("machine-b:")
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 4


def test_each_machines_run_folders_stay_on_that_machine(two_machines):
    folder, _, trials = two_machines
    for t in trials.values():
        if t.state != TrialState.COMPLETE:
            continue
        host = t.user_attrs["worker"].split(":")[0].removeprefix("machine-")
        other = "b" if host == "a" else "a"
        assert (folder / host / t.user_attrs["run_dir"] / "record.json").is_file()
        assert not (folder / other / t.user_attrs["run_dir"]).exists()
