"""A scaling ladder: sizes x budgets x groups, each budget in whole batches; growing a ladder
keeps its finished points; tuning runs per point, of which the fit takes the best."""

import json
from pathlib import Path

import polars as pl
import pytest
from optuna.trial import TrialState

from support import BASE, write_study
from workbench.accounting import count_params, flops_per_token
from workbench.plumbing.errors import SpecError, StorageError
from workbench.scaling.runs import study_runs
from workbench.study.file import load_study
from workbench.study.ladder import ladder_points, tune_design
from workbench.study.schema import TuneSpec
from workbench.study.space import spec_for
from workbench.study.storage import create_or_resume, load_existing
from workbench.study.table import load_trials
from workbench.study.worker import work


def test_token_ladders_cross_groups_sizes_and_budgets_in_whole_batches(tmp_path):
    study = load_study(write_study(tmp_path, ladder={
        "tokens": [100, 1000], "sizes": [{"model.depth": 1}, {"model.depth": 2}],
        "groups": [{"model.positional.kind": "rope"}, {"model.positional.kind": "alibi"}]}))
    points = [run["overrides"] for run in ladder_points(study)]
    assert len(points) == 2 * 2 * 2
    assert points[0] == {"model.positional.kind": "rope", "model.depth": 1, "train.budget": {"tokens": 128}}
    assert [p["train.budget"]["tokens"] for p in points[:2]] == [128, 1024]      # at least one batch of 128
    assert {(p["model.positional.kind"], p["model.depth"]) for p in points} == \
        {(k, d) for k in ("rope", "alibi") for d in (1, 2)}


def test_flops_ladders_give_each_size_the_tokens_its_compute_buys(tmp_path):
    study = load_study(write_study(tmp_path, ladder={"flops": [1e8, 1e9],
                                                     "sizes": [{"model.depth": 1}, {"model.depth": 3}]}))
    for point in (run["point"] for run in ladder_points(study)):
        per_token = flops_per_token(spec_for(study, {"model.depth": point["model.depth"]}, 0))["6N+attn"]
        budget = point["train.budget"]["tokens"]
        assert budget % 128 == 0
        assert any(abs(budget - c / per_token) <= 64 for c in (1e8, 1e9))        # nearest whole batch
    points = [run["point"] for run in ladder_points(study)]
    small, large = points[:2], points[2:]
    assert [p["train.budget"]["tokens"] for p in large] < [p["train.budget"]["tokens"] for p in small]


def test_a_study_without_a_ladder_has_no_points(tmp_path):
    assert ladder_points(load_study(write_study(tmp_path))) == []


# ------------------------------------------------------------------------- growing and tuning

QUICK = {**BASE, "train": {**BASE["train"], "completions": 0, "samples": 0}}
"""The test base without its evaluation suite: these tests count runs, not what they say."""


def _trained(study, url):
    return {t.number: t.user_attrs.get("record", {}).get("tokens")
            for t in load_existing(study, url).get_trials() if t.state == TrialState.COMPLETE}


def test_a_grown_ladder_keeps_its_finished_points_and_trains_only_the_new_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sizes = [{"model.depth": 1}, {"model.depth": 2}]
    study = load_study(write_study(tmp_path, name="grow", trials=0, base=QUICK, ladder={"tokens": [256], "sizes": sizes}))
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    assert work(study, url) == 2
    first = _trained(study, url)
    folders = {n: (tmp_path / "runs" / "grow" / "trials" / f"{n:04d}" / "record.json").stat().st_mtime_ns for n in first}

    grown = load_study(write_study(tmp_path, name="grow", trials=0, base=QUICK,
                                   ladder={"tokens": [256, 512], "sizes": sizes + [{"model.depth": 3}]}))
    ostudy = create_or_resume(grown, url)
    assert ostudy.user_attrs["planned_trials"] == 6
    assert work(grown, url) == 4                                    # 2 budgets x 3 sizes, 2 of them done
    after = _trained(grown, url)
    assert {n: after[n] for n in first} == first and len(after) == 6
    assert {n: (tmp_path / "runs" / "grow" / "trials" / f"{n:04d}" / "record.json").stat().st_mtime_ns
            for n in first} == folders                              # never retrained
    points = {(t.user_attrs["overrides"]["model.depth"], t.user_attrs["overrides"]["train.budget"]["tokens"])
              for t in load_existing(grown, url).get_trials()}
    assert points == {(d, b) for d in (1, 2, 3) for b in (256, 512)}
    assert work(grown, url) == 0 and create_or_resume(grown, url).user_attrs["planned_trials"] == 6


