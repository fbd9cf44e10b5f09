"""Fits of many runs: the per-run derivatives behind the one-step bootstrap are the objective's,
its intervals agree with refits where both are affordable and hold the truth, a fit past the
sample the starts are found on still lands on the exact law, and a large bootstrap's memory does
not grow with resamples x runs."""

import tracemalloc

import numpy as np
import pytest

from scaling.planted import TRUTH, chinchilla
from workbench.scaling import powerlaw as pw


def _runs(n: int, seed: int, noise: float = 0.015):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e8), np.log(1e10), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e11), n))
    return np.log(np.c_[N, D]), np.log(chinchilla(N, D)) + rng.normal(0, noise, n)


@pytest.mark.parametrize("form", [pw.Form(), pw.Form(tied=True), pw.Form(terms=1), pw.Form(fixed_e=1.69)])
def test_per_run_derivatives_sum_to_the_objectives(form):
    X, y = _runs(400, 0)
    problem = pw.Problem(form, X, y, delta=0.01)
    theta = problem.grid()[len(problem.grid()) // 2] + 0.01
    g, H = problem.per_run(theta)
    _, grad = problem.objective(theta[None])
    eps = 1e-6
    numeric = np.array([(problem.objective((theta + eps * e)[None])[1][0]
                         - problem.objective((theta - eps * e)[None])[1][0]) / (2 * eps) for e in np.eye(len(theta))])
    assert np.allclose(g.sum(0), grad[0], rtol=1e-10, atol=1e-10)
    assert np.allclose(H, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def test_one_step_intervals_agree_with_refits(monkeypatch):
    """3,000 planted runs, where refitting every resample is still affordable: the one-step
    bootstrap's intervals have the refits' centre and width to within a fifth of the width."""
    X, y = _runs(3000, 1)
    fitted = pw.fit(pw.Form(), X, y)
    one = pw.bootstrap(fitted, X, y, 400, seed=3)
    monkeypatch.setattr(pw, "REFIT_RUNS", len(y))
    refits = pw.bootstrap(fitted, X, y, 200, seed=3)
    assert one["unconverged"] == 0 and refits["unconverged"] == 0
    for key in ("E", "alpha", "beta"):
        lo1, hi1 = pw.interval(one[key])
        lo2, hi2 = pw.interval(refits[key])
        width = hi2 - lo2
        assert abs((lo1 + hi1) / 2 - (lo2 + hi2) / 2) < 0.2 * width, key
        assert abs((hi1 - lo1) - width) < 0.2 * width, key


def test_one_step_intervals_hold_the_planted_truth():
    """15 repeats of 4,500 runs (past the sample the starts are found on, and past the refit
    limit): the estimates centre on the truth and the 95% intervals hold it at least 13 times
    (a 95% interval misses 3 times or more in 15 with probability 0.04)."""
    hits = {k: 0 for k in ("E", "alpha", "beta")}
    estimates = {k: [] for k in hits}
    for seed in range(15):
        X, y = _runs(4500, 100 + seed)
        fitted = pw.fit(pw.Form(), X, y)
        draws = pw.bootstrap(fitted, X, y, 300, seed=seed)
        assert draws["unconverged"] == 0
        for k in hits:
            lo, hi = pw.interval(draws[k])
            hits[k] += lo <= TRUTH[k] <= hi
            estimates[k].append(fitted.params[k])
    for k in hits:
        assert hits[k] >= 13, (k, hits[k])
        assert np.median(estimates[k]) == pytest.approx(TRUTH[k], rel=0.01), k


def test_a_fit_past_the_start_sample_recovers_a_noise_free_law_exactly():
    X, _ = _runs(3 * pw.START_ROWS, 2)
    y = np.log(pw.predict(pw.Form(), TRUTH, X))
    fitted = pw.fit(pw.Form(), X, y)
    assert fitted.converged and fitted.at_bound == []
    for key, value in TRUTH.items():
        assert fitted.params[key] == pytest.approx(value, rel=1e-4), key


def test_a_large_bootstraps_memory_does_not_grow_with_resamples_times_runs():
    """200,000 runs and 1,000 resamples: an index matrix of them alone would be 1.6 GB."""
    X, y = _runs(200_000, 4)
    fitted = pw.fit(pw.Form(), X, y)
    tracemalloc.start()
    draws = pw.bootstrap(fitted, X, y, 1000, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2 ** 20, peak
    assert len(draws["alpha"]) == 1000 and draws["unconverged"] == 0
    lo, hi = pw.interval(draws["alpha"])
    assert lo <= TRUTH["alpha"] <= hi and hi - lo < 0.01
