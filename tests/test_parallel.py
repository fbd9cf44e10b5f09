"""Scale-out on CPU: data-parallel runs over gloo, and a study shared by two 'machines' that
have nothing in common but a PostgreSQL URL."""

import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from support import BASE, write_study
from support import two_phase
from support import tiny_spec
from workbench.plumbing.errors import DataError
from workbench.plumbing.errors import LaunchError
from workbench.train.parallel import launch
from workbench.record import read_record
from workbench.study.file import load_study
from workbench.study.storage import create_or_resume, load_existing
from workbench.study.supervisor import supervise
from workbench.record import Pruned
from workbench.train.loop import train


def _dp(spec, devices=2, **train_fields):
    return spec.model_copy(update={"train": spec.train.model_copy(update={"devices": devices, **train_fields})})


def test_two_process_run_matches_one_process(tmp_path):
    """The same global batches split over two gloo processes: the same optimisation, in
    pretraining and in fine-tuning on responses only (ranks hold unequal numbers of targets)."""
    one = two_phase(**{"train.budget": {"steps": 12}, "train.batch_tokens": 512, "train.eval_every": 4})
    a = train(one, tmp_path / "one")
    b = train(_dp(one), tmp_path / "two")
    assert b.status == "completed" and b.devices == 2 and b.device.endswith("x2")
    assert [p.step for p in b.curve] == [p.step for p in a.curve] == [4, 8, 12]
    assert [p.step for p in b.finetune_curve] == [p.step for p in a.finetune_curve] == list(range(7))
    for p, q in zip(a.curve + a.finetune_curve, b.curve + b.finetune_curve):
        assert q.val_loss == pytest.approx(p.val_loss, rel=1e-5)
        assert q.train_loss == pytest.approx(p.train_loss, rel=1e-4)
    assert b.forgetting_bpb == pytest.approx(a.forgetting_bpb, rel=1e-4)
    assert b.suite.int8_bpb == pytest.approx(a.suite.int8_bpb, rel=1e-5)
    assert read_record(tmp_path / "two") == b and (tmp_path / "two" / "model.safetensors").is_file()


def test_pruning_a_data_parallel_run_stops_every_rank_at_the_judged_step(tmp_path):
    seen = []

    def judge(point):
        seen.append(point.step)
        if point.step >= 4:
            raise Pruned(f"judged at step {point.step}")

    spec = _dp(tiny_spec(**{"train.budget": {"steps": 12}, "train.batch_tokens": 512}), eval_every=2)
    record = train(spec, tmp_path / "run", on_eval=judge)
    assert seen == [2, 4]
    assert record.status == "pruned" and record.reason == "judged at step 4" and record.steps == 4


def test_a_failing_rank_is_one_clear_error_naming_the_cause(tmp_path):
    spec = _dp(tiny_spec(**{"data": {"source": "files", "paths": [str(tmp_path / "missing.txt")]}}))
    with pytest.raises(DataError, match="missing.txt: no such file"):
        train(spec, tmp_path / "run")         # found by the caller, before any process starts
    with pytest.raises(LaunchError, match=r"exited with 1 .*DataError: data.paths\[0\]: .*missing.txt: no such file"):
        launch(spec, tmp_path / "run")        # found by a rank: its error, not the others' aftermath


def test_a_study_trial_runs_data_parallel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=1))
    supervise(study, str(tmp_path / "s.journal"), workers=1, poll=0.2, gpus_per_trial=2)
    (trial,) = load_existing(study, str(tmp_path / "s.journal")).get_trials()
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
    assert trial.user_attrs["record"]["devices"] == 2 and trial.user_attrs["spec"]["train"]["devices"] == 2


def test_two_machines_share_a_study_and_retry_a_dead_machines_trial(tmp_path, postgres_url):
    """Two workers as two machines: separate folders, separate host names, one PostgreSQL URL.
    Machine a is killed mid-trial; machine b notices only through the missing heartbeat, fails
    that trial and runs it again."""
    grace = 4.0
    path = write_study(tmp_path, trials=4, search={"model.width": {"choice": [32, 64]}},
                       heartbeat={"interval": 0.5, "grace": grace},
                       base={**BASE, "train": {**BASE["train"], "budget": {"seconds": 2.0}}})
    study = load_study(path)
    create_or_resume(study, postgres_url)
    machines = {}
    for host in ("a", "b"):
        (tmp_path / host).mkdir()
        machines[host] = subprocess.Popen(
            [sys.executable, "-m", "workbench", "study", "worker", str(path), "--storage", postgres_url,
             "--threads", "1"], cwd=tmp_path / host, env={**os.environ, "WORKBENCH_HOST": f"machine-{host}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ostudy = load_existing(study, postgres_url)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            running = [t for t in ostudy.get_trials(states=(TrialState.RUNNING,))
                       if t.user_attrs.get("worker", "").startswith("machine-a:")
                       and time.time() - t.datetime_start.timestamp() > 0.5]
            if running:
                break
            time.sleep(0.1)
        else:
            pytest.fail("machine a never ran a trial")
        victim = running[0].number
        os.kill(machines["a"].pid, signal.SIGKILL)
        machines["a"].wait()
        assert machines["b"].wait(timeout=180) == 0
    finally:
        for proc in machines.values():
            proc.kill()

    trials = {t.number: t for t in load_existing(study, postgres_url).get_trials()}
    dead = trials[victim]
    assert dead.state == TrialState.FAIL and dead.user_attrs["retried"]
    assert "machine-a" in dead.user_attrs["reason"] and "stopped during the trial" in dead.user_attrs["reason"]
    (retry,) = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["worker"].startswith("machine-b:")
    complete = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    for t in complete:                      # each machine's run folders stay on that machine
        host = t.user_attrs["worker"].split(":")[0].removeprefix("machine-")
        other = "b" if host == "a" else "a"
        assert (tmp_path / host / t.user_attrs["run_dir"] / "record.json").is_file()
        assert not (tmp_path / other / t.user_attrs["run_dir"]).exists()
