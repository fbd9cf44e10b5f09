"""Repeated data: runs beyond about 4 epochs are flagged, and the data-constrained law of
Muennighoff et al. (2023) recovers a planted law that repeats tokens where the plain law,
counting them as fresh, is biased."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from scaling.planted import TRUTH, chinchilla, fit_source, write_table
from workbench.scaling.repeats import R_STAR, constrained_allocation, effective_tokens

UNIQUE = 3e9


def test_effective_tokens_count_fresh_tokens_fully_and_repeats_less_and_less():
    U = 1e9
    assert effective_tokens(5e8, U) == 5e8 and effective_tokens(U, U) == U
    assert effective_tokens(1.04 * U, U) == pytest.approx(1.04 * U, rel=1e-3)   # a first repeat: nearly fresh
    assert effective_tokens(4 * U, U) / (4 * U) == pytest.approx(0.93, abs=0.01)  # 4 epochs: worth about 93%
    assert effective_tokens(1e4 * U, U) == pytest.approx(U * (1 + R_STAR))       # never beyond U (1 + R*)


def test_constrained_allocation_is_the_minimum_along_the_budget():
    for C in (1e19, 1e21, 1e23):
        got = constrained_allocation(TRUTH, 6.0, C, UNIQUE)
        loss = lambda u: chinchilla(np.exp(u), effective_tokens(C / (6 * np.exp(u)), UNIQUE))
        best = minimize_scalar(loss, bounds=(10, 40), method="bounded", options={"xatol": 1e-10})
        assert float(got["N_opt"]) == pytest.approx(np.exp(best.x), rel=1e-4)
        assert float(got["loss_at_target"]) == pytest.approx(best.fun, rel=1e-9)


def _repeated_runs(seed: int):
    """42 runs of a law planted in D' with 3e9 unique tokens: D up to 33 epochs."""
    rng = np.random.default_rng(seed)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 1e10, 6), np.geomspace(1e9, 1e11, 7)))
    return N, D, chinchilla(N, effective_tokens(D, UNIQUE)) * np.exp(rng.normal(0, 0.005, N.size))


def test_runs_beyond_four_epochs_are_flagged_and_fitted_with_discounted_repeats(tmp_path):
    """6 seeded repeats: the data-constrained law's intervals hold the planted floor and data
    exponent in at least 5; the plain law, counting repeats as fresh, misses the floor in 5."""
    covered, missed = [], []
    for seed in range(6):
        N, D, L = _repeated_runs(seed)
        path = write_table(tmp_path / f"runs{seed}.csv", params=N, tokens=D, loss=L, epochs=D / UNIQUE)
        result = fit_source(path, bootstrap=60, form="nd,nd-dc", seed=seed)
        assert result.repeated.runs == int((D / UNIQUE > 4).sum()) > 0
        assert "nd-dc discounts them" in result.repeated.message and result.repeated.message in result.warnings
        assert result.forms["nd-dc"].unique_tokens == pytest.approx(UNIQUE)
        dc, plain = result.forms["nd-dc"].params, result.forms["nd"].params
        covered.append(all(dc[p].lo <= TRUTH[p] <= dc[p].hi for p in ("E", "beta")))
        missed.append(not plain["E"].lo <= TRUTH["E"] <= plain["E"].hi)
    assert sum(covered) >= 5 and sum(missed) >= 5, (covered, missed)


def test_the_data_constrained_form_needs_the_unique_tokens(tmp_path):
    N, D, L = _repeated_runs(0)
    result = fit_source(write_table(tmp_path / "runs.csv", params=N, tokens=D, loss=L), bootstrap=0, form="nd-dc")
    assert "unique training tokens" in result.forms["nd-dc"].reason and result.repeated is None
