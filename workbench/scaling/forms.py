"""One law fitted to one set of runs: the forms a fit can use, and for each its parameters with
bootstrap intervals, what it says at the target compute, its curve for plots, its backtest, its
warnings, and its verdict: whether it may be used for a recommendation, and if not, why and what
data would fix it. The numbers come from `powerlaw`; this module turns them into a `FormFit`."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from workbench.scaling import powerlaw as pw
from workbench.scaling.repeats import R_STAR, constrained_allocation, effective_tokens
from workbench.scaling.estimate import Estimate
from workbench.scaling.result import Backtest, BootstrapCount, Curve, FormFit, GoodnessOfFit, HeldOut

FORMS = {"x": pw.Form(terms=1), "x-noE": pw.Form(terms=1, has_e=False),
         "nd": pw.Form(terms=2), "nd-noE": pw.Form(terms=2, has_e=False), "nd-tied": pw.Form(terms=2, tied=True),
         "nd-dc": pw.Form(terms=2)}
"""Every law a fit may use. The forms without E serve runs too small to show a floor: below it,
both terms still fall as power laws, and the compute-optimal allocation does not depend on E."""
CONSTRAINED = "nd-dc"
"""The data-constrained form: L(N, D') with D' discounting repeated tokens (scaling.repeats)."""
AXIS_SYMBOL = {"flops": "C", "params": "N", "tokens": "D"}
BACKTEST_RESAMPLES = 200    # bootstrap refits behind each held-out run's interval


@dataclass(frozen=True)
class FitOptions:
    """How every law of one fit is fitted (see fit_runs for each)."""

    x: str
    forms: list[str]
    target: float | None
    bootstrap: int
    delta: float
    holdout: float
    seed: int
    fixed_e: float | None
    outliers: float | None
    workers: int
    noise: float | None = None


@dataclass
class Arrays:
    """One set of runs as arrays: parameters, tokens, compute, loss, and the unique training
    tokens each drew from (NaN where unknown)."""

    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    L: np.ndarray
    U: np.ndarray

    def axis(self, name: str) -> np.ndarray:
        return {"flops": self.C, "params": self.N, "tokens": self.D}[name]


def label(name: str, opts: FitOptions) -> str:
    """The law of form `name` in symbols, e.g. 'L(C) = E + A·C^-alpha'."""
    sym = AXIS_SYMBOL[opts.x]
    e = "E + " if opts.fixed_e is None else f"E(fixed {opts.fixed_e:g}) + "
    return {"x": f"L({sym}) = {e}A·{sym}^-alpha", "x-noE": f"L({sym}) = A·{sym}^-alpha",
            "nd": f"L(N, D) = {e}A/N^alpha + B/D^beta", "nd-noE": "L(N, D) = A/N^alpha + B/D^beta",
            "nd-tied": f"L(N, D) = {e}A/N^alpha + B/D^alpha (alpha = beta)",
            "nd-dc": f"L(N, D') = {e}A/N^alpha + B/D'^beta (repeats discounted, R* = {R_STAR:g})"}[name]


def law(name: str, fixed_e: float | None) -> pw.Form:
    """The numeric form behind a form's name, with E fixed when asked."""
    form = FORMS[name]
    return pw.Form(form.terms, True, form.tied, fixed_e) if fixed_e is not None and form.has_e else form


def features(name: str, N, D, U, x: str, C=None) -> np.ndarray:
    """The log features a form is fitted on: (log N, log D), or log D' for the data-constrained
    form; one column of log x for L(x)."""
    if FORMS[name].terms == 2:
        D = effective_tokens(D, U) if name == CONSTRAINED else D
        return np.log(np.c_[N, D])
    return np.log({"flops": C, "params": N, "tokens": D}[x])[:, None]


def allocate(name: str, p: dict, k: float, flops, unique: float | None) -> dict[str, np.ndarray]:
    """Compute-optimal allocation of a two-term form at `flops` (broadcast against draws)."""
    if name == CONSTRAINED:
        return constrained_allocation(p, k, flops, unique)
    return pw.allocation(p, k, flops)


def estimate(value: float, draws: np.ndarray | None) -> Estimate:
    """A point estimate with the 95% percentile interval of its bootstrap draws, if any."""
    lo, hi = pw.interval(draws) if draws is not None else (None, None)
    return Estimate(estimate=value, lo=lo, hi=hi)


def _not_identifiable(X: np.ndarray, y: np.ndarray, need: int) -> str | None:
    """Why the runs cannot pin a law down whatever its fit reports (a constant loss, or fewer
    distinct points than parameters), or None. Such data give a "converged" fit with zero-width
    intervals and R² 1, which is no evidence at all."""
    if np.ptp(y) <= 1e-12 * max(1.0, abs(float(y.mean()))):
        return "the loss is the same in every run, so no power law can be told from another"
    # The first few thousand runs almost always settle it; only a degenerate table is sorted whole.
    rows = np.round(np.c_[X, y], 12)
    distinct = len(np.unique(rows[:4096], axis=0))
    if distinct < need and len(rows) > 4096:
        distinct = len(np.unique(rows, axis=0))
    if distinct < need:
        return f"only {distinct} distinct runs; this form needs at least {need}"
    return None


def fit_form(name: str, runs: Arrays, k: float, opts: FitOptions, executor: Executor | None,
             convention: str | None = None) -> tuple[FormFit, dict[str, np.ndarray]]:
    """Fit form `name` to the runs (C = k·N·D for the allocation), under parameter convention
    `convention` (None when N does not enter the form). Returns the entry and the bootstrap
    draws of the quantities groups are compared on (exponents, a, loss at target)."""
    form = law(name, opts.fixed_e)
    N, D, C, L = runs.N, runs.D, runs.C, runs.L
    entry = FormFit(label=label(name, opts), runs=len(L), form=name, convention=convention)
    need = len(form.names) + 1
    if len(L) < need:
        entry.reason = f"{len(L)} runs: this form needs at least {need}"
        return entry, {}
    unique = None
    if name == CONSTRAINED:
        unique = float(np.median(runs.U))
        entry.unique_tokens, entry.r_star = unique, R_STAR
    X, key, y = features(name, N, D, runs.U, opts.x, C), C, np.log(L)
    flat = _not_identifiable(X, y, need)
    if flat:
        entry.reason = f"not identifiable: {flat}"
        return entry, {}
    fitted = pw.fit(form, X, y, opts.delta)
    if opts.outliers is not None:
        drop = pw.outliers(y - np.log(pw.predict(form, fitted.params, X)), opts.outliers)
        entry.outliers_dropped = int(drop.sum())
        if drop.any() and (~drop).sum() >= need:
            X, y, key = X[~drop], y[~drop], key[~drop]
            fitted = pw.fit(form, X, y, opts.delta)
    resid = y - np.log(pw.predict(form, fitted.params, X))
    entry.gof = GoodnessOfFit(
        runs=len(y), r2_log=1 - (resid ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300),
        rmse_log=np.sqrt((resid ** 2).mean()), objective=fitted.objective, grad_norm=fitted.grad_norm,
        converged=fitted.converged, message=fitted.message, starts_agreeing=fitted.starts_agreeing)
    draws = pw.bootstrap(fitted, X, y, opts.bootstrap, opts.seed, opts.delta, executor, opts.workers) \
        if opts.bootstrap else None
    entry._draws = draws
    shown = ["E", "A", "alpha"] + (["B", "beta"] if form.terms == 2 else [])
    if not form.has_e:
        shown.remove("E")
    entry.params = {p: estimate(fitted.params[p], draws and draws[p]) for p in shown}
    if form.fixed_e is not None:
        entry.params["E"] = Estimate(estimate=form.fixed_e, fixed=True)
    if form.tied:
        entry.params["beta"].tied_to = "alpha"
    compare = {p: draws[p] for p in ("alpha", "beta") if draws and p in shown and not (p == "beta" and form.tied)}
    if form.terms == 2:
        entry.flops_per_param_token = k
    if form.terms == 2 and opts.target:
        point = allocate(name, fitted.params, k, opts.target, unique)
        boot = allocate(name, draws, k, opts.target, unique) if draws else {}
        entry.derived = {q: estimate(point[q], boot.get(q)) for q in point}
        compare.update({q: boot[q] for q in ("a", "loss_at_target") if boot})
    elif opts.x == "flops" and opts.target:
        at = lambda p: p["E"] * form.has_e + p["A"] * opts.target ** -np.asarray(p["alpha"])
        entry.derived = {"loss_at_target": estimate(float(at(fitted.params)), draws and at(draws))}
        if draws:
            compare["loss_at_target"] = at(draws)
    entry.curve = _curve(name, form, fitted.params, draws, runs, k, opts, unique)
    if draws:
        entry.bootstrap = BootstrapCount(resamples=opts.bootstrap, unconverged=draws["unconverged"])
    entry.backtest = _backtest(pw.backtest(form, X, y, key, opts.holdout, opts.delta,
                                           min(opts.bootstrap, BACKTEST_RESAMPLES), opts.seed))
    entry._problems = _warnings(fitted, L, draws, opts, entry.gof.rmse_log)
    entry.warnings = [w for w, _ in entry._problems]
    return entry, compare


def _backtest(found: dict) -> Backtest:
    """The backtest as a result part, its held-out runs as columns."""
    held = found.pop("held_out", None)
    return Backtest(**found, by="flops", held_out=None if held is None else
                    HeldOut(**{k: np.asarray(v, float).tolist() for k, v in held.items()}))


def _curve(name: str, form: pw.Form, params: dict, draws: dict | None, runs: Arrays, k: float,
           opts: FitOptions, unique: float | None) -> Curve:
    """The fitted law along its axis for plots, with a 95% bootstrap band: L(x) from the
    smallest run to the largest (to the target, for compute); for L(N, D), the compute-optimal
    loss along C."""
    if form.terms == 2:
        axis, xs = "flops", np.geomspace(runs.C.min(), max(runs.C.max(), opts.target or 0), 60)
        columns = lambda p: {q: np.asarray(p[q], float)[..., None] for q in ("E", "A", "B", "alpha", "beta")}
        along = lambda p: allocate(name, columns(p), k, xs, unique)["loss_at_target"]
    else:
        axis = opts.x
        v = runs.axis(axis)
        xs = np.geomspace(v.min(), max(v.max(), (opts.target or 0) if axis == "flops" else 0), 60)
        along = lambda p: np.asarray(p["E"], float)[..., None] * form.has_e \
            + np.asarray(p["A"], float)[..., None] * xs ** -np.asarray(p["alpha"], float)[..., None]
    curve = Curve(axis=axis, x=list(xs), y=list(np.ravel(along(params))))
    if draws:
        band = along(draws)
        curve.lo = list(np.nanpercentile(band, 2.5, axis=0))
        curve.hi = list(np.nanpercentile(band, 97.5, axis=0))
    return curve


# Each way a fit can sit at the edge of its box: what it means, and what data would fix it.
BOUND_HINTS = {
    ("alpha", "lower"): ("no power-law decrease in the data",
                         "runs that are larger (or, for L(D) and L(C), longer), each at its best learning rate"),
    ("beta", "lower"): ("no power-law decrease in the data", "runs trained on more tokens"),
    ("alpha", "upper"): ("implausibly steep: the data cannot pin this term down",
                         "runs spread over a wider range of the axis this exponent belongs to"),
    ("beta", "upper"): ("implausibly steep: the data cannot pin this term down",
                        "runs spread over a wider range of tokens"),
    ("e", "lower"): ("E is effectively 0: the data show no floor (the forms without E fit such data)",
                     "runs at larger compute, where the curve bends towards its floor, or a form without E"),
    ("e", "upper"): ("E above the losses: the law is flat", "runs at smaller compute, where loss still falls")}


def _warnings(fitted: pw.Fit, L: np.ndarray, draws: dict | None, opts: FitOptions,
              rmse: float) -> list[tuple[str, str]]:
    """What is wrong with a fit, each with the data that would fix it."""
    out = []
    for name, side in fitted.at_bound:
        shown = {"a": "A", "b": "B", "e": "E"}.get(name, name)
        hint, fix = BOUND_HINTS.get((name, side), ("the optimum lies outside the search box",
                                                   "runs over a wider range of N and D"))
        out.append((f"{shown} sits at its {side} bound: {hint}", fix))
    # A floor fitted at the lowest losses is what a flattening curve gives; one clearly above
    # them (by more than twice the residual scatter) contradicts the data.
    if fitted.form.has_e and fitted.params["E"] > L.min() * np.exp(2 * rmse):
        out.append((f"E = {fitted.params['E']:.4g} lies above the lowest observed loss ({L.min():.4g})",
                    "runs at smaller compute, so the law is fitted to where loss still falls"))
    if not fitted.converged:
        why = fitted.message.strip().rstrip(":; ")
        out.append(("L-BFGS-B did not report convergence" + (f" ({why})" if why else ""), "more runs spread over N and D"))
    if draws:
        out += _draws_at_bounds(fitted, draws, L)
    if draws and draws["unconverged"] > 0.01 * opts.bootstrap:
        out.append((f"{draws['unconverged']} of {opts.bootstrap} bootstrap refits stopped at the iteration "
                    "limit in a flat valley (kept): the data barely constrain some parameter",
                    "runs over a wider range of N and D"))
    return out


def _draws_at_bounds(fitted: pw.Fit, draws: dict, L: np.ndarray) -> list[tuple[str, str]]:
    """Parameters whose 95% bootstrap interval reaches the edge of the search box: the data do
    not pin them, so neither can they pin an extrapolation (a point estimate at the edge is
    reported by the optimiser's own check)."""
    out, names = [], fitted.form.names
    edges = {"alpha": pw.EXP_BOUNDS, "beta": pw.EXP_BOUNDS, "E": (np.log(L.min()) - 15, None)}
    for name, (lo, hi) in edges.items():
        key = "e" if name == "E" else name
        if key not in names or any(n == key for n, _ in fitted.at_bound):
            continue
        v = np.log(np.asarray(draws[name], float)) if name == "E" else np.asarray(draws[name], float)
        for side, edge in (("lower", lo), ("upper", hi)):
            if edge is not None and np.mean(np.abs(v - edge) <= 1e-6 * max(1.0, abs(edge))) > 0.025:
                hint, fix = BOUND_HINTS[(key, side)]
                out.append((f"the 95% interval of {name} reaches its {side} bound: {hint}", fix))
    return out
