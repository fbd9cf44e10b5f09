"""The IsoFLOP analysis on arrays: budgets grouped however C was rounded, each optimum found
near its observed minimum, budgets without one named with what they lack, and intervals from
run-to-run noise that cover planted exponents of asymmetric valleys."""

import numpy as np
import pytest

from scaling.planted import valley_ladder
from workbench.scaling import isoflop as iso
from workbench.scaling import powerlaw as pw


def test_budgets_group_runs_within_ten_percent():
    C = np.array([1e18, 1.05e18, 0.97e18, 1e19, 1.08e19, 3e19])
    assert iso.budgets(np.log(C)).tolist() == [0, 0, 0, 1, 1, 2]


def test_local_minimum_is_exact_on_a_parabola_and_ignores_far_sizes():
    u = np.linspace(0.0, 4.0, 9)
    valley = (u - 1.3) ** 2 + np.where(u > 2.6, 5.0 * (u - 2.6) ** 3, 0.0)   # far right side: not a parabola
    vertex, at, code = iso.local_minimum(u, valley)
    assert code[0] == 0 and vertex[0] == pytest.approx(1.3) and at[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shift,code,add", [(-3.0, 2, "smaller"), (3.0, 3, "larger")])
def test_a_best_size_at_an_edge_has_no_interior_minimum(shift, code, add):
    u = np.linspace(0.0, 2.0, 5)
    assert iso.local_minimum(u, (u - 1.0 - shift) ** 2)[2][0] == code
    assert add in iso.REFUSALS[code]
    assert iso.local_minimum(u[:2], u[:2] ** 2)[2][0] == 1                # fewer than 3 sizes


def _repeat(seed: int, seeds: int = 1) -> tuple[float, float, float, float]:
    C, N, D, L, a_true = valley_ladder(seed, seeds=seeds)
    labels = iso.budgets(np.log(C))
    cells = labels * 100 + iso.budgets(np.log(N), np.log(1.02))
    noise = iso.repeat_noise(cells, np.log(L))[0] if seeds > 1 else \
        iso.scatter_noise(labels, np.log(N), np.log(D), L)[0]
    out = iso.isoflop(labels, np.log(C), np.log(N), np.log(D), L, resamples=400, seed=seed, noise=noise)
    return (out["a"], *pw.interval(out["draws"]["a"]), noise)


@pytest.mark.parametrize("seeds", [1, 2])
def test_planted_asymmetric_valleys_are_recovered_with_covering_intervals(seeds):
    """L = E + A/N^0.5 + B/D^0.3 (alpha != beta: every valley is asymmetric), 1% noise, five
    budgets over two decades, one ladder of 9 sizes for all budgets spanning 30x around each
    optimum, so the optimum sits at a different place among the sizes at each budget (where a
    global parabola goes wrong). 50 seeded repeats: the exponent of N_opt ∝ C^a is recovered
    within 0.02 and its 95% interval covers it in at least 90% of repeats, with the noise taken
    from the scatter about local quadratics (one seed) or from repeated seeds (two)."""
    results = np.array([_repeat(seed, seeds) for seed in range(50)])
    a, lo, hi, noise = results.T
    a_true = valley_ladder(0)[-1]
    assert abs(np.median(a) - a_true) < 0.02
    assert np.mean(np.abs(a - a_true) < 0.02) >= 0.7                   # most single ladders, too
    assert np.mean((lo <= a_true) & (a_true <= hi)) >= 0.9
    assert np.median(noise) == pytest.approx(0.01, rel=0.2)             # the noise the intervals assume


def test_budgets_without_an_interior_minimum_are_left_out_and_blamed():
    C, N, D, L, _ = valley_ladder(0, noise=0.0)
    keep = ~((C == C.max()) & (N < np.sort(np.unique(N))[5]))           # largest budget: only its big sizes
    out = iso.isoflop(iso.budgets(np.log(C[keep])), *np.log([C[keep], N[keep], D[keep]]), L[keep], resamples=50)
    assert [b.get("add") for b in out["budgets"]] == [None] * 4 + ["smaller"]
    assert "a" in out and out["failed"] == 0
    one = iso.isoflop(np.zeros(3, int), np.log([1e18] * 3), np.log([1e6, 2e6, 4e6]), np.log([1e9] * 3),
                      np.array([3.0, 3.1, 3.2]), resamples=10)
    assert one["budgets"][0]["add"] == "smaller" and "need at least 2" in one["reason"]


def test_distinct_runs_close_together_are_not_repeated_seeds():
    """A table of many distinct sizes and token counts, each within 2% of the next, chains into
    one group wider than 2%: it holds no repeated seeds, so no noise is pooled from it (all of
    its log losses' spread would have been). Sizes far apart, two seeds each, are repeats."""
    rng = np.random.default_rng(0)
    log_n, log_d = rng.uniform(18, 23, 5000), rng.uniform(21, 25, 5000)
    log_loss = rng.normal(0, 0.1, 5000)
    assert iso.repeat_noise(iso.repeat_cells(log_n, log_d), log_loss) is None
    log_n, log_d = np.repeat([18.0, 19.0, 20.0], 2), np.repeat([22.0, 21.0, 20.0], 2)
    sd, dof = iso.repeat_noise(iso.repeat_cells(log_n, log_d), np.array([0.0, 0.02, 1.0, 1.02, 2.0, 2.02]))
    assert dof == 3 and sd == pytest.approx(np.sqrt(3 * 2 * 0.01 ** 2 / 3))
