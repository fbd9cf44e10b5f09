"""The numeric core of the scaling fits, on plain numpy arrays (no tables, no files).

Losses are modelled in log space as a log-sum-exp of power-law terms, as in Hoffmann et al. (2022)
and Besiroglu et al. (2024):

    log L = LSE(a - alpha log N, b - beta log D, e)      L = E + A/N^alpha + B/D^beta

with A = exp(a), B = exp(b), E = exp(e). One-variable laws L(x) = E + A x^-alpha keep one term.
The objective is the Huber loss of the log residuals summed over runs; L-BFGS-B minimises it with
analytic gradients from the best few points of a grid evaluated in one vectorised pass. The
bootstrap refits resamples of runs, warm-started from the full-data optimum, in worker processes.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

PARAMS = ("E", "A", "B", "alpha", "beta")
EXP_BOUNDS = (0.0, 5.0)             # exponents: 0 means "no power-law decrease at all"
GRID_EXPONENTS = (0.05, 0.15, 0.3, 0.5, 0.8, 1.2)
GRID_TERM_FRACTIONS = (0.03, 0.1, 0.3, 1.0, 3.0)    # a term's size at the data's centre / mean loss
GRID_E_FRACTIONS = (0.1, 0.4, 0.7, 0.9, 0.99)       # E / lowest observed loss


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
    units (E, A, B, alpha, beta; absent terms are NaN)."""

    form: Form
    theta: np.ndarray
    params: dict[str, float]
    objective: float
    grad_norm: float
    converged: bool
    message: str
    at_bound: list[str] = field(default_factory=list)
    starts_agreeing: int = 1


class Problem:
    """Data and form bundled for evaluation: X is (n, terms) of log features, y is log loss.
    Features are centred so that a term's log-coefficient and its exponent are not entangled:
    this makes the problem far better conditioned for the optimiser."""

    def __init__(self, form: Form, X: np.ndarray, y: np.ndarray, delta: float):
        self.form, self.delta = form, float(delta)
        self.X = np.asarray(X, float).reshape(len(y), -1)[:, :form.terms]
        self.y = np.asarray(y, float)
        self.center = self.X.mean(axis=0)
        self.Xc = self.X - self.center
        self.M, self.p0 = form.mapping()
        lo_y, hi_y = self.y.min(), self.y.max()
        bounds = {"a": (lo_y - 25, hi_y + 10), "b": (lo_y - 25, hi_y + 10), "alpha": EXP_BOUNDS,
                  "beta": EXP_BOUNDS, "e": (lo_y - 15, hi_y + 5)}
        self.bounds = [bounds[n] for n in form.names]

    def full(self, theta: np.ndarray) -> np.ndarray:
        return theta @ self.M.T + self.p0                                   # (G, 5)

    def _terms(self, p: np.ndarray, Xc: np.ndarray) -> list[np.ndarray]:
        t = [p[:, 0, None] - p[:, 1, None] * Xc[:, 0]]                      # (G, n) each
        if self.form.terms == 2:
            t.append(p[:, 2, None] - p[:, 3, None] * Xc[:, 1])
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
        """Sum of Huber(log L_hat - log L) over the runs (or over `data` = (Xc, y) of a
        resample), and its gradient. Vectorised over rows of theta (G, P)."""
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
        gp[:, 1] = -(pw0 @ Xc[:, 0])
        if self.form.terms == 2:
            pw1 = psi * w[1]
            gp[:, 2] = pw1.sum(-1)
            gp[:, 3] = -(pw1 @ Xc[:, 1])
        if self.form.has_e:
            gp[:, 4] = (psi * w[-1]).sum(-1)
        return f, gp @ self.M

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


