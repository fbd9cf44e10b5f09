"""The IsoFLOP analysis on arrays: budgets grouped however C was rounded, planted exponents
recovered, budgets without an interior minimum refused."""

import numpy as np
import pytest

from scaling.planted import A_TRUE, isoflop_runs
from workbench.scaling import isoflop as iso
from workbench.scaling import powerlaw as pw


def test_budgets_group_runs_within_ten_percent():
    C = np.array([1e18, 1.05e18, 0.97e18, 1e19, 1.08e19, 3e19])
    assert iso.budgets(np.log(C)).tolist() == [0, 0, 0, 1, 1, 2]


def test_isoflop_recovers_the_compute_optimal_exponents():
    C, N, D, L = isoflop_runs(0)
    out = iso.isoflop(iso.budgets(np.log(C)), np.log(C), np.log(N), np.log(D), L, resamples=300)
    assert len(out["budgets"]) == 5 and all("N_opt" in b for b in out["budgets"])
    assert out["a"] == pytest.approx(A_TRUE, abs=0.03)
    assert out["b"] == pytest.approx(1 - A_TRUE, abs=0.03)
    lo, hi = pw.interval(out["draws"]["a"])
    assert lo <= A_TRUE <= hi


def test_isoflop_refuses_budgets_without_an_interior_minimum():
    C, N, D, L = isoflop_runs(0, noise=0.0, budgets=[1e18, 1e20], spread=8)
    keep = np.ones(len(C), bool)
    keep[9:14] = False                       # second budget: only sizes above its optimum remain
    C, N, D, L = C[keep], N[keep], D[keep], L[keep]
    out = iso.isoflop(iso.budgets(np.log(C)), np.log(C), np.log(N), np.log(D), L, resamples=10)
    assert "N_opt" in out["budgets"][0]
    assert "not interior" in out["budgets"][1]["reason"] and "N_opt" not in out["budgets"][1]
    assert "need at least 2" in out["reason"] and "a" not in out
