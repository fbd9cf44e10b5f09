"""Scaling-law fits of a table of runs (scaling.runs: a study's trials, its export, or a user's
own table): which laws to fit, with bootstrap intervals and backtests (scaling.forms), an IsoFLOP
analysis, compute-optimal allocation and group comparisons. The numbers come from `powerlaw`
and `isoflop`; this module chooses the data, keeps the books, and explains. The result is a
`FitResult` (scaling.result)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import polars as pl

from workbench.plumbing.errors import FitError
from workbench.plumbing.files import write_atomic
from workbench.scaling import isoflop as iso
from workbench.scaling import powerlaw as pw
from workbench.scaling.forms import AXIS_SYMBOL, FORMS, Arrays, FitOptions, estimate, fit_form, label
from workbench.scaling.result import (Allocation, Comparison, Counts, Estimate, Estimator, FitResult, FormFit,
                                      GroupFit, Groups, IsoFLOP, Provenance)

MIN_GROUP_RUNS = 4
MIN_DECADES = 0.3           # N and D must each span a factor 2 for L(N, D) to be identifiable


def save(result: FitResult, path: Path) -> Path:
    """Write a fit result as JSON, atomically."""
    return write_atomic(Path(path), result.to_json(indent=2) + "\n")


def fit_runs(runs: pl.DataFrame, prov: Provenance, *, x: str | None = None, form: str = "auto",
             target_flops: float | None = None, bootstrap: int = 1000, huber_delta: float = 1e-3,
             holdout: float = 0.2, seed: int = 0, fixed_e: float | None = None, outliers: float | None = None,
             workers: int | None = None) -> FitResult:
    """Fit the runs (scaling.runs: load_runs, study_runs or read_runs, with their provenance):
    the requested forms (`auto`: L(x), plus L(N, D) when N and D both vary; or a comma-separated
    list of x, x-noE, nd, nd-tied), each with percentile bootstrap intervals and a backtest; an
    IsoFLOP analysis; compute-optimal allocation at `target_flops` (default: 100x the largest
    run) from the L(N, D) fit; and, with `group_by`, the same per group with pairwise
    comparisons. For a study, x and group_by default to its `scaling:` section. `outliers=k`
    drops runs whose log residual lies more than k robust SDs out (counted); `fixed_e` fixes E."""
    x = x or prov.defaults.x
    if x not in AXIS_SYMBOL:
        raise FitError(f"unknown x {x!r}: choose flops, params or tokens")
    if target_flops is None and len(runs):
        target_flops = 100.0 * float(runs["flops"].max())
    opts = FitOptions(x=x, forms=_form_names(form), target=target_flops, bootstrap=bootstrap, delta=huber_delta,
                      holdout=holdout, seed=seed, fixed_e=fixed_e, outliers=outliers,
                      workers=workers or len(os.sched_getaffinity(0)))
    # Worker processes pay off once there are a hundred refits: ill-posed ones take many iterations.
    pool = ProcessPoolExecutor(opts.workers) if opts.workers > 1 and bootstrap >= 100 and len(runs) >= 4 \
        else nullcontext()
    with pool as executor:
        overall, _, k = _fit_part(runs, opts, executor)
        groups = _fit_groups(runs, opts, executor, prov.conventions.group_by)
    result = FitResult(
        source=prov.source, kind=prov.kind, layout=prov.layout, study=prov.study, x=x, target_flops=target_flops,
        conventions=prov.conventions.model_copy(update={"flops_per_param_token": k}),
        counts=Counts(rows=prov.rows, used=prov.used, excluded=prov.excluded),
        estimator=Estimator(
            objective="sum over runs of Huber(log L_hat - log L)", huber_delta=huber_delta,
            parametrisation="log L_hat = LSE(a - alpha log N, b - beta log D, e)",
            optimizer="grid of starts, best 5 refined, finished with scipy L-BFGS-B", bootstrap=bootstrap,
            interval=0.95, seed=seed, outliers="none" if outliers is None else
            f"drop runs whose log residual is more than {outliers:g} robust SDs from the median"),
        forms=overall.forms, isoflop=overall.isoflop, allocation=overall.allocation, groups=groups,
        notes=prov.notes + overall.notes)
    result.warnings = [f"{prefix}{entry.label}: {w}" for prefix, _, part in result.parts()
                       for entry in (part.forms or {}).values() for w in entry.warnings or []]
    result.unsupported = _unsupported(result)
    result.predictions = _predictions(result)
    return result


def _form_names(form: str) -> list[str]:
    names = ["auto"] if form == "auto" else [f.strip() for f in form.split(",") if f.strip()]
    unknown = [n for n in names if n != "auto" and n not in FORMS]
    if unknown or not names:
        raise FitError(f"unknown form {form!r}: choose auto or a list of {', '.join(FORMS)}")
    return names


def _fit_part(runs: pl.DataFrame, opts: FitOptions, executor) -> tuple[GroupFit, dict, float]:
    """Every requested form, the IsoFLOP analysis and the allocation for one set of runs. Returns
    them, the bootstrap draws of the quantities groups are compared on, and k in C = k·N·D."""
    a = Arrays(*(runs[c].to_numpy().astype(float) for c in ("params", "tokens", "flops", "loss")))
    part = GroupFit(runs=len(runs), forms={}, notes=[])
    draws: dict[str, dict] = {}
    k = float(np.median(a.C / (a.N * a.D))) if len(runs) else 6.0
    spread = float(np.exp(np.ptp(np.log(a.C / (a.N * a.D))))) if len(runs) else 1.0
    if spread > 1.1:
        part.notes.append(f"C/(N·D) varies {spread:.2f}x across runs under these conventions; "
                          f"allocation uses C = {k:.3g}·N·D (the median)")
    names = ["x", "nd"] if opts.forms == ["auto"] else opts.forms
    nd_reason = _nd_reason(a.N, a.D)
    for name in names:
        if FORMS[name].terms == 2 and nd_reason:
            part.forms[name] = FormFit(label=label(name, opts), runs=len(a.L), reason=nd_reason)
            continue
        part.forms[name], d = fit_form(name, a, k, opts, executor)
        if d:
            draws[name] = d
    part.isoflop = _isoflop(runs, opts)
    nd = next((n for n in ("nd", "nd-tied") if n in part.forms and part.forms[n].fitted), None)
    if nd:
        part.allocation = Allocation(source=nd, target_flops=opts.target, flops_per_param_token=k,
                                     **part.forms[nd].derived)
    else:
        part.allocation = Allocation(reason="no L(N, D) fit: " + next(
            (part.forms[n].reason for n in ("nd", "nd-tied") if n in part.forms), "not requested (form nd or nd-tied)"))
    if opts.target and len(runs):
        factor = opts.target / a.C.max()
        part.notes.append(f"target compute {opts.target:.3g} FLOPs is {factor:.3g}x the largest run "
                          f"({a.C.max():.3g}): predictions there are extrapolations; see the backtests")
    return part, draws, k


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


def _isoflop(runs: pl.DataFrame, opts: FitOptions) -> IsoFLOP:
    """Budgets: a ladder's nominal budgets when the runs carry them, else runs grouped by C."""
    designed = runs.filter(pl.col("budget").is_not_null())
    use = designed if len(designed) else runs
    if len(use) < 3:
        return IsoFLOP(reason=f"{len(use)} runs: an IsoFLOP analysis needs budgets of at least 3 sizes each")
    N, D, C, L = (use[c].to_numpy().astype(float) for c in ("params", "tokens", "flops", "loss"))
    labels = iso.budgets(np.log(use["budget"].to_numpy().astype(float) if len(designed) else C))
    out = iso.isoflop(labels, np.log(C), np.log(N), np.log(D), L, opts.bootstrap, opts.seed,
                      np.log(opts.target) if opts.target else None)
    draws = out.pop("draws", None)
    result = IsoFLOP(budgets=out.pop("budgets"), reason=out.pop("reason", None), resamples=out.pop("resamples", None),
                     failed=out.pop("failed", None),
                     budgets_from="ladder budgets" if len(designed) else "runs grouped by compute (within 10%)")
    # Resamples that lose a budget's interior minimum are skipped; when many are, the rest are
    # a biased subset and their spread is no interval at all.
    usable = draws is not None and opts.bootstrap and result.failed <= 0.2 * result.resamples
    if draws is not None and opts.bootstrap and not usable:
        result.interval_reason = (f"{result.failed} of {result.resamples} resamples lost an interior minimum: "
                                  "too few runs per budget for bootstrap intervals")
    for q in ("a", "b", "N_opt", "D_opt"):
        if q in out:
            setattr(result, q, estimate(out[q], draws[q] if usable else None))
    if result.N_opt is not None:
        result.N_opt_at = result.D_opt_at = opts.target
    return result


