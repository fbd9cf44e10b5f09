"""The batched L-BFGS: many independent fits advanced together reach what scipy reaches one at a
time, each row stopping on its own."""

import numpy as np

from scaling.planted import grid_runs
from workbench.scaling import powerlaw as pw
from workbench.scaling.lbfgs import batched_lbfgs


def test_vectorised_bootstrap_refits_match_scipy_lbfgsb():
    N, D, L = grid_runs(3, noise=0.02)
    X, y = np.log(np.c_[N, D]), np.log(L)
    fitted = pw.fit(pw.Form(), X, y)
    problem = pw.Problem(fitted.form, X, y, 1e-3)
    idx = np.random.default_rng(0).integers(0, len(y), (8, len(y)))
    batched, done = batched_lbfgs(problem, np.repeat(fitted.theta[None], 8, 0), problem.Xc[idx], problem.y[idx])
    assert done.all()
    for row, rows in zip(batched, idx):
        data = problem.Xc[rows], problem.y[rows]
        f0 = problem.objective(fitted.theta[None], data, grad=False)[0]
        ref = pw._refine(problem, fitted.theta, data, scale=1 / f0)
        ours = problem.objective(row[None], data, grad=False)[0]
        assert ours <= ref.fun * f0 * (1 + 1e-9)


def test_rows_start_anywhere_in_the_box_and_stay_inside_it():
    N, D, L = grid_runs(1)
    X, y = np.log(np.c_[N, D]), np.log(L)
    problem = pw.Problem(pw.Form(), X, y, 1e-3)
    starts = problem.grid()[::40]                       # far-apart starts, some far from the optimum
    k = len(starts)
    theta, done = batched_lbfgs(problem, starts, np.broadcast_to(problem.Xc, (k, *problem.Xc.shape)),
                                np.broadcast_to(problem.y, (k, len(y))))
    lo, hi = (np.array(b) for b in zip(*problem.bounds))
    assert ((theta >= lo) & (theta <= hi)).all()
    f = problem.objective(theta, grad=False)
    assert (f <= problem.objective(starts, grad=False)).all()
    best = pw.fit(pw.Form(), X, y).objective
    assert np.sum(f <= best * (1 + 1e-6)) >= k // 2        # most starts reach the optimum
