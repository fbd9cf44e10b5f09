"""A width-transfer study (mup) trained for real: the report draws the learning rate against
width, each width's best marked; a standard-parametrisation study gets no such figure."""

import pytest

from support import BASE, write_study
from workbench.report.page import build
from workbench.study.file import load_study
from workbench.study.storage import create_or_resume, default_storage
from workbench.study.table import load_trials
from workbench.study.worker import work


@pytest.mark.parametrize("parametrization", ["mup", "standard"])
def test_the_report_draws_learning_rate_against_width_for_mup_studies(tmp_path, monkeypatch, parametrization):
    monkeypatch.chdir(tmp_path)
    model = {**BASE["model"], "parametrization": parametrization, "base_width": 32}
    base = {**BASE, "model": model, "train": {**BASE["train"], "completions": 0, "samples": 0}}
    study = load_study(write_study(tmp_path, name=f"t-{parametrization}", base=base, trials=4, sampler={"kind": "grid"},
                                   search={"model.width": {"choice": [32, 64]}, "train.lr": {"choice": [2e-3, 8e-3]}}))
    url = default_storage(study)
    create_or_resume(study, url)
    assert work(study, url) == 4
    study, ostudy, table = load_trials(study, url)
    html, _ = build(study, ostudy, table, samples=False)
    assert ("learning rate against width" in html) == (parametrization == "mup")
    if parametrization == "mup":
        assert html.count("width 32") >= 1 and "width 64" in html
