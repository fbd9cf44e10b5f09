"""The numeric core of the scaling fits, on plain numpy arrays (no tables, no files).

Losses are modelled in log space as a log-sum-exp of power-law terms, as in Hoffmann et al. (2022)
and Besiroglu et al. (2024):

    log L = LSE(a - alpha log N, b - beta log D, e)      L = E + A/N^alpha + B/D^beta

with A = exp(a), B = exp(b), E = exp(e). One-variable laws L(x) = E + A x^-alpha keep one term.
The objective is the Huber loss of the log residuals summed over runs, with analytic gradients.
A grid of starts is evaluated in one vectorised pass; the best few are refined together by a
batched L-BFGS (many independent fits advanced by the same numpy operations) and the winner is
finished by scipy's L-BFGS-B. The bootstrap refits resamples of the runs with the same batched
L-BFGS, warm-started at the full-data optimum, in worker processes when given an executor.
Many runs change two things: the starts are found on a sample of the runs and Newton steps on
all of them finish the fit (fit, _approach), and each bootstrap resample is one Newton step
from the optimum (onestep.py), so neither time nor memory grows with resamples x runs.
The IsoFLOP analysis (isoflop.py) is vectorised over resamples too.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from workbench.scaling import onestep
from workbench.scaling.lbfgs import batched_lbfgs

EXP_BOUNDS = (0.0, 5.0)             # exponents: 0 means "no power-law decrease at all"
GRID_EXPONENTS = (0.05, 0.15, 0.3, 0.5, 0.8, 1.2)
GRID_TERM_FRACTIONS = (0.03, 0.1, 0.3, 1.0, 3.0)    # a term's size at the data's centre / mean loss
GRID_E_FRACTIONS = (0.1, 0.4, 0.7, 0.9, 0.99)       # E / lowest observed loss
START_ROWS = 4096           # runs the grid of starts and its refinement see; the finish sees all
HESSIAN_ROWS = 65536        # runs whose Hessian guides the finish's first steps on many runs (_approach)
REFIT_RUNS = 2000           # up to this many runs every bootstrap resample is refitted (see bootstrap)


@dataclass(frozen=True)
class Form:
    """Which law: one term L(x) or two terms L(N, D); with or without E; alpha tied to beta;
    E fixed. Free parameters, in optimiser order, are `names`."""

    terms: int = 2
    has_e: bool = True
    tied: bool = False
    fixed_e: float | None = None

    @property
    def names(self) -> list[str]:
        names = ["a", "alpha"] + (["b"] if self.terms == 2 else []) \
            + (["beta"] if self.terms == 2 and not self.tied else [])
        return names + (["e"] if self.has_e and self.fixed_e is None else [])

    def mapping(self) -> tuple[np.ndarray, np.ndarray]:
        """Full parameters p = (a, alpha, b, beta, e) = M @ theta + p0: ties and fixed values
        are a linear map, so one objective and gradient serve every form."""
        names = self.names
        M = np.zeros((5, len(names)))
        for j, name in enumerate(names):
            M[("a", "alpha", "b", "beta", "e").index(name), j] = 1.0
        if self.tied:
            M[3, names.index("alpha")] = 1.0
        p0 = np.zeros(5)
        if self.fixed_e is not None:
            p0[4] = np.log(self.fixed_e)
        return M, p0


@dataclass
class Fit:
    """One fitted law. `theta` is in the optimiser's centred coordinates; `params` in natural
    units (E, A, B, alpha, beta; absent terms are NaN). `grad_norm` is the norm of the projected
    gradient of the objective (at a bound only inward components count). `at_bound` lists
    (name, "lower" or "upper") for optimiser coordinates that ended on their box."""

    form: Form
    theta: np.ndarray
    params: dict[str, float]
    objective: float
    grad_norm: float
    converged: bool
    message: str
    at_bound: list[tuple[str, str]] = field(default_factory=list)
    starts_agreeing: int = 1


class Problem:
    """Data and form bundled for evaluation: X is (n, terms) of log features, y is log loss.
    Features are centred so that a term's log-coefficient and its exponent are not entangled:
    this makes the problem far better conditioned for the optimiser."""

    def __init__(self, form: Form, X: np.ndarray, y: np.ndarray, delta: float, like: Problem | None = None):
        self.form, self.delta = form, float(delta)
        self.X = np.asarray(X, float).reshape(len(y), -1)[:, :form.terms]
        self.y = np.asarray(y, float)
        self.center = self.X.mean(axis=0) if like is None else like.center
        self.Xc = self.X - self.center
        self.M, self.p0 = form.mapping()
        lo_y, hi_y = self.y.min(), self.y.max()
        bounds = {"a": (lo_y - 25, hi_y + 10), "b": (lo_y - 25, hi_y + 10), "alpha": EXP_BOUNDS,
                  "beta": EXP_BOUNDS, "e": (lo_y - 15, hi_y + 5)}
        self.bounds = [bounds[n] for n in form.names] if like is None else like.bounds

    def sample(self, rows: int, seed: int = 0) -> Problem:
        """At most `rows` runs drawn without replacement, in this problem's coordinates (same
        centre, same box), so that a point found on them starts a fit on all the runs."""
        if len(self.y) <= rows:
            return self
        pick = np.sort(np.random.default_rng(seed).choice(len(self.y), rows, replace=False))
        return Problem(self.form, self.X[pick], self.y[pick], self.delta, like=self)

    def full(self, theta: np.ndarray) -> np.ndarray:
        return theta @ self.M.T + self.p0                                   # (G, 5)

    def _terms(self, p: np.ndarray, Xc: np.ndarray) -> list[np.ndarray]:
        # Xc is (n, K) shared by every row, or (G, n, K): one resample per row.
        t = [p[:, 0, None] - p[:, 1, None] * Xc[..., 0]]                    # (G, n) each
        if self.form.terms == 2:
            t.append(p[:, 2, None] - p[:, 3, None] * Xc[..., 1])
        if self.form.has_e:
            t.append(p[:, 4, None])                                         # broadcasts
        return t

    def predict(self, theta: np.ndarray, Xc: np.ndarray | None = None) -> tuple[np.ndarray, list]:
        """log L for each parameter row: (G, n), and the softmax weights of the terms."""
        Xc = self.Xc if Xc is None else Xc
        t = self._terms(self.full(np.atleast_2d(theta)), Xc)
        m = t[0]
        for other in t[1:]:
            m = np.maximum(m, other)
        s = [np.exp(ti - m) for ti in t]
        total = s[0] + s[1] if len(s) > 1 else s[0]
        for extra in s[2:]:
            total = total + extra
        return m + np.log(total), [si / total for si in s]

    def objective(self, theta: np.ndarray, data: tuple | None = None, grad: bool = True):
        """Sum of Huber(log L_hat - log L) over the runs, and its gradient; vectorised over
        rows of theta (G, P). `data` = (Xc, y) replaces the runs: one resample (n, K) and (n,)
        for every row, or one per row, (G, n, K) and (G, n)."""
        Xc, y = (self.Xc, self.y) if data is None else data
        lse, w = self.predict(theta, Xc)
        r = lse - y
        d = self.delta
        psi = np.clip(r, -d, d)                                             # Huber'(r)
        # Huber(r) = psi (r - psi/2): r^2/2 inside [-d, d], d(|r| - d/2) outside.
        f = (psi * (r - 0.5 * psi)).sum(axis=-1)
        if not grad:
            return f
        gp = np.zeros((len(f), 5))
        pw0 = psi * w[0]
        gp[:, 0] = pw0.sum(-1)
        gp[:, 1] = -(pw0 * Xc[..., 0]).sum(-1)
        if self.form.terms == 2:
            pw1 = psi * w[1]
            gp[:, 2] = pw1.sum(-1)
            gp[:, 3] = -(pw1 * Xc[..., 1]).sum(-1)
        if self.form.has_e:
            gp[:, 4] = (psi * w[-1]).sum(-1)
        return f, gp @ self.M

    def per_run(self, theta: np.ndarray, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Each run's gradient (n, P) of its Huber term at one theta (P,), and the Hessian (P, P)
        of their sum, the objective. With t_k the terms of the log-sum-exp and a_k their
        gradients, lse' = sum w_k a_k = v and lse'' = sum w_k a_k a_k' - v v', so a run's
        Hessian is psi'(r) v v' + psi(r) (sum w_k a_k a_k' - v v'), summed here as products of
        (n, P) matrices."""
        Xc, y = self.Xc[rows], self.y[rows]
        lse, w = self.predict(theta, Xc)
        r = lse[0] - y
        psi, inside = np.clip(r, -self.delta, self.delta), (np.abs(r) <= self.delta).astype(float)
        a = np.zeros((len(y), len(w), 5))                           # each term's gradient in (a, alpha, b, beta, e)
        a[:, 0, 0], a[:, 0, 1] = 1.0, -Xc[:, 0]
        if self.form.terms == 2:
            a[:, 1, 2], a[:, 1, 3] = 1.0, -Xc[:, 1]
        if self.form.has_e:
            a[:, -1, 4] = 1.0
        a = a @ self.M                                               # (n, terms, P)
        v = sum(wi[0][:, None] * a[:, k] for k, wi in enumerate(w))  # (n, P)
        hess = (v * (inside - psi)[:, None]).T @ v
        for k, wi in enumerate(w):
            hess += (a[:, k] * (psi * wi[0])[:, None]).T @ a[:, k]
        return psi[:, None] * v, hess

    def grid(self) -> np.ndarray:
        """Starting points spread over scale-free ranges: each term's size at the data's centre
        as a fraction of the mean loss, exponents from 0.05 to 1.2, E below the lowest loss."""
        mean_y, min_y = np.log(np.exp(self.y).mean()), self.y.min()
        axes = {"a": mean_y + np.log(GRID_TERM_FRACTIONS), "b": mean_y + np.log(GRID_TERM_FRACTIONS),
                "alpha": GRID_EXPONENTS, "beta": GRID_EXPONENTS, "e": min_y + np.log(GRID_E_FRACTIONS)}
        return np.array(list(itertools.product(*(axes[n] for n in self.form.names))), float)

    def natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Centred optimiser coordinates to E, A, B, alpha, beta (arrays over rows of theta)."""
        p = self.full(np.atleast_2d(theta))
        nan = np.full(len(p), np.nan)
        out = {"E": np.exp(p[:, 4]) if self.form.has_e else np.zeros(len(p)),
               "A": np.exp(p[:, 0] + p[:, 1] * self.center[0]), "alpha": p[:, 1],
               "B": np.exp(p[:, 2] + p[:, 3] * self.center[1]) if self.form.terms == 2 else nan,
               "beta": p[:, 3] if self.form.terms == 2 else nan}
        return out


def _refine(problem: Problem, theta0: np.ndarray, data: tuple | None = None, scale: float = 1.0):
    """L-BFGS-B from one start. The objective is rescaled to order one so that scipy's
    relative tolerances mean the same thing whatever delta and the number of runs are."""
    def fun(theta):
        f, g = problem.objective(theta[None], data)
        return f[0] * scale, g[0] * scale
    return minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=problem.bounds,
                    options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12, "maxls": 50})


def _approach(problem: Problem, theta: np.ndarray, steps: int = 8) -> tuple[np.ndarray, bool]:
    """Newton steps on all the runs from a point found on a sample of them, with the Hessian of a
    larger sample (HESSIAN_ROWS, rescaled) standing in for all the runs' own: each step costs one
    gradient over the runs, and a Hessian a few percent off still shrinks the distance to the
    optimum some tenfold a step, where L-BFGS-B would spend dozens of passes learning the
    curvature. Returns the point and whether it has settled: a full step lowered the objective by
    under 1e-13 of it, which on many runs is far below what the data can tell. Otherwise (a
    Hessian not positive definite, a step that no longer lowers the objective, the step limit)
    L-BFGS-B finishes from the point."""
    sample = problem.sample(HESSIAN_ROWS, seed=1)
    lo, hi = (np.array(b, float) for b in zip(*problem.bounds))
    f, g = problem.objective(theta[None])
    for _ in range(steps):
        H = sample.per_run(theta)[1] * (len(problem.y) / len(sample.y))
        free = ~(((theta <= lo) & (g[0] > 0)) | ((theta >= hi) & (g[0] < 0)))
        idx = np.flatnonzero(free)
        Hf = H[idx[:, None], idx]
        if len(idx) == 0 or np.linalg.eigvalsh((Hf + Hf.T) / 2)[0] <= 0:
            return theta, False
        step = np.zeros_like(theta)
        step[idx] = np.linalg.solve(Hf, g[0, idx])
        for t in (1.0, 0.5, 0.25, 0.125):
            cand = np.clip(theta - t * step, lo, hi)
            fc, gc = problem.objective(cand[None])
            if fc[0] < f[0]:
                break
        else:
            return theta, False
        settled = t == 1.0 and (f[0] - fc[0]) <= 1e-13 * abs(f[0])
        theta, f, g = cand, fc, gc
        if settled:
            return theta, True
    return theta, False


def fit(form: Form, X: np.ndarray, y: np.ndarray, delta: float = 1e-3, refine: int = 5) -> Fit:
    """Fit one law to log features X (n, terms) and log losses y. The whole grid of starts is
    evaluated in one pass; the `refine` best are refined together (batched L-BFGS, below), and
    the winner is finished with scipy's L-BFGS-B, whose verdict and final gradient we report.
    With more than START_ROWS runs the starts are chosen and refined on a random START_ROWS of
    them: that only decides where the finish on every run begins (a sample of thousands of runs
    puts it near the optimum of all), and keeps the grid's (starts, runs) arrays small; Newton
    steps on every run (_approach) then take it to the optimum, and L-BFGS-B finishes only when
    they do not settle. `starts_agreeing` then counts agreement on the sample."""
    problem = Problem(form, X, y, delta)
    probe = problem.sample(START_ROWS)
    grid = probe.grid()
    f = np.concatenate([probe.objective(chunk, grad=False)
                        for chunk in np.array_split(grid, max(1, len(grid) // 500))])
    starts = grid[np.argsort(f)[:refine]]
    k = len(starts)
    refined, _ = batched_lbfgs(probe, starts, np.broadcast_to(probe.Xc, (k, *probe.Xc.shape)),
                               np.broadcast_to(probe.y, (k, len(probe.y))))
    f_refined = probe.objective(refined, grad=False)
    best = int(np.argmin(f_refined))
    agree = int((f_refined <= f_refined[best] * (1 + 1e-6) + 1e-15).sum())
    start, settled = (refined[best], False) if probe is problem else _approach(problem, refined[best])
    if settled:
        result = OptimizeResult(x=start, fun=1.0, success=True,
                                message="Newton steps on every run settled (the last full step gained under 1e-13)")
    else:
        f_start = problem.objective(start[None], grad=False)[0] if probe is not problem else f_refined[best]
        result = _refine(problem, start, scale=1.0 / max(f_start, 1e-300))
    theta = result.x if result.fun <= 1.0 else start              # scipy's f is scaled: 1 = start
    f_raw, g = problem.objective(theta[None])
    lo, hi = (np.array(b, float) for b in zip(*problem.bounds))
    # The projected gradient: at a bound only the component pointing inwards counts.
    pg = np.clip(theta - g[0], lo, hi) - theta
    # scipy often ends with "ABNORMAL" when the line search cannot improve on an optimum it has
    # already reached (Huber kinks, a bound): a vanishing relative projected gradient counts too.
    converged = bool(result.success) or float(np.abs(pg).max()) <= 1e-6 * max(f_raw[0], 1e-300)
    at_bound = [(name, "lower" if v - lo_ <= hi_ - v else "upper")
                for name, lo_, hi_, v in zip(form.names, lo, hi, theta) if min(v - lo_, hi_ - v) <= 1e-6 * (hi_ - lo_)]
    params = {k: float(v[0]) for k, v in problem.natural(theta).items()}
    return Fit(form, theta, params, float(f_raw[0]), float(np.linalg.norm(pg)), converged,
               str(result.message), at_bound, agree)


def predict(form: Form, params: dict, X: np.ndarray) -> np.ndarray:
    """Loss (natural units) of a fitted law at log features X (n, terms). With arrays of
    parameters (bootstrap draws, R each), one row per draw: (R, n)."""
    X = np.asarray(X, float).reshape(len(X), -1)
    col = lambda name: np.asarray(params[name], float)[..., None]
    out = col("A") * np.exp(-col("alpha") * X[:, 0]) + (col("E") if form.has_e else 0.0)
    if form.terms == 2:
        out = out + col("B") * np.exp(-col("beta") * X[:, 1])
    return out


def backtest(form: Form, X: np.ndarray, y: np.ndarray, key: np.ndarray, holdout: float = 0.2,
             delta: float = 1e-3, resamples: int = 0, seed: int = 0) -> dict:
    """Hold out the runs with the largest `key` (compute), fit the rest, and report how far the
    law misses the held-out losses: mean absolute error, bias (predicted - observed), worst
    miss, in loss units and relative, and the held-out runs themselves (arrays key, observed,
    predicted). With `resamples`, each held-out run also gets the 95% interval of the law there
    (lo, hi: the bootstrap spread of the law fitted without it). A dict with `reason` when the split leaves too few runs to fit."""
    X = np.asarray(X, float).reshape(len(y), -1)
    n_out = max(1, int(np.ceil(holdout * len(y))))
    order = np.argsort(key, kind="stable")
    train, test = order[:-n_out], order[-n_out:]
    need = len(form.names) + 1
    out = {"holdout": holdout, "train_runs": len(train), "test_runs": len(test)}
    if len(train) < need:
        return {**out, "reason": f"{len(train)} runs left to fit after holding out {n_out}: needs {need}"}
    fitted = fit(form, X[train], y[train], delta)
    pred, obs = predict(form, fitted.params, X[test]), np.exp(y[test])
    err = pred - obs
    out.update({"key_threshold": float(np.min(np.asarray(key)[test])),
                "mae": float(np.abs(err).mean()), "bias": float(err.mean()), "max_abs": float(np.abs(err).max()),
                "mae_relative": float(np.abs(err / obs).mean()), "max_relative": float(np.abs(err / obs).max())})
    held = {"key": np.asarray(key, float)[test], "observed": obs, "predicted": pred}
    if resamples:
        draws = bootstrap(fitted, X[train], y[train], resamples, seed, delta)
        held["lo"], held["hi"] = band(form, draws, X[test])
    return {**out, "held_out": held}


def band(form: Form, draws: dict, X: np.ndarray, level: float = 0.95, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The percentile band of the law's bootstrap draws at each row of X, a chunk of rows at a
    time (draws x rows at once would be gigabytes for a large backtest); non-finite draws are
    left out."""
    tail = 50 * (1 - level)
    lo, hi = np.empty(len(X)), np.empty(len(X))
    for start in range(0, len(X), chunk):
        laws = np.atleast_2d(predict(form, draws, X[start:start + chunk]))
        finite = np.isfinite(laws)
        if finite.all():
            q = np.percentile(laws, [tail, 100 - tail], axis=0)
        else:
            laws[~finite] = np.nan
            q = np.nanpercentile(laws, [tail, 100 - tail], axis=0)
        lo[start:start + chunk], hi[start:start + chunk] = q
    return lo, hi