def fit(form: Form, X: np.ndarray, y: np.ndarray, delta: float = 1e-3, refine: int = 5) -> Fit:
    """Fit one law to log features X (n, terms) and log losses y: grid, then L-BFGS-B from the
    `refine` best grid points; the lowest objective wins."""
    problem = Problem(form, X, y, delta)
    grid = problem.grid()
    f = np.concatenate([problem.objective(chunk, grad=False) for chunk in np.array_split(grid, max(1, len(grid) // 500))])
    order = np.argsort(f)[:refine]
    scale = 1.0 / max(f[order[0]], 1e-300)
    results = [_refine(problem, grid[i], scale=scale) for i in order]
    best = min(results, key=lambda r: r.fun)
    agree = sum(r.fun <= best.fun * (1 + 1e-6) + 1e-12 for r in results)
    theta = best.x
    f_raw, g = problem.objective(theta[None])
    at_bound = [name for name, (lo, hi), v in zip(form.names, problem.bounds, theta)
                if min(v - lo, hi - v) <= 1e-6 * (hi - lo)]
    params = {k: float(v[0]) for k, v in problem.natural(theta).items()}
    return Fit(form, theta, params, float(f_raw[0]), float(np.linalg.norm(g[0])), bool(best.success),
               str(best.message), at_bound, agree)


def predict(form: Form, params: dict[str, float], X: np.ndarray) -> np.ndarray:
    """Loss (natural units) of a fitted law at log features X (n, terms)."""
    X = np.asarray(X, float).reshape(len(X), -1)
    out = params["A"] * np.exp(-params["alpha"] * X[:, 0]) + (params["E"] if form.has_e else 0.0)
    if form.terms == 2:
        out = out + params["B"] * np.exp(-params["beta"] * X[:, 1])
    return out


# ------------------------------------------------------------------------------- bootstrap


def _bootstrap_chunk(form: Form, X: np.ndarray, y: np.ndarray, delta: float, theta0: np.ndarray,
                     idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    problem = Problem(form, X, y, delta)
    thetas, ok = np.empty((len(idx), len(theta0))), np.empty(len(idx), bool)
    for i, rows in enumerate(idx):
        data = problem.Xc[rows], problem.y[rows]
        f0 = problem.objective(theta0[None], data, grad=False)[0]
        r = _refine(problem, theta0, data, scale=1.0 / max(f0, 1e-300))
        thetas[i], ok[i] = r.x, np.isfinite(r.fun)
    return thetas, ok


def bootstrap(fitted: Fit, X: np.ndarray, y: np.ndarray, resamples: int, seed: int = 0,
              delta: float = 1e-3, executor: Executor | None = None) -> dict[str, np.ndarray]:
    """Refit `resamples` resamples of the runs (drawn with replacement), each warm-started from
    the full-data optimum. Returns natural parameter arrays (one entry per usable resample) and
    `failed`, the number of resamples whose fit did not produce a finite objective."""
    X = np.asarray(X, float).reshape(len(y), -1)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(resamples, len(y)))
    args = (fitted.form, X, np.asarray(y, float), delta, fitted.theta)
    if executor is None:
        parts = [_bootstrap_chunk(*args, idx)]
    else:
        chunks = np.array_split(idx, min(resamples, 4 * (os.cpu_count() or 1)))
        parts = list(executor.map(_bootstrap_chunk, *zip(*[(*args, c) for c in chunks])))
    thetas = np.concatenate([p[0] for p in parts])
    ok = np.concatenate([p[1] for p in parts])
    out = Problem(fitted.form, X, y, delta).natural(thetas[ok])
    out["failed"] = int((~ok).sum())
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


# --------------------------------------------------------------------------------- IsoFLOP


def budgets(log_c: np.ndarray, tol: float = np.log(1.1)) -> np.ndarray:
    """Label runs by compute budget: sorted log C split wherever consecutive runs differ by more
    than `tol` (10%), so a ladder's nominal budgets group however C was rounded."""
    order = np.argsort(log_c)
    labels = np.empty(len(log_c), int)
    label = 0
    for i, j in enumerate(order):
        if i and log_c[j] - log_c[order[i - 1]] > tol:
            label += 1
        labels[j] = label
    return labels


def _parabola_min(log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray) -> tuple[float, float] | str:
    """Vertex of loss ~ parabola in log N for one budget: (log N_opt, log D_opt), or why not."""
    sizes = len(np.unique(log_n))
    if sizes < 3:
        return f"{sizes} distinct size(s): a parabola needs 3"
    c2, c1, _ = np.polyfit(log_n, loss, 2)
    if c2 <= 0:
        return "loss is not convex in log N: no minimum"
    vertex = -c1 / (2 * c2)
    if not log_n.min() < vertex < log_n.max():
        side = "smallest" if vertex <= log_n.min() else "largest"
        return f"minimum lies beyond the {side} size tried: not interior"
    # D along this budget: exactly linear in log N when C = 6ND, nearly so for other conventions.
    slope, icept = np.polyfit(log_n, log_d, 1)
    return float(vertex), float(icept + slope * vertex)


def _exponents(log_c: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[float, float]:
    a = np.polyfit(log_c, log_n, 1)[0]
    b = np.polyfit(log_c, log_d, 1)[0]
    return float(a), float(b)


def isoflop(labels: np.ndarray, log_c: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
            loss: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """IsoFLOP analysis (Hoffmann et al. approach 2): per budget a parabola of loss in log N,
    its vertex N_opt (refused unless interior), then N_opt ~ C^a and D_opt ~ C^b by least squares
    in log space. The bootstrap resamples runs within each budget; resamples where any accepted
    budget loses its interior minimum are counted and skipped."""
    rows, accepted = [], []
    for label in np.unique(labels):
        m = labels == label
        entry = {"flops": float(np.exp(log_c[m].mean())), "runs": int(m.sum()),
                 "flops_spread": float(np.exp(log_c[m].max() - log_c[m].min()) - 1)}
        vertex = _parabola_min(log_n[m], log_d[m], loss[m])
        if isinstance(vertex, str):
            entry["reason"] = vertex
        else:
            entry["N_opt"], entry["D_opt"] = float(np.exp(vertex[0])), float(np.exp(vertex[1]))
            accepted.append((m, vertex))
        rows.append(entry)
    out: dict = {"budgets": rows}
    if len(accepted) < 2:
        out["reason"] = f"{len(accepted)} budget(s) with an interior minimum: the exponents need 2"
        return out
    lc = np.array([log_c[m].mean() for m, _ in accepted])
    ln = np.array([v[0] for _, v in accepted])
    ld = np.array([v[1] for _, v in accepted])
    out["a"], out["b"] = _exponents(lc, ln, ld)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        vs = []
        for m, _ in accepted:
            pick = rng.choice(np.flatnonzero(m), size=int(m.sum()))
            v = _parabola_min(log_n[pick], log_d[pick], loss[pick])
            if isinstance(v, str):
                break
            vs.append(v)
        else:
            v = np.array(vs)
            draws.append(_exponents(lc, v[:, 0], v[:, 1]))
    out["draws"] = np.array(draws).reshape(-1, 2)
    out["resamples"], out["failed"] = resamples, resamples - len(draws)
    return out