def test_a_shrunk_ladder_withdraws_its_unstarted_points_and_keeps_the_finished(tmp_path):
    sizes = [{"model.depth": 1}, {"model.depth": 2}]
    study = load_study(write_study(tmp_path, name="shrink", trials=0, ladder={"tokens": [256, 512], "sizes": sizes}))
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    smaller = load_study(write_study(tmp_path, name="shrink", trials=0, ladder={"tokens": [256], "sizes": sizes}))
    ostudy = create_or_resume(smaller, url)
    states = sorted((t.user_attrs["overrides"]["train.budget"]["tokens"], t.state.name, t.user_attrs.get("status"))
                    for t in ostudy.get_trials())
    assert states == [(256, "WAITING", None)] * 2 + [(512, "FAIL", "withdrawn")] * 2
    assert ostudy.user_attrs["planned_trials"] == 2


def test_what_makes_results_incomparable_is_refused_naming_it(tmp_path):
    sizes = [{"model.depth": 1}]
    study = load_study(write_study(tmp_path, name="same", ladder={"tokens": [256], "sizes": sizes}))
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    other_base = {**BASE, "model": {**BASE["model"], "heads": 4}}
    for fields, named in (({"base": other_base}, "base spec"), ({"objectives": ["val_loss"]}, "objectives"),
                          ({"search": {"model.width": {"choice": [32, 64]}}}, "search space")):
        changed = load_study(write_study(tmp_path, name="same", ladder={"tokens": [256], "sizes": sizes}, **fields))
        with pytest.raises(StorageError, match=f"began with a different {named}; results would be mixed"):
            create_or_resume(changed, url)


def test_a_tuning_design_spans_each_range_evenly_and_pairs_fields_as_a_latin_hypercube(tmp_path):
    tune = TuneSpec.model_validate({"train.lr": {"float": [1e-3, 1e-1], "log": True},
                                    "train.schedule.warmup": {"float": [0.0, 0.3]}, "trials": 4})
    design = tune_design(tune, seed=0)
    assert [run["train.lr"] for run in design] == pytest.approx([1e-3, 4.642e-3, 2.154e-2, 1e-1], rel=1e-3)
    assert sorted(run["train.schedule.warmup"] for run in design) == pytest.approx([0, 0.1, 0.2, 0.3])   # each once
    assert tune_design(tune, seed=0) == design


def test_a_tuned_ladder_trains_every_run_and_its_fit_takes_the_best_of_each_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ladder = {"tokens": [256, 512], "sizes": [{"model.depth": 1}, {"model.depth": 2}],
              "tune": {"train.lr": {"float": [1e-4, 3e-2], "log": True}, "trials": 3}}
    study = load_study(write_study(tmp_path, name="tuned", trials=0, base=QUICK, ladder=ladder))
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    assert work(study, url) == 2 * 2 * 3
    _, _, table = load_trials(study, url)
    assert table.group_by("point").len()["len"].to_list() == [3] * 4
    assert sorted(table["spec.train.lr"].unique().to_list()) == pytest.approx([1e-4, 1.732e-3, 3e-2], rel=1e-3)
    runs, prov = study_runs(study, table)
    assert len(runs) == 4 and prov.excluded["tuning runs not the best of their point"] == 8
    best = table.group_by("point").agg(pl.col("val_bpb").min()).sort("val_bpb")["val_bpb"].to_list()
    assert sorted(runs["loss"].to_list()) == pytest.approx(best)


def test_tuned_fields_must_be_free_to_tune(tmp_path):
    path = write_study(tmp_path, ladder={"tokens": [256], "sizes": [{"model.depth": 1}],
                                         "tune": {"model.depth": {"int": [1, 2]}, "train.lrr": {"float": [1e-3, 1e-2]}}})
    with pytest.raises(SpecError) as info:
        load_study(path)
    text = str(info.value)
    assert "ladder.tune.model.depth: set by the ladder's sizes" in text and "ladder.tune.train.lrr: not a field" in text


def test_a_ladder_point_trains_its_own_size_even_where_the_search_varies_that_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, name="own", trials=0, base=QUICK, search={
        "model.width": {"choice": [32, 64]}}, ladder={"tokens": [256], "sizes": [{"model.width": 16, "model.heads": 1}]}))
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    assert work(study, url) == 1
    (trial,) = load_existing(study, url).get_trials()
    assert trial.user_attrs["status"] == "completed" and trial.params == {}          # nothing sampled
    assert trial.user_attrs["record"]["params"]["total"] == \
        count_params(spec_for(study, {"model.width": 16, "model.heads": 1}, 0)).total


