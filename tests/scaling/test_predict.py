"""Predictions for one run before it is trained: planted laws predicted with intervals that
hold a new run, refusals that say why, and `workbench predict` on a table."""

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from scaling.planted import chinchilla, grid_runs, rising_ladder, write_table
from workbench.plumbing.errors import FitError
from workbench.scaling.fit import fit_runs
from workbench.scaling.predict import predict
from workbench.scaling.result import FitResult
from workbench.scaling.runs import read_runs

POINT = (3e9, 3e11)           # beyond the runs: N up to 1e10, D up to 1e11


def _repeat(seed: int, tmp: str) -> tuple[float, float, float, float, float, float]:
    N, D, L = grid_runs(seed, side=6)
    path = write_table(Path(tmp) / f"runs{seed}.parquet", params=N, tokens=D, loss=L)
    p = predict(fit_runs(*read_runs(path), form="nd", bootstrap=60, seed=seed, workers=1),
                params=POINT[0], tokens=POINT[1], seed=seed)
    new_run = chinchilla(*POINT) * np.exp(np.random.default_rng(1000 + seed).normal(0, 0.01))
    return p.estimate, p.lo, p.hi, p.law_lo, p.law_hi, new_run


def test_predictions_of_a_planted_law_hold_a_new_run(tmp_path):
    """30 seeded repeats of 36 runs (1% noise) predicting a run beyond them: the law's interval
    holds the planted law and the one-run interval holds a new noisy run in at least 90%."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
        got = np.array(list(ex.map(_repeat, range(30), [str(tmp_path)] * 30)))
    estimate, lo, hi, law_lo, law_hi, new_run = got.T
    truth = chinchilla(*POINT)
    assert np.median(estimate) == pytest.approx(truth, rel=0.01)
    assert np.mean((law_lo <= truth) & (truth <= law_hi)) >= 0.9
    assert np.mean((lo <= new_run) & (new_run <= hi)) >= 0.9
    assert np.mean(hi - lo) > 1.3 * np.mean(law_hi - law_lo)          # a run adds its noise to the law's spread


def test_compute_alone_predicts_at_the_compute_optimal_allocation(tmp_path):
    N, D, L = grid_runs(0, side=6)
    result = fit_runs(*read_runs(write_table(tmp_path / "runs.csv", params=N, tokens=D, loss=L)), form="nd",
                      bootstrap=100)
    at = predict(result, flops=1e21)
    assert at.ok and at.compute_optimal and at.params * at.tokens * 6 == pytest.approx(1e21)
    assert at.estimate == pytest.approx(result.forms["nd"].derived["loss_at_target"].estimate
                                        if result.target_flops == 1e21 else at.estimate)
    assert at.lo <= chinchilla(at.params, at.tokens) <= at.hi
    by_convention = predict(result, params={"as given": 1e9}, tokens=2e10)
    assert by_convention.estimate == pytest.approx(predict(result, params=1e9, tokens=2e10).estimate)
    with pytest.raises(FitError, match="give parameters and tokens"):
        predict(result, params=1e9)


def test_refusals_say_why(tmp_path):
    result = fit_runs(*read_runs(write_table(tmp_path / "ladder.parquet", **rising_ladder())), form="x,nd",
                      bootstrap=50)
    refused = predict(result, params=1e5, tokens=1e7)
    assert not refused.ok and "bound" in refused.refused and refused.fix and refused.estimate is None
    assert refused.text().startswith("no prediction:")
    N, D, L = grid_runs(0, side=6)
    fitted = fit_runs(*read_runs(write_table(tmp_path / "runs.csv", params=N, tokens=D, loss=L)), form="nd",
                      bootstrap=50)
    reread = FitResult.model_validate_json(fitted.to_json())
    assert "no bootstrap draws" in predict(reread, params=1e9, tokens=2e10).refused


def test_predict_command_prints_json_and_exits_1_on_a_refusal(tmp_path):
    N, D, L = grid_runs(0, side=6)
    table = write_table(tmp_path / "runs.csv", params=N, tokens=D, loss=L)
    run = lambda path, *args: subprocess.run([sys.executable, "-m", "workbench", "predict", str(path), *args,
                                             "--bootstrap", "30", "--json"], capture_output=True, text=True)
    ok = run(table, "--params", "1e9", "--tokens", "2e10", "--form", "nd")
    assert ok.returncode == 0, ok.stderr
    answer = json.loads(ok.stdout)
    assert answer["form"] == "nd" and answer["lo"] < answer["estimate"] < answer["hi"]
    assert answer["estimate"] == pytest.approx(chinchilla(1e9, 2e10), rel=0.02)
    refused = run(write_table(tmp_path / "ladder.parquet", **rising_ladder()), "--flops", "1e12", "--form", "nd")
    assert refused.returncode == 1 and json.loads(refused.stdout)["refused"]
    bad = run(table, "--params", "1e9")
    assert bad.returncode == 2 and "give parameters and tokens" in bad.stderr
