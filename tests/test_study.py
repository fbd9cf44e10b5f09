"""Studies: search spaces, budgets, workers, crash recovery and export, on real storages."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import polars as pl
import pytest
import yaml
from optuna.trial import TrialState

from support import BASE, STUDIES, write_study
from workbench.study.table import trials_table, write_table
from workbench.study.file import load_study
from workbench.study.ladder import ladder_points
from workbench.study.samplers import PRUNERS, SAMPLERS
from workbench.study.space import Infeasible, grid, suggest as sample, spec_for
from workbench.plumbing.errors import SpecError
from workbench.plumbing.errors import StorageError
from workbench.study.storage import create_or_resume, load_existing, open_storage
from workbench.study.supervisor import supervise

@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_example_studies_validate(path):
    study = load_study(path)
    assert study.name == path.stem
    for point in ladder_points(study):
        spec_for(study, point, 0)


def test_every_distribution_kind_and_conditionals(tmp_path):
    study = load_study(write_study(tmp_path, search={
        "model.depth": {"int": [1, 4], "step": 1},
        "train.lr": {"float": [1e-4, 1e-2], "log": True},
        "model.positional.kind": {"choice": ["rope", "learned"]},
        "model.positional.theta": {"float": [1e3, 1e5], "log": True, "when": {"model.positional.kind": "rope"}},
        "model.heads": {"choice": [1, 2, 4]},
        "model.kv_heads": {"choice": [1, 2, 4], "divides": "model.heads"},
    }))
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_kinds = set()
    for _ in range(30):
        trial = ostudy.ask()
        chosen = sample(trial, study)
        spec = spec_for(study, chosen, trial.number)
        seen_kinds.add(spec.model.positional.kind)
        assert 1 <= spec.model.depth <= 4 and 1e-4 <= spec.train.lr <= 1e-2
        assert ("model.positional.theta" in chosen) == (spec.model.positional.kind == "rope")
        assert spec.model.heads % spec.model.kv_heads == 0
        assert f"model.kv_heads[model.heads={spec.model.heads}]" in trial.params
        ostudy.tell(trial, 1.0)
    assert seen_kinds == {"rope", "learned"}


def test_infeasible_samples_carry_their_reason(tmp_path):
    study = load_study(write_study(tmp_path, constraints=["params <= 1000"],
                                   search={"model.heads": {"choice": [3]}}))
    trial = optuna.create_study().ask()
    with pytest.raises(Infeasible, match="heads"):
        spec_for(study, sample(trial, study), 0)           # width 32 not divisible by 3
    with pytest.raises(Infeasible, match="constraint 'params <= 1000' violated"):
        spec_for(study, {}, 0)


def test_study_errors_name_file_line_and_field(tmp_path):
    path = write_study(tmp_path, search={"model.depht": {"int": [1, 2]}}, objectives=["accuracy"])
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert any(i.field == "objectives" and "unknown objective" in i.message for i in info.value.issues)
    path = write_study(tmp_path, search={"model.depht": {"int": [1, 2]}})
    with pytest.raises(SpecError) as info:
        load_study(path)
    [issue] = info.value.issues
    assert issue.field == "search.model.depht" and issue.line is not None and "not a field" in issue.message


def test_two_workers_complete_exactly_the_budget(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, trials=4, search={"model.width": {"choice": [32, 64]}},
                       enqueue=[{"model.width": 32}, {"model.init_std": 1e30}],
                       ladder={"tokens": [256, 512], "sizes": [{"model.depth": 1}, {"model.depth": 2}]},
                       constraints=["params <= 200000"])
    study = load_study(path)
    result = supervise(study, str(tmp_path / "s.journal"), workers=2, poll=0.2)
    ostudy = load_existing(study, str(tmp_path / "s.journal"))
    trials = ostudy.get_trials()
    assert len(trials) == 4 + 2 + 4 and result["counted"] == 10
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 9 and len(failed) == 1
    assert failed[0].user_attrs["status"] == "diverged" and "nan" in failed[0].user_attrs["reason"]
    ladder = [tuple(sorted((k, str(v)) for k, v in t.user_attrs["fields"].items()))
              for t in trials if t.user_attrs["origin"] == "ladder"]
    assert len(ladder) == len(set(ladder)) == 4
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2
    for t in complete:
        assert Path(t.user_attrs["run_dir"], "record.json").is_file()

    df = trials_table(ostudy)
    write_table(df, tmp_path / "out.parquet")
    back = pl.read_parquet(tmp_path / "out.parquet")
    assert back.equals(df) and back.height == 10
    for column in ("spec.model.width", "params.total", "params.nonembedding", "tokens", "compute.6N+attn",
                   "val_bpb", "status", "reason", "tokens_per_s", "peak_memory_bytes", "curve"):
        assert column in back.columns
    assert back.filter(pl.col("status") == "completed")["val_bpb"].null_count() == 0
    assert isinstance(back["curve"].dtype, pl.List)

    # The same study with a different search space is refused, not mixed.
    changed = write_study(tmp_path, name=study.name, trials=4, search={"model.width": {"choice": [32, 48]}})
    with pytest.raises(StorageError, match="different search space"):
        create_or_resume(load_study(changed), str(tmp_path / "s.journal"))


def _kill_and_resume(tmp_path: Path, url: str) -> None:
    path = write_study(tmp_path, trials=3, search={"model.width": {"choice": [32, 64]}},
                       base={**BASE, "train": {**BASE["train"], "budget": {"seconds": 2.0}}})
    study = load_study(path)
    create_or_resume(study, url)
    worker = subprocess.Popen([sys.executable, "-m", "workbench", "study", "worker", str(path), "--storage", url],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ostudy = load_existing(study, url)
    deadline = time.time() + 120
    while time.time() < deadline:
        trials = ostudy.get_trials()
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if done and running and time.time() - running[0].datetime_start.timestamp() > 0.5:
            break
        time.sleep(0.1)
    else:
        worker.kill()
        pytest.fail("the worker never completed a trial")
    before = {t.number: t.values for t in done}
    victim = running[0].number
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    supervise(study, url, workers=1, poll=0.2)
    trials = load_existing(study, url).get_trials()
    by_number = {t.number: t for t in trials}
    for number, values in before.items():
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].values == values
    assert by_number[victim].state == TrialState.FAIL and by_number[victim].user_attrs["retried"]
    assert "stopped during the trial" in by_number[victim].user_attrs["reason"]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == by_number[victim].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3 and len(trials) == 4


def test_killed_worker_is_retried_once_on_journal_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _kill_and_resume(tmp_path, str(tmp_path / "k.journal"))


def test_two_workers_on_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=4, search={"model.width": {"choice": [32, 64]}}))
    supervise(study, postgres_url, workers=2, poll=0.2)
    trials = load_existing(study, postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_killed_worker_is_retried_once_on_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    _kill_and_resume(tmp_path, postgres_url)


def test_unreachable_storage_is_one_clear_error(tmp_path):
    with pytest.raises(StorageError, match="cannot reach storage"):
        open_storage("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_cli_study_status_and_export(tmp_path):
    path = write_study(tmp_path, trials=2, search={"model.width": {"choice": [32, 64]}})
    run = subprocess.run([sys.executable, "-m", "workbench", "study", "run", str(path), "--workers", "1"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    status = subprocess.run([sys.executable, "-m", "workbench", "study", "status", str(path), "--json"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert '"complete": 2' in status.stdout
    export = subprocess.run([sys.executable, "-m", "workbench", "study", "export", str(path), "-o", "r.parquet"],
                            cwd=tmp_path, capture_output=True, text=True)
    exported = pl.read_parquet(tmp_path / "r.parquet")
    assert export.returncode == 0 and exported.filter(pl.col("status") == "completed").height == 2


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_every_named_sampler_proposes_valid_specs(tmp_path, kind):
    search = {"model.depth": {"int": [1, 3]}, "model.width": {"choice": [32, 64]}}
    if kind != "grid":
        search["train.lr"] = {"float": [1e-4, 1e-2], "log": True}
    study = load_study(write_study(tmp_path, search=search, sampler={"kind": kind, "seed": 3}))
    ostudy = optuna.create_study(sampler=SAMPLERS[kind].make(3, grid(study)), pruner=PRUNERS["median"].make())
    for i in range(4):
        trial = ostudy.ask()
        spec = spec_for(study, sample(trial, study), trial.number)
        ostudy.tell(trial, spec.model.depth + spec.model.width / 100)
    assert len({tuple(sorted(t.params.items())) for t in ostudy.trials}) >= 2


@pytest.mark.parametrize("kind", list(PRUNERS))
def test_every_named_pruner_builds(tmp_path, kind):
    study = load_study(write_study(tmp_path, pruner={"kind": kind}))
    assert isinstance(PRUNERS[study.spec.pruner.kind].make(), optuna.pruners.BasePruner)


def test_two_objectives_give_a_pareto_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=4, objectives=["val_bpb", {"params": "minimize"}],
                                   sampler={"kind": "nsga2", "seed": 0},
                                   search={"model.width": {"choice": [32, 64]}, "model.depth": {"int": [1, 2]}}))
    result = supervise(study, str(tmp_path / "p.journal"), workers=1, poll=0.2)
    assert result["states"]["complete"] == 4 and not result["failures"]     # four distinct configurations
    assert result["best"] and all(len(t["values"]) == 2 for t in result["best"])


def test_multi_objective_studies_cannot_prune(tmp_path):
    with pytest.raises(SpecError, match="cannot prune"):
        load_study(write_study(tmp_path, objectives=["val_bpb", "params"], pruner={"kind": "median"}))


def test_resume_with_a_larger_budget_runs_only_the_new_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, trials=2, search={"model.width": {"choice": [32, 48, 64]}})
    study = load_study(path)
    url = str(tmp_path / "g.journal")
    supervise(study, url, workers=1, poll=0.2)
    first = {t.number: t.values for t in load_existing(study, url).get_trials() if t.state == TrialState.COMPLETE}
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "trials": 3}))
    result = supervise(load_study(path), url, workers=1, poll=0.2)
    trials = [t for t in load_existing(study, url).get_trials() if t.state == TrialState.COMPLETE]
    assert result["states"]["complete"] == 3 and len(trials) == 3
    assert len({t.params["model.width"] for t in trials}) == 3          # no finished configuration twice
    assert {t.number: t.values for t in trials if t.number in first} == first


def test_pruners_judge_only_what_the_evaluation_curve_measures(tmp_path):
    with pytest.raises(SpecError, match="judges trials by their evaluation loss, not by top1"):
        load_study(write_study(tmp_path, objectives=["top1"], pruner={"kind": "median"}))
    assert load_study(write_study(tmp_path, objectives=["top1"])).spec.directions() == [("top1", "maximize")]
    no_tasks = {**BASE, "train": {**BASE["train"], "completions": 0}}
    with pytest.raises(SpecError, match="completion objectives need train.completions above 0"):
        load_study(write_study(tmp_path, objectives=["completion_bleu"], base=no_tasks))