# ------------------------------------------------------------------------- branched ladders

def test_a_branched_ladder_trains_one_run_per_size_and_records_every_budget_as_a_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path, name="branched", trials=0, base=QUICK, ladder={
        "tokens": [256, 512, 1024], "sizes": [{"model.depth": 1}, {"model.depth": 2}], "branches": {"decay": 0.2}}))
    url = str(tmp_path / "s.journal")
    assert create_or_resume(study, url).user_attrs["planned_trials"] == 6
    assert work(study, url) == 2                                     # one run per size
    ostudy = load_existing(study, url)
    trials = ostudy.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    points = {(t.user_attrs["point"]["model.depth"], t.user_attrs["point"]["train.budget"]["tokens"],
               t.user_attrs["record"]["tokens"]) for t in trials}
    assert points == {(d, b, b) for d in (1, 2) for b in (256, 512, 1024)}   # each its own (N, D)
    assert len(list((tmp_path / "runs" / "branched" / "trials").iterdir())) == 2
    runs, prov = study_runs(*load_trials(study, url)[::2])
    assert runs.height == 6

    from workbench.study.supervisor import summary
    s = summary(ostudy)
    assert s["ladder"] == {"planned": 6, "done": 6, "failed": 0, "running": 0}
    b = s["compute"]["branched"]
    # steps 2, 4, 8 decay from 1, 3 and 6: shared 6 + decays 1 + 1 + 2 against 2 + 4 + 8 separately
    assert (b["runs"], b["points"]) == (2, 6) and b["saving"] == pytest.approx(14 / 10)
    assert s["compute"]["flops"] == pytest.approx(b["shared_flops"] + b["decay_flops"])
    from workbench.report.page import build
    html, _ = build(study, ostudy, load_trials(study, url)[2], samples=False)
    assert "2 branched run(s) gave 6 points" in html and "1.40x less" in html
    assert work(study, url) == 0 and create_or_resume(study, url).user_attrs["planned_trials"] == 6


def test_a_killed_branched_run_resumes_from_its_last_finished_branch(tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, name="resume", trials=0, base=QUICK, ladder={
        "tokens": [128 * 40, 128 * 80, 128 * 600], "sizes": [{"model.depth": 1}], "branches": {}})
    study = load_study(path)
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    worker = subprocess.Popen([sys.executable, "-m", "workbench", "study", "worker", str(path), "--storage", url,
                               "--threads", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ostudy = load_existing(study, url)
    try:
        deadline = time.time() + 120
        while not any(t.user_attrs.get("branch") == 1 for t in ostudy.get_trials()):
            assert time.time() < deadline and worker.poll() is None, "the second branch never finished"
            time.sleep(0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert work(study, url) == 1                                     # the retry, reaped and run here
    trials = ostudy.get_trials()
    branches = sorted(t.user_attrs["branch"] for t in trials if "branch" in t.user_attrs)
    assert branches == [0, 1]                                        # none trained or stored twice
    retry = next(t for t in trials if "retry_of" in t.user_attrs)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["record"]["steps"] == 600
    rows = [json.loads(line) for line in (Path(retry.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert min(r["step"] for r in rows if r["kind"] == "train") > 64        # on from the fork of branch 1 (64 steps)


def test_branches_of_a_branched_base_spec_are_not_ladder_points_of_a_plain_ladder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = {**QUICK, "train": {**QUICK["train"], "schedule": {"kind": "wsd", "warmup": 0.0, "branches": [0.5, 1.0]}}}
    study = load_study(write_study(tmp_path, name="based", trials=0, base=base,
                                   ladder={"tokens": [512, 1024], "sizes": [{"model.depth": 1}]}))
    url = str(tmp_path / "s.journal")
    create_or_resume(study, url)
    assert work(study, url) == 2
    study, ostudy, table = load_trials(study, url)
    assert sorted(table["role"].to_list()) == ["branch", "branch", "ladder", "ladder"]
    runs, prov = study_runs(study, table)
    assert runs.height == 2                                          # the ladder's own points only
    from workbench.study.supervisor import summary
    assert summary(ostudy)["ladder"] == {"planned": 2, "done": 2, "failed": 0, "running": 0}
