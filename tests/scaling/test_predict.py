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

from scaling.planted import (QUICK_K, QUICK_SIZES, chinchilla, grid_runs, quick_ladder, quick_law, rising_ladder,
                             write_table)
from workbench.plumbing.errors import FitError
from workbench.scaling.fit import fit_runs
from workbench.scaling.predict import predict
from workbench.scaling.result import Defaults, FitResult
from workbench.scaling.runs import from_export, read_runs

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


def _coverage(curvature: float, repeats: int = 40) -> tuple[float, float, float, int]:
    """Seeded quickstart-like ladders (0.5% noise) fitted with L(N, D) without E, each predicting
    a new run of each size at 8e11 FLOPs (twice the largest budget, as the validation run does).
    Returns the share of new runs inside the one-run interval, the same without its model-form
    error, the ratio of their mean widths, and how many predictions were made (a fit the backtest
    does not support refuses)."""
    hits, bare, width, bare_width = [], [], [], []
    D = 8e11 / (QUICK_K * QUICK_SIZES)
    for seed in range(repeats):
        runs, prov = from_export(quick_ladder(seed, curvature), "planted", "val_bpb", "nonembedding", "6N", None,
                                 "6N")
        prov.defaults = Defaults(x="flops", group_by=None)
        result = fit_runs(runs, prov, form="nd-noE", bootstrap=200, seed=seed, workers=1, target_flops=8e11)
        new = quick_law(QUICK_SIZES, D, curvature) * np.exp(np.random.default_rng(1000 + seed).normal(0, 0.005, 4))
        full = [predict(result, params=n, tokens=d, seed=seed) for n, d in zip(QUICK_SIZES, D)]
        if result.forms["nd-noE"].backtest.model_error is not None:
            result.forms["nd-noE"].backtest.model_error = 0.0
        without = [predict(result, params=n, tokens=d, seed=seed) for n, d in zip(QUICK_SIZES, D)]
        for p, q, y in zip(full, without, new):
            if p.ok:
                hits.append(p.lo <= y <= p.hi)
                bare.append(q.lo <= y <= q.hi)
                width.append(np.log(p.hi / p.lo))
                bare_width.append(np.log(q.hi / q.lo))
    return float(np.mean(hits)), float(np.mean(bare)), float(np.mean(width) / np.mean(bare_width)), len(hits)


def test_one_run_intervals_of_a_fitted_form_hold_near_95_percent():
    """A planted law of a form the fit has: the one-run interval, model-form error included, holds
    new runs twice beyond the largest budget near 95% of the time (measured: 96%), and the
    backtest's term widens it modestly (measured: 16%), not grossly."""
    covered, without, wider, made = _coverage(0.0)
    assert made >= 120
    assert 0.9 <= covered <= 0.99
    assert 1.0 <= wider < 1.35


def test_one_run_intervals_of_a_misspecified_law_keep_their_coverage_with_model_error():
    """A planted law outside every form (extra curvature in log D: the loss keeps falling where a
    power law flattens): the bootstrap and noise alone hold new runs twice beyond the largest budget
    clearly less often than 95% (measured: 85%), the backtest's model-form error restores it to
    about 90% or more (measured: 93%)."""
    covered, without, _, made = _coverage(0.005)
    assert made >= 120
    assert covered >= 0.88
    assert without <= covered - 0.05


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