def _fit_groups(runs: pl.DataFrame, opts: FitOptions, executor, by: str | None) -> Groups | None:
    """Fit each group alone, then compare every pair on the quantities both groups have."""
    if by is None or runs["group"].null_count() == len(runs):
        return None
    fits, draws = {}, {}
    for (value,), part in sorted(runs.group_by("group"), key=lambda g: str(g[0][0])):
        value = str(value)
        if len(part) < MIN_GROUP_RUNS:
            fits[value] = GroupFit(runs=len(part), reason=f"{len(part)} run(s): a group needs at least {MIN_GROUP_RUNS}")
            continue
        fits[value], draws[value], _ = _fit_part(part, opts, executor)
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


def _unsupported(result: FitResult) -> list[str]:
    """Every place the data could not support a number, with the reason (for reports)."""
    out = []
    for prefix, _, part in result.parts():
        if part.reason:
            out.append(f"{prefix}{part.reason}")
            continue
        out += [f"{prefix}{e.label}: {e.reason}" for e in part.forms.values() if e.reason]
        if part.isoflop.reason:
            out.append(f"{prefix}IsoFLOP: {part.isoflop.reason}")
    return out


def _predictions(result: FitResult) -> list[str]:
    """One sentence per usable prediction at the target compute, with its interval."""
    out = []
    for prefix, _, part in result.parts():
        alloc = part.allocation
        if alloc is not None and alloc.N_opt is not None:
            out.append(f"{prefix}at C = {alloc.target_flops:.3g} FLOPs, L(N, D) says: train "
                       f"N = {alloc.N_opt.text()} parameters on D = {alloc.D_opt.text()} tokens "
                       f"({alloc.tokens_per_param.text()} tokens per parameter); "
                       f"predicted loss {alloc.loss_at_target.text()}")
        iso_ = part.isoflop
        if iso_ is not None and iso_.a is not None:
            line = f"{prefix}IsoFLOP: N_opt ∝ C^{iso_.a.text()}, D_opt ∝ C^{iso_.b.text()}"
            if iso_.N_opt is not None:
                line += f"; at C = {iso_.N_opt_at:.3g}: N_opt = {iso_.N_opt.text()}, D_opt = {iso_.D_opt.text()}"
            out.append(line)
        x_form = (part.forms or {}).get("x")
        if x_form is not None and x_form.derived and "loss_at_target" in x_form.derived:
            out.append(f"{prefix}{x_form.label} predicts loss {x_form.derived['loss_at_target'].text()} "
                       f"at C = {result.target_flops:.3g}")
    return out
