"""One law fitted to one set of runs: the forms a fit can use, and for each its parameters with
bootstrap intervals, what it says at the target compute, its curve for plots, its backtest and
its warnings. The numbers come from `powerlaw`; this module turns them into a `FormFit`."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from workbench.scaling import powerlaw as pw
from workbench.scaling.result import (Backtest, BootstrapCount, Curve, Estimate, FormFit, GoodnessOfFit)

FORMS = {"x": pw.Form(terms=1), "x-noE": pw.Form(terms=1, has_e=False),
         "nd": pw.Form(terms=2), "nd-tied": pw.Form(terms=2, tied=True)}
AXIS_SYMBOL = {"flops": "C", "params": "N", "tokens": "D"}


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


@dataclass
class Arrays:
    """One set of runs as arrays: parameters, tokens, compute, loss."""

    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    L: np.ndarray

    def axis(self, name: str) -> np.ndarray:
        return {"flops": self.C, "params": self.N, "tokens": self.D}[name]


def label(name: str, opts: FitOptions) -> str:
    """The law of form `name` in symbols, e.g. 'L(C) = E + A·C^-alpha'."""
    sym = AXIS_SYMBOL[opts.x]
    e = "E + " if opts.fixed_e is None else f"E(fixed {opts.fixed_e:g}) + "
    return {"x": f"L({sym}) = {e}A·{sym}^-alpha", "x-noE": f"L({sym}) = A·{sym}^-alpha",
            "nd": f"L(N, D) = {e}A/N^alpha + B/D^beta",
            "nd-tied": f"L(N, D) = {e}A/N^alpha + B/D^alpha (alpha = beta)"}[name]


def estimate(value: float, draws: np.ndarray | None) -> Estimate:
    """A point estimate with the 95% percentile interval of its bootstrap draws, if any."""
    lo, hi = pw.interval(draws) if draws is not None else (None, None)
    return Estimate(estimate=value, lo=lo, hi=hi)


def fit_form(name: str, runs: Arrays, k: float, opts: FitOptions,
             executor: Executor | None) -> tuple[FormFit, dict[str, np.ndarray]]:
    """Fit form `name` to the runs (C = k·N·D for the allocation). Returns the entry and the
    bootstrap draws of the quantities groups are compared on (exponents, a, loss at target)."""
    form = FORMS[name]
    if opts.fixed_e is not None and form.has_e:
        form = pw.Form(form.terms, True, form.tied, opts.fixed_e)
    N, D, C, L = runs.N, runs.D, runs.C, runs.L
    entry = FormFit(label=label(name, opts), runs=len(L))
    need = len(form.names) + 1
    if len(L) < need:
        entry.reason = f"{len(L)} runs: this form needs at least {need}"
        return entry, {}
    if form.terms == 2:
        X, key = np.log(np.c_[N, D]), C
    else:
        X = np.log(runs.axis(opts.x))[:, None]
        key = np.exp(X[:, 0])
    y = np.log(L)
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
    shown = ["E", "A", "alpha"] + (["B", "beta"] if form.terms == 2 else [])
    if not form.has_e:
        shown.remove("E")
    entry.params = {p: estimate(fitted.params[p], draws and draws[p]) for p in shown}
    if form.fixed_e is not None:
        entry.params["E"] = Estimate(estimate=form.fixed_e, fixed=True)
    if form.tied:
        entry.params["beta"].tied_to = "alpha"
    compare = {p: draws[p] for p in ("alpha", "beta") if draws and p in shown and not (p == "beta" and form.tied)}
    if form.terms == 2 and opts.target:
        point = pw.allocation(fitted.params, k, opts.target)
        boot = pw.allocation(draws, k, opts.target) if draws else {}
        entry.derived = {q: estimate(point[q], boot.get(q)) for q in point}
        compare.update({q: boot[q] for q in ("a", "loss_at_target") if boot})
    elif opts.x == "flops" and opts.target:
        at = lambda p: p["E"] * form.has_e + p["A"] * opts.target ** -np.asarray(p["alpha"])
        entry.derived = {"loss_at_target": estimate(float(at(fitted.params)), draws and at(draws))}
        if draws:
            compare["loss_at_target"] = at(draws)
    entry.curve = _curve(form, fitted.params, draws, runs, k, opts)
    if draws:
        entry.bootstrap = BootstrapCount(resamples=opts.bootstrap, unconverged=draws["unconverged"])
    entry.backtest = Backtest(**pw.backtest(form, X, y, key, opts.holdout, opts.delta),
                              by="flops" if form.terms == 2 else opts.x)
    entry.warnings = _warnings(fitted, L, draws, opts)
    return entry, compare


def _curve(form: pw.Form, params: dict, draws: dict | None, runs: Arrays, k: float, opts: FitOptions) -> Curve:
    """The fitted law along its axis for plots, with a 95% bootstrap band: L(x) from the
    smallest run to the largest (to the target, for compute); for L(N, D), the compute-optimal
    loss along C."""
    if form.terms == 2:
        axis, xs = "flops", np.geomspace(runs.C.min(), max(runs.C.max(), opts.target or 0), 60)
        columns = lambda p: {q: np.asarray(p[q], float)[..., None] for q in ("E", "A", "B", "alpha", "beta")}
        along = lambda p: pw.allocation(columns(p), k, xs)["loss_at_target"]
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


BOUND_HINTS = {("alpha", "lower"): "no power-law decrease in the data",
               ("beta", "lower"): "no power-law decrease in the data",
               ("alpha", "upper"): "implausibly steep: the data cannot pin this term down",
               ("beta", "upper"): "implausibly steep: the data cannot pin this term down",
               ("e", "lower"): "E is effectively 0: the data show no floor (try form x-noE)",
               ("e", "upper"): "E above the losses: the law is flat"}


def _warnings(fitted: pw.Fit, L: np.ndarray, draws: dict | None, opts: FitOptions) -> list[str]:
    out = []
    for name, side in fitted.at_bound:
        shown = {"a": "A", "b": "B", "e": "E"}.get(name, name)
        out.append(f"{shown} sits at its {side} bound: "
                   + BOUND_HINTS.get((name, side), "the optimum lies outside the search box"))
    if fitted.form.has_e and fitted.params["E"] > L.min():
        out.append(f"E = {fitted.params['E']:.4g} lies above the lowest observed loss ({L.min():.4g})")
    if not fitted.converged:
        out.append(f"L-BFGS-B did not report convergence: {fitted.message}")
    if draws and draws["unconverged"] > 0.01 * opts.bootstrap:
        out.append(f"{draws['unconverged']} of {opts.bootstrap} bootstrap refits stopped at the iteration "
                   "limit in a flat valley (kept): the data barely constrain some parameter")
    return out
