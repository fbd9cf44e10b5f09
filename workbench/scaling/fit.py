"""Scaling-law fits of a table of runs (scaling.runs: a study's trials, its export, or a user's
own table): which laws to fit, with bootstrap intervals and backtests (scaling.forms), the model
choice and the allocation it backs (scaling.choose), an IsoFLOP analysis, repeated data, and
group comparisons. The numbers come from `powerlaw` and `isoflop`; this module chooses the data,
keeps the books, and explains. The result is a `FitResult` (scaling.result)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import polars as pl

from workbench.plumbing.errors import FitError
from workbench.plumbing.files import write_atomic
from workbench.scaling import choose
from workbench.scaling import isoflop as iso
from workbench.scaling import powerlaw as pw
from workbench.scaling.forms import AXIS_SYMBOL, CONSTRAINED, FORMS, Arrays, FitOptions, estimate, fit_form, label
from workbench.scaling.repeats import EPOCH_LIMIT
from workbench.scaling.estimate import Estimate
from workbench.scaling.result import (Budget, Comparison, Counts, Estimator, FitResult, FormFit,
                                      GroupFit, Groups, IsoFLOP, Noise, Provenance, Repeated)

MIN_GROUP_RUNS = 4
OPTIMIZER = (f"grid of starts, best 5 refined, finished with scipy L-BFGS-B; for more than {pw.START_ROWS} runs the "
             f"starts are found on {pw.START_ROWS} of them drawn at random, and Newton steps on every run come before "
             "L-BFGS-B (which is left out when they settle)")
RESAMPLING = (f"every resample refitted, warm-started at the optimum; for more than {pw.REFIT_RUNS} runs, one Newton "
              "step from the optimum per resample, its gradient drawn exactly under Gaussian run weights "
              "(the one-step bootstrap)")
MIN_DECADES = 0.3           # N and D must each span a factor 2 for L(N, D) to be identifiable


def save(result: FitResult, path: Path) -> Path:
    """Write a fit result as JSON, atomically."""
    return write_atomic(Path(path), result.to_json(indent=2) + "\n")


def fit_runs(runs: pl.DataFrame, prov: Provenance, *, x: str | None = None, form: str = "auto",
             target_flops: float | None = None, bootstrap: int = 1000, huber_delta: float = 1e-3,
             holdout: float = 0.2, seed: int = 0, fixed_e: float | None = None, outliers: float | None = None,
             noise: float | None = None, workers: int | None = None) -> FitResult:
    """Fit the runs (scaling.runs: load_runs, study_runs or read_runs, with their provenance).

    Forms: `auto` fits every form (L(x), L(x) without E, L(N, D), L(N, D) with alpha = beta,
    and the data-constrained L(N, D') when runs go past about 4 epochs) under the runs'
    parameter convention and, for a study, the other one (total and non-embedding); or a
    comma-separated list of x, x-noE, nd, nd-noE, nd-tied, nd-dc under the runs' convention. Each gets
    percentile bootstrap intervals and a backtest that holds out the largest compute (the
    `holdout` share of runs). The supported fit (no parameter at a bound, no warning, backtest
    error within its own interval) with the lowest held-out error is chosen; allocation at
    `target_flops` (default: 100x the largest run) comes from the best supported L(N, D). Also
    an IsoFLOP analysis with local minima and intervals from run-to-run noise (`noise`, the SD
    of log loss, overrides its estimate), and, with `group_by`, the same per group with pairwise
    comparisons. For a study, x and group_by default to its `scaling:` section. `outliers=k`
    drops runs whose log residual lies more than k robust SDs out (counted); `fixed_e` fixes E.
    With `workers` above 1 and 100 resamples or more, refits run in worker processes started
    from a fork server, so a script calling this needs the `if __name__ == "__main__":` guard."""
    x = x or prov.defaults.x
    if x not in AXIS_SYMBOL:
        raise FitError(f"unknown x {x!r}: choose flops, params or tokens")
    if target_flops is None and len(runs):
        target_flops = 100.0 * float(runs["flops"].max())
    opts = FitOptions(x=x, forms=_form_names(form), target=target_flops, bootstrap=bootstrap, delta=huber_delta,
                      holdout=holdout, seed=seed, fixed_e=fixed_e, outliers=outliers,
                      workers=workers or len(os.sched_getaffinity(0)), noise=noise)
    # Worker processes pay off once there are a hundred refits: ill-posed ones take many iterations.
    # They start from a fork server, never by forking this process: a caller that trained a model
    # here holds thread pools whose locks a forked child would inherit held.
    pool = ProcessPoolExecutor(opts.workers, mp_context=_fork_server()) \
        if opts.workers > 1 and bootstrap >= 100 and len(runs) >= 4 else nullcontext()
    conventions = prov.conventions
    with pool as executor:
        overall, _, k = _fit_part(runs, opts, executor, conventions.parameters, conventions.alternative)
        groups = _fit_groups(runs, opts, executor, conventions.group_by, conventions.parameters)
    result = FitResult(
        source=prov.source, kind=prov.kind, layout=prov.layout, study=prov.study, x=x, target_flops=target_flops,
        conventions=conventions.model_copy(update={"flops_per_param_token": k}),
        counts=Counts(rows=prov.rows, used=prov.used, excluded=prov.excluded),
        estimator=Estimator(
            objective="sum over runs of Huber(log L_hat - log L)", huber_delta=huber_delta,
            parametrisation="log L_hat = LSE(a - alpha log N, b - beta log D, e)",
            optimizer=OPTIMIZER, bootstrap=bootstrap, resampling=RESAMPLING if bootstrap else None, interval=0.95, seed=seed, outliers="none" if outliers is None else
            f"drop runs whose log residual is more than {outliers:g} robust SDs from the median"),
        forms=overall.forms, isoflop=overall.isoflop, allocation=overall.allocation, selection=overall.selection,
        repeated=_repeated(runs), groups=groups, notes=prov.notes + overall.notes)
    result.warnings = [f"{prefix}{entry.label}: {w}" for prefix, _, part in result.parts()
                       for entry in (part.forms or {}).values() for w in entry.warnings or []]
    if result.repeated and result.repeated.runs:
        result.warnings.append(result.repeated.message)
    result.predictions, result.unsupported = choose.sentences(result)
    return result


def _fork_server() -> multiprocessing.context.BaseContext:
    """A fork server that has imported what the workers run (the numeric core, and the forms a
    large fit hands them whole), so each worker starts as a cheap fork. Each worker still
    imports the caller's main script afresh, if it is a script (Python 3.11's fork server never
    preloads it): whatever that script imports at the top, every pool pays once per worker, so
    this package's table-reading modules keep torch out of their imports."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["workbench.scaling.forms"])
    return context


def _form_names(form: str) -> list[str]:
    names = ["auto"] if form == "auto" else [f.strip() for f in form.split(",") if f.strip()]
    unknown = [n for n in names if n != "auto" and n not in FORMS]
    if unknown or not names:
        raise FitError(f"unknown form {form!r}: choose auto or a list of {', '.join(FORMS)}")
    return names


def _arrays(runs: pl.DataFrame, params: str = "params") -> Arrays:
    return Arrays(*(runs[c].fill_null(np.nan).to_numpy().astype(float)
                    for c in (params, "tokens", "flops", "loss", "unique_tokens")))


def _fit_part(runs: pl.DataFrame, opts: FitOptions, executor, convention: str,
              alternative: str | None) -> tuple[GroupFit, dict, float]:
    """Every requested form (under both conventions with `auto` and an `alternative`), the model
    choice, the allocation and the IsoFLOP analysis for one set of runs. Returns them, the
    bootstrap draws of the quantities groups are compared on, and k in C = k·N·D."""
    a = _arrays(runs)
    part = GroupFit(runs=len(runs), forms={}, notes=[])
    draws: dict[str, dict] = {}
    k = float(np.median(a.C / (a.N * a.D))) if len(runs) else 6.0
    spread = float(np.exp(np.ptp(np.log(a.C / (a.N * a.D))))) if len(runs) else 1.0
    if spread > 1.1:
        part.notes.append(f"C/(N·D) varies {spread:.2f}x across runs under these conventions; "
                          f"allocation uses C = {k:.3g}·N·D (the median)")
    auto = opts.forms == ["auto"]
    names = list(FORMS) if auto else opts.forms
    if auto and not _beyond_epochs(a):
        names.remove(CONSTRAINED)
    plans = [("", convention, a, k)]
    if auto and alternative and len(runs):
        b = _arrays(runs, "params_other")
        plans.append((f"@{alternative}", alternative, b, float(np.median(b.C / (b.N * b.D)))))
    # Beyond pw.REFIT_RUNS runs the bootstrap needs no workers (one Newton step per resample), and
    # the workers fit whole forms side by side instead.
    whole = executor is not None and len(runs) > pw.REFIT_RUNS
    pending = {}
    for suffix, conv, arrays, k_conv in plans:
        nd_reason = _nd_reason(arrays.N, arrays.D)
        for name in names:
            two = FORMS[name].terms == 2
            if suffix and not (two or opts.x == "params"):
                continue                # N does not enter L(C) or L(D): one fit serves both conventions
            key, under = name + suffix, conv if two or opts.x == "params" else None
            if two and nd_reason:
                part.forms[key] = FormFit(label=label(name, opts), runs=len(arrays.L), form=name,
                                          convention=under, reason=nd_reason)
            elif name == CONSTRAINED and not np.isfinite(arrays.U).all():
                part.forms[key] = FormFit(label=label(name, opts), runs=len(arrays.L), form=name, convention=under,
                                          reason="the unique training tokens of some runs are unknown")
            elif whole:
                part.forms[key] = None          # keeps the forms' order; filled below
                pending[key] = (executor.submit(fit_form, name, arrays, k_conv, opts, None, under), suffix)
            else:
                part.forms[key], d = fit_form(name, arrays, k_conv, opts, executor, under)
                if d and not suffix:
                    draws[key] = d
    for key, (future, suffix) in pending.items():
        part.forms[key], d = future.result()
        if d and not suffix:
            draws[key] = d
    noise = _noise(runs, part.forms, opts.noise)
    choose.judge(part.forms, noise.sd)
    for f in part.forms.values():
        if f.noise is not None:
            f.noise_dof = noise.dof
    part.selection = choose.selection(part.forms, opts.holdout)
    part.isoflop = _isoflop(runs, opts, noise)
    choose.isoflop_verdict(part.isoflop)
    part.allocation = choose.allocation(part, opts.target, {conv: k_conv for _, conv, _, k_conv in plans})
    if opts.target and len(runs):
        factor = opts.target / a.C.max()
        part.notes.append(f"target compute {opts.target:.3g} FLOPs is {factor:.3g}x the largest run "
                          f"({a.C.max():.3g}): predictions there are extrapolations; see the backtests")
    return part, draws, k


def _beyond_epochs(a: Arrays) -> bool:
    with np.errstate(invalid="ignore"):
        return bool(np.any(a.D / a.U > EPOCH_LIMIT))


def _repeated(runs: pl.DataFrame) -> Repeated | None:
    """Runs that went over their training data more than EPOCH_LIMIT times (None when no run's
    unique training tokens are known)."""
    a = _arrays(runs)
    known = np.isfinite(a.U)
    if not known.any():
        return None
    epochs = a.D[known] / a.U[known]
    beyond = int((epochs > EPOCH_LIMIT).sum())
    message = (f"{beyond} of {int(known.sum())} runs repeat their training data more than {EPOCH_LIMIT:g} times "
               f"(up to {epochs.max():.3g} epochs): their repeated tokens are worth less than fresh ones, and laws "
               f"in D count them as fresh; the data-constrained form nd-dc discounts them. More unique data "
               f"(a larger corpus) removes the problem") if beyond else \
        f"every run stays within {EPOCH_LIMIT:g} epochs of its training data (at most {epochs.max():.3g})"
    return Repeated(threshold=EPOCH_LIMIT, runs=beyond, known=int(known.sum()), max_epochs=epochs.max(),
                    message=message)


def _nd_reason(N: np.ndarray, D: np.ndarray) -> str | None:
    """Why L(N, D) cannot be fitted to these runs, or None if it can."""
    if len(N) < len(FORMS["nd"].names) + 1:
        return f"{len(N)} runs: L(N, D) needs at least {len(FORMS['nd'].names) + 1}"
    for name, v in (("N", N), ("D", D)):
        if np.ptp(np.log10(v)) < MIN_DECADES:
            return f"{name} spans only a factor {np.ptp(v) / v.min() + 1:.2f}: L(N, D) needs both N and D to vary"
    if abs(np.corrcoef(np.log(N), np.log(D))[0, 1]) > 0.98:
        return "log N and log D move together (correlation > 0.98): their effects cannot be separated"
    return None


def _budget_runs(runs: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, bool]:
    """The runs of the IsoFLOP analysis and their budget labels: a ladder's runs by nominal
    budget when the runs carry one, else all runs grouped by C; and whether it was a ladder."""
    designed = runs.filter(pl.col("budget").is_not_null())
    use = designed if len(designed) else runs
    key = use["budget"] if len(designed) else use["flops"]
    labels = iso.budgets(np.log(key.to_numpy().astype(float))) if len(use) else np.array([], int)
    return use, labels, bool(len(designed))


def _noise(runs: pl.DataFrame, forms: dict[str, FormFit], given: float | None) -> Noise:
    """The run-to-run noise (SD of log loss) behind every interval for one run: given; else from
    repeated seeds (runs of equal N and D); else, for a ladder (or runs whose budgets sample
    valleys of 4 sizes or more), from the scatter of each budget's losses about local quadratics
    (no law assumed); else from the residuals of the
    best-fitting law; else assumed. Estimates other than repeated seeds include some misfit and
    err high."""
    if given is not None:
        return Noise(sd=given, source="given")
    a = _arrays(runs)
    if len(runs):
        found = iso.repeat_noise(iso.repeat_cells(np.log(a.N), np.log(a.D)), np.log(a.L))
        if found:
            return Noise(sd=found[0], dof=found[1], source="repeated seeds (runs of equal N and D)")
    use, labels, ladder = _budget_runs(runs)
    log_n = np.log(use["params"].to_numpy().astype(float))
    # Runs merely grouped by compute make budgets of a few scattered sizes each, whose local
    # quadratics fit by chance: only budgets that sample a valley (4 sizes or more) can tell noise.
    valleys = sum(m.sum() for m in (labels == b for b in np.unique(labels))
                  if len(np.unique(iso.budgets(log_n[m], np.log(1.02)))) >= 4)
    found = iso.scatter_noise(labels, log_n, np.log(use["tokens"].to_numpy().astype(float)),
                              use["loss"].to_numpy().astype(float)) if ladder or valleys >= len(use) / 2 else None
    estimates = []
    if found and found[1] >= 3:
        estimates.append(Noise(sd=found[0], dof=found[1], source="scatter of each budget's losses about local "
                                                                 "quadratics (no repeated seeds; errs high)"))
    # Residual RMSE underestimates the noise by the parameters fitted: sqrt(n / (n - p)) undoes it.
    fitted = [(f.gof.rmse_log * np.sqrt(f.gof.runs / (f.gof.runs - len(f.params))), f.gof.runs - len(f.params),
               f.label) for f in forms.values() if f.fitted and f.gof.runs > len(f.params)]
    if fitted:
        sd, dof, law = min(fitted)
        estimates.append(Noise(sd=sd, dof=dof, source=f"residuals of the best-fitting law, {law} (no repeated "
                                                      "seeds; errs high)"))
    # Both include misfit (a valley is not quite a parabola, nor the law quite the truth), so
    # each bounds the noise from above: the smaller is the tighter bound.
    if estimates:
        return min(estimates, key=lambda n: n.sd)
    return Noise(sd=iso.ASSUMED_NOISE, source=f"assumed {iso.ASSUMED_NOISE:.0%}: no repeated seeds to measure it")


def _isoflop(runs: pl.DataFrame, opts: FitOptions, noise: Noise) -> IsoFLOP:
    """Budgets: a ladder's nominal budgets when the runs carry them, else runs grouped by C."""
    use, labels, designed = _budget_runs(runs)
    if len(use) < 3:
        return IsoFLOP(reason=f"{len(use)} runs: an IsoFLOP analysis needs budgets of at least 3 sizes each")
    N, D, C, L = (use[c].to_numpy().astype(float) for c in ("params", "tokens", "flops", "loss"))
    out = iso.isoflop(labels, np.log(C), np.log(N), np.log(D), L, opts.bootstrap, opts.seed,
                      np.log(opts.target) if opts.target else None, noise.sd)
    draws = out.pop("draws", None)
    budgets = [Budget(**b) for b in out["budgets"]]
    result = IsoFLOP(budgets=budgets, reason=out.get("reason"), resamples=out.get("resamples"),
                     failed=out.get("failed"), noise=noise,
                     budgets_from="ladder budgets" if designed else "runs grouped by compute (within 10%)",
                     excluded=_excluded(budgets))
    # Resamples in which a budget loses its interior minimum are skipped; when many are, the
    # rest are a biased subset and their spread is no interval: a design problem.
    usable = draws is not None and result.failed <= iso.MAX_FAILED * result.resamples
    if draws is not None and not usable:
        blamed = sorted((b for b in budgets if b.failed), key=lambda b: -b.failed)
        result.interval_reason = (
            f"design problem: {result.failed} of {result.resamples} resamples (more than "
            f"{iso.MAX_FAILED:.0%}) lose an interior minimum at some budget, under run-to-run noise of "
            f"{result.noise.sd:.2%}: " + ", ".join(f"C = {b.flops:.3g} in {b.failed:.0%}" for b in blamed)
            + "; add sizes around those budgets' best ones, or repeat seeds there")
    for q in ("a", "b", "N_opt", "D_opt"):
        if q in out:
            setattr(result, q, estimate(out[q], draws[q] if usable else None))
    if result.N_opt is not None:
        result.N_opt_at = result.D_opt_at = opts.target
    return result


def _excluded(budgets: list[Budget]) -> list[str] | None:
    """The budgets left out, each with what it lacks; those with too few sizes in one line."""
    few = [b for b in budgets if b.reason and b.sizes is not None and b.sizes < 3]
    out = [f"C = {b.flops:.3g}: {b.reason}" for b in budgets if b.reason and b not in few]
    if few:
        out.append(f"{len(few)} budget(s) with fewer than 3 distinct sizes (C = "
                   + ", ".join(f"{b.flops:.3g}" for b in few[:5]) + (", ..." if len(few) > 5 else "")
                   + "): a minimum needs 3")
    return out or None


def _fit_groups(runs: pl.DataFrame, opts: FitOptions, executor, by: str | None, convention: str) -> Groups | None:
    """Fit each group alone (under the runs' parameter convention only), then compare every pair
    on the quantities both groups have."""
    if by is None or runs["group"].null_count() == len(runs):
        return None
    fits, draws = {}, {}
    for (value,), part in sorted(runs.group_by("group"), key=lambda g: str(g[0][0])):
        value = str(value)
        if len(part) < MIN_GROUP_RUNS:
            fits[value] = GroupFit(runs=len(part), reason=f"{len(part)} run(s): a group needs at least {MIN_GROUP_RUNS}")
            continue
        fits[value], draws[value], _ = _fit_part(part, opts, executor, convention, None)
    comparisons = []
    names = sorted(draws)
    for i, g1 in enumerate(names):
        for g2 in names[i + 1:]:
            for form in sorted(set(draws[g1]) & set(draws[g2])):
                for q in sorted(set(draws[g1][form]) & set(draws[g2][form])):
                    comparisons.append(_compare(g1, g2, form, q, fits, draws))
    return Groups(by=by, fits=fits, comparisons=comparisons)


def _compare(g1: str, g2: str, form: str, q: str, fits: dict[str, GroupFit], draws: dict) -> Comparison:
    """Is the difference in q between two groups resolved? Groups are independent samples, so
    their bootstrap draws pair at random; the 95% interval of the difference either excludes 0
    (resolved) or not."""
    def point(g) -> Estimate:
        entry = fits[g].forms[form]
        return entry.params.get(q) or entry.derived[q]
    d1, d2 = np.asarray(draws[g1][form][q]), np.asarray(draws[g2][form][q])
    m = min(len(d1), len(d2))
    diff = d1[:m] - d2[:m]
    p1, p2 = point(g1), point(g2)
    lo, hi = pw.interval(diff)
    resolved = bool(m and np.isfinite(lo) and (lo > 0 or hi < 0))
    overlap = bool(p1.lo is not None and p2.lo is not None and p1.lo <= p2.hi and p2.lo <= p1.hi)
    verdict = (f"{q} ({form}): {g1} {p1.estimate:.4g} vs {g2} {p2.estimate:.4g}; difference "
               f"{p1.estimate - p2.estimate:+.4g} [{lo:+.3g}, {hi:+.3g}] "
               + ("excludes 0: resolved by the data" if resolved else "contains 0: not resolved by the data"))
    return Comparison(groups=[g1, g2], form=form, quantity=q,
                      difference=Estimate(estimate=p1.estimate - p2.estimate, lo=lo, hi=hi),
                      intervals_overlap=overlap, resolved=resolved, verdict=verdict)
