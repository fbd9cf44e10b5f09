"""Careless runs: folders that cannot be written, damaged run folders, dying workers and a
discrete search space smaller than the budget. Each is refused or reported in one line, and no
finished work is lost or repeated."""

import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from support import tiny_spec, write_study
from workbench.cli import app
from workbench.plumbing.errors import OutputError
from workbench.study.file import load_study
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise

runner = CliRunner()


def test_a_study_whose_trials_folder_cannot_be_written_never_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=2))
    folder = tmp_path / "runs" / study.name
    folder.mkdir(parents=True)
    (folder / "trials").write_text("not a folder")
    with pytest.raises(OutputError, match="trials folder .* is a file"):
        supervise(study, str(tmp_path / "s.journal"), workers=1)
    assert not (tmp_path / "s.journal").exists()              # no storage made, no budget spent


def test_dying_workers_are_reported_with_their_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, trials=1)
    study = load_study(path)
    path.unlink()                                             # the file moved away while the study ran
    result = supervise(study, str(tmp_path / "s.journal"), workers=1, poll=0.2)
    assert result["worker_failures"] and "file not found" in result["worker_failures"][0]
    assert result["worker_failures"][0].startswith("worker 0 exited with 2")


def test_a_discrete_space_never_trains_a_finished_configuration_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, trials=4, search={"model.width": {"choice": [16, 32]}}))
    supervise(study, str(tmp_path / "d.journal"), workers=1, poll=0.2)
    trials = load_existing(study, str(tmp_path / "d.journal")).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["model.width"] for t in complete) == [16, 32]     # the space, once each
    twins = [t for t in trials if t.user_attrs.get("status") == "duplicate"]
    assert twins and all(t.user_attrs["retried"] for t in twins)            # budget given back, not spent


def test_damaged_run_folders_are_one_clear_error(tmp_path):
    run, spec = tmp_path / "run", tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(**{"data": {"source": "synthetic", "documents": 100},
                                                "train.completions": 0, "train.samples": 0}).model_dump(mode="json")))
    trained = runner.invoke(app, ["train", str(spec), "--out", str(run), "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert runner.invoke(app, ["sample", str(run), "--tokens", "4"]).exit_code == 0
    (run / "model.safetensors").write_bytes(b"\x00" * 64)
    broken = runner.invoke(app, ["sample", str(run), "--tokens", "4"])
    assert broken.exit_code == 2 and "model.safetensors" in broken.output and "Traceback" not in broken.output
    (run / "spec.yaml").write_text("model: [")
    broken = runner.invoke(app, ["sample", str(run), "--tokens", "4"])
    assert broken.exit_code == 2 and "spec.yaml" in broken.output
