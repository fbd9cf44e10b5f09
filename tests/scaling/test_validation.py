"""A validation run beyond the ladder: planned from the finished ladder's fit, its prediction
stored before it trains, then trained for real and judged observed against predicted; or, when
the ladder cannot back a prediction, one recorded refusal that says why."""

import json
import subprocess
import sys

import numpy as np
import pytest
from optuna.trial import TrialState

from support import BASE, write_study
from workbench import accounting
from workbench.report.page import build
from workbench.scaling.validation import plan
from workbench.study.file import load_study
from workbench.study.roles import role
from workbench.study.space import spec_for
from workbench.study.storage import create_or_resume, default_storage, load_existing
from workbench.study.supervisor import summary
from workbench.study.table import load_trials
from workbench.study.worker import work

QUICK = {**BASE, "train": {**BASE["train"], "completions": 0, "samples": 0}}
LAW = {"E": 1.0, "A": 244.0, "alpha": 0.35, "B": 100.0, "beta": 0.3}
"""A planted L(N, D) whose compute-optimal size at these budgets lies inside the ladder's sizes."""
SIZES = [{"model.width": w, "model.heads": h} for w, h in ((8, 1), (16, 1), (24, 2), (32, 2), (48, 3), (64, 4))]


def planted(N, D):
    return LAW["E"] + LAW["A"] / N ** LAW["alpha"] + LAW["B"] / D ** LAW["beta"]


def _plant_ladder(study, url, seed=0):
    """Finish every ladder point with the planted law's loss (0.5% noise) instead of training it:
    the validation plan is tested against a known truth; its run is then trained for real."""
    rng = np.random.default_rng(seed)
    ostudy = create_or_resume(study, url)
    while ostudy.get_trials(states=(TrialState.WAITING,)):
        trial = ostudy.ask()
        spec = spec_for(study, trial.user_attrs["overrides"], trial.number)
        p, D = accounting.count_params(spec), spec.train.budget.tokens
        loss = planted(p.total, D) * np.exp(rng.normal(0, 0.005))
        record = {"status": "completed", "params": {"total": p.total, "nonembedding": p.nonembedding},
                  "tokens": D, "compute": accounting.compute(spec, D), "val_bpb": loss, "val_loss": loss}
        trial.set_user_attr("spec", spec.model_dump(mode="json"))
        trial.set_user_attr("record", record)
        trial.set_user_attr("status", "completed")
        ostudy.tell(trial, [loss])
    return ostudy


def test_the_validation_run_is_the_predicted_optimum_stored_before_training_then_judged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, name="val", trials=0, base=QUICK, ladder={
        "flops": [2e8, 4e8, 8e8, 1.6e9], "sizes": SIZES, "validate": {"flops": "2x"}}))
    url = default_storage(study)
    _plant_ladder(study, url)
    assert work(study, url, validation=plan) == 1                     # only the validation run trains
    ostudy = load_existing(study, url)
    (check,) = [t for t in ostudy.get_trials() if role(t.user_attrs) == "validation"]
    assert check.state == TrialState.COMPLETE and check.user_attrs["budget"] == 3.2e9
    pred = check.user_attrs["prediction"]
    spec = spec_for(study, check.user_attrs["overrides"], 0)
    N, D = accounting.count_params(spec).total, spec.train.budget.tokens
    assert (pred["params"], pred["tokens"]) == (N, D) and check.user_attrs["record"]["tokens"] == D
    # the planted law's own optimum at this budget, where C = k·N·D with the fit's k
    k = pred["flops"] / (N * D)
    grid = np.geomspace(1e3, 1e6, 4000)
    truth = grid[np.argmin(planted(grid, 3.2e9 / (k * grid)))]
    assert abs(np.log(pred["N_opt"] / truth)) < np.log(1.6)
    assert abs(np.log(N / pred["N_opt"])) < np.log(1.3)                # the nearest buildable model
    assert pred["law_lo"] <= planted(N, D) <= pred["law_hi"]
    assert pred["lo"] < pred["law_lo"] and pred["hi"] > pred["law_hi"]  # one run is noisier than the law

    s = summary(ostudy)
    (v,) = s["validation"]
    assert v["observed"] == check.user_attrs["record"]["val_bpb"] and v["predicted"] == pred["estimate"]
    assert v["inside"] == (pred["lo"] <= v["observed"] <= pred["hi"])
    study, ostudy, table = load_trials(study, url)
    html, _ = build(study, ostudy, table, samples=False)
    head = html.split("<h2>Scaling</h2>", 1)[1]
    assert head.lstrip().startswith("<div class='validation' id='validation'>")
    assert f"Observed {v['observed']:.4f}" in head and f"{pred['estimate']:.4f}" in head
    assert work(study, url, validation=plan) == 0                     # planned once
    shown = subprocess.run([sys.executable, "-m", "workbench", "study", "status", str(study.path)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("validation at C = 3.2e+09"))
    assert f"predicted val_bpb {pred['estimate']:.4f}" in line and f"observed {v['observed']:.4f}" in line
    assert line.endswith(("inside the interval", "OUTSIDE the interval"))


def test_a_ladder_that_cannot_back_a_prediction_records_why_and_the_study_still_ends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, name="few", trials=1, base=QUICK, ladder={
        "tokens": [256, 512], "sizes": [{"model.depth": 1}], "validate": {"flops": 1e9}}))
    url = default_storage(study)
    create_or_resume(study, url)
    assert work(study, url, validation=plan) == 3                     # 2 points and the searched trial
    s = summary(load_existing(study, url))
    (v,) = s["validation"]
    assert v["status"] == "refused" and v["reason"].startswith("no validation run: ") and v["predicted"] is None
    assert "L(N, D)" in v["reason"]
    json.dumps(s)
    assert s["counted"] == s["planned"] == 4


def test_the_validation_run_of_a_branched_ladder_trains_its_schedule_unbranched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ladder = {"flops": [2e8, 4e8, 8e8, 1.6e9], "sizes": SIZES, "validate": {"flops": "2x"}}
    study = load_study(write_study(tmp_path, name="val", trials=0, base=QUICK, ladder=ladder))
    ostudy = _plant_ladder(study, default_storage(study))
    branched = load_study(write_study(tmp_path, name="val", trials=0, base=QUICK,
                                      ladder={**ladder, "branches": {"decay": 0.25, "shape": "1-sqrt"}}))
    planned = plan(branched, ostudy, 3.2e9)
    schedule, tokens = planned["overrides"]["train.schedule"], planned["overrides"]["train.budget"]["tokens"]
    spec = spec_for(branched, planned["overrides"], 0)
    smallest = 2e8 / accounting.flops_per_token(spec)["6N+attn"]
    assert (schedule["kind"], schedule["decay"], schedule["shape"], schedule["branches"]) == ("wsd", 0.25, "1-sqrt", None)
    assert schedule["warmup"] == pytest.approx(0.05 * smallest / tokens)     # the ladder's warmup tokens
    assert "train.schedule" not in plan(study, ostudy, 3.2e9)["overrides"]    # an unbranched ladder keeps the base's