# ------------------------------------------------------------------------------- bootstrap


def _bootstrap_chunk(form: Form, X: np.ndarray, y: np.ndarray, delta: float, theta0: np.ndarray,
                     seeds: list[np.random.SeedSequence]) -> tuple[np.ndarray, np.ndarray]:
    """Refit the resamples of `seeds` (one per resample, drawn here: the (resamples, runs) index
    matrix never exists whole)."""
    problem = Problem(form, X, y, delta)
    idx = np.stack([np.random.default_rng(s).integers(0, len(y), len(y)) for s in seeds])
    return batched_lbfgs(problem, np.repeat(theta0[None], len(idx), 0), problem.Xc[idx], problem.y[idx],
                         max_iter=500)


def bootstrap(fitted: Fit, X: np.ndarray, y: np.ndarray, resamples: int, seed: int = 0,
              delta: float = 1e-3, executor: Executor | None = None, chunks: int = 1) -> dict:
    """Refit `resamples` resamples of the runs (drawn with replacement), each warm-started from
    the full-data optimum, in `chunks` pieces on `executor` when given (one per worker: each
    piece pays the per-iteration overhead of its slowest refit once). Returns natural parameter arrays
    (E, A, B, alpha, beta) and `unconverged`, the number of refits that stopped at the
    iteration limit. Those are kept: they stall in flat valleys (typically E drifting to 0)
    where the objective barely changes, and leaving them out would bias the intervals.
    Beyond REFIT_RUNS runs, refits would cost resamples x runs per step; there each resample is
    one Newton step from the optimum instead (scaling.onestep: the same intervals to first order,
    in time and memory independent of the resamples x runs product), and `unconverged` counts the
    resamples whose Hessian was not positive definite."""
    X = np.asarray(X, float).reshape(len(y), -1)
    y = np.asarray(y, float)
    problem = Problem(fitted.form, X, y, delta)
    if len(y) > REFIT_RUNS:
        pinned = {name for name, _ in fitted.at_bound}
        free = np.array([name not in pinned for name in fitted.form.names])
        thetas, done = onestep.draws(problem, fitted.theta, free, resamples, seed)
    else:
        seeds = np.random.SeedSequence(seed).spawn(resamples)
        args = (fitted.form, X, y, delta, fitted.theta)
        if executor is None or chunks < 2:
            parts = [_bootstrap_chunk(*args, seeds)]
        else:
            pieces = [list(c) for c in np.array_split(np.arange(resamples), min(resamples, chunks))]
            parts = list(executor.map(_bootstrap_chunk, *zip(*[(*args, [seeds[i] for i in c]) for c in pieces])))
        thetas = np.concatenate([p[0] for p in parts])
        done = np.concatenate([p[1] for p in parts])
    out: dict = problem.natural(thetas)
    out["unconverged"] = int((~done).sum())
    return out


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap draws (NaN when there are none)."""
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    tail = 50 * (1 - level)
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


# ------------------------------------------------------------------- derived quantities


def allocation(p: dict[str, np.ndarray | float], k: float, target_flops: float) -> dict[str, np.ndarray]:
    """Compute-optimal allocation under L(N, D) with C = k N D (k = 6 for Kaplan's 6ND):
    minimising E + A/N^alpha + B/D^beta along C gives N_opt = G (C/k)^a, D_opt = (C/k)^b / G
    with a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
    Works elementwise on bootstrap arrays."""
    alpha, beta, A, B, E = (np.asarray(p[n], float) for n in ("alpha", "beta", "A", "B", "E"))
    with np.errstate(all="ignore"):
        s = alpha + beta
        logG = (np.log(alpha * A) - np.log(beta * B)) / s
        logc = np.log(target_flops / k)
        n_opt = np.exp(logG + beta / s * logc)
        d_opt = np.exp(alpha / s * logc - logG)
        loss = E + A * n_opt ** -alpha + B * d_opt ** -beta
        return {"a": beta / s, "b": alpha / s, "N_opt": n_opt, "D_opt": d_opt,
                "tokens_per_param": d_opt / n_opt, "loss_at_target": loss}


def outliers(log_residuals: np.ndarray, k: float) -> np.ndarray:
    """Mask of points whose log residual lies more than k robust SDs (1.4826 MAD) from the
    median residual."""
    r = np.asarray(log_residuals, float)
    med = np.median(r)
    sd = 1.4826 * np.median(np.abs(r - med))
    return np.abs(r - med) > k * sd if sd > 0 else np.zeros(len(r), bool)
