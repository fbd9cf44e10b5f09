"""Running studies: workers complete exactly the budget, baselines and ladder points run once,
studies resume with a larger budget, several objectives give a Pareto front, and the example
fine-tuning study runs at tiny scale."""

from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from support import ROOT, write_study
from workbench.scaling.runs import load_runs
from workbench.specfile import load_spec
from workbench.study.file import load_study
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise


def test_two_workers_complete_exactly_the_budget(finished_study):
    trials = finished_study.ostudy.get_trials()
    assert len(trials) == 4 + 2 + 4 and finished_study.result["counted"] == 10
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 9 and len(failed) == 1
    assert failed[0].user_attrs["status"] == "diverged" and "nan" in failed[0].user_attrs["reason"]
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_every_ladder_point_runs_once(finished_study):
    trials = finished_study.ostudy.get_trials()
    ladder = [tuple(sorted((k, str(v)) for k, v in t.user_attrs["fields"].items()))
              for t in trials if t.user_attrs["origin"] == "ladder"]
    assert len(ladder) == len(set(ladder)) == 4
    assert sorted(t.user_attrs["origin"] for t in trials) == ["baseline"] * 2 + ["ladder"] * 4 + ["search"] * 4


def test_the_summary_keeps_search_baselines_and_ladder_apart(finished_study):
    s, trials = finished_study.result, finished_study.ostudy.get_trials()
    searched = {t.number: t.values for t in trials if t.user_attrs["origin"] == "search" and t.state == TrialState.COMPLETE}
    assert [t["number"] for t in s["best"]] == sorted(searched, key=lambda n: searched[n][0])
    assert sorted(t["status"] for t in s["baselines"]) == ["completed", "diverged"]
    assert s["ladder"] == {"planned": 4, "done": 4, "failed": 0, "running": 0}
    assert s["roles"] == {"search": {"complete": 4}, "baseline": {"complete": 1, "fail": 1}, "ladder": {"complete": 4}}
    assert [(f["role"], f["status"]) for f in s["failures"]] == [("baseline", "diverged")]


def test_completed_trials_keep_their_run_folders(finished_study):
    for t in finished_study.ostudy.get_trials(states=(TrialState.COMPLETE,)):
        assert (finished_study.folder / t.user_attrs["run_dir"] / "record.json").is_file()
    assert sorted(p.name for p in (finished_study.folder / "runs" / finished_study.study.name).glob("worker-*.log")) \
        == ["worker-0.log", "worker-1.log"]


def test_two_workers_on_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=4, search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}}))
    supervise(study, postgres_url, workers=2, poll=0.2)
    trials = load_existing(study, postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_two_objectives_give_a_pareto_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=4, objectives=["val_bpb", {"params": "minimize"}],
                                   sampler={"kind": "nsga2", "seed": 0},
                                   search={"model.width": {"choice": [32, 64]}, "model.depth": {"int": [1, 2]}}))
    result = supervise(study, str(tmp_path / "p.journal"), workers=1, poll=0.2)
    assert result["states"]["complete"] == 4 and not result["failures"]     # the space's 4 configurations
    assert result["best"] and all(len(t["values"]) == 2 for t in result["best"])


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


def _tiny_finetune_study(tmp_path: Path) -> Path:
    """specs/finetune-docstrings.yaml and studies/finetune.yaml, shrunk only in budget."""
    small = {"train": {"budget": {"tokens": 8192}, "eval_bytes": 4096, "completions": 4},
             "finetune": {"budget": {"tokens": 4096}, "eval_bytes": 2048},
             "data": {"source": "python-stdlib", "max_bytes": 200_000}}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"extends": str(ROOT / "specs" / "finetune-docstrings.yaml"),
                                         "name": "tiny-finetune", **small}))
    spec = load_spec(spec_path)
    assert spec.finetune.data.source == "python-docstrings" and spec.model.width == 128
    study_data = yaml.safe_load((ROOT / "studies" / "finetune.yaml").read_text())
    assert study_data["objectives"] == ["finetune_val_bpb"]
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump({**study_data, "base": str(spec_path), "trials": 2}))
    return study_path


def test_the_example_fine_tuning_study_runs_at_tiny_scale(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study_path = _tiny_finetune_study(tmp_path)
    study = load_study(study_path)
    url = str(tmp_path / "s.journal")
    supervise(study, url, workers=1, poll=0.2)
    trials = load_existing(study, url).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.values == [t.user_attrs["record"]["finetune_val_bpb"]]
    runs, prov = load_runs(study_path, storage=url)            # scaling.loss: finetune_val_bpb
    assert prov.conventions.loss == "finetune_val_bpb"
    assert sorted(runs["loss"].to_list()) == sorted(t.values[0] for t in trials)
    assert sorted(runs["flops"].to_list()) == pytest.approx(
        sorted(t.user_attrs["record"]["compute"]["6N+attn"] for t in trials))
