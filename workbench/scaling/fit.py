"""Scaling-law fits of a study's runs or of a table of runs (CSV or Parquet): which runs count,
under which N and C conventions, which laws to fit, with bootstrap intervals, backtests, an
IsoFLOP analysis, compute-optimal allocation and group comparisons. The numbers come from
`powerlaw` and `isoflop`; this module chooses the data, keeps the books, and explains.

A result is one JSON-able dict; where the data cannot support a number, the dict carries a
`reason` instead, so reports can say why rather than draw a wrong line. Its layout:

    source, kind (study|table), layout (study-export|runs), study, x, target_flops
    conventions {N, C, loss, group_by, flops_per_param_token}   counts {rows, used, excluded}
    estimator {objective, huber_delta, parametrisation, optimizer, bootstrap, interval, seed, outliers}
    forms {x|x-noE|nd|nd-tied: {label, runs, params {E, A, alpha[, B, beta]: {estimate, lo, hi}},
           derived {loss_at_target | a, b, N_opt, D_opt, tokens_per_param, loss_at_target},
           gof {runs, r2_log, rmse_log, objective, grad_norm, converged, message, starts_agreeing},
           curve {axis, x, y, lo, hi}, bootstrap {resamples, unconverged}, outliers_dropped,
           backtest {holdout, by, train_runs, test_runs, mae, bias, max_abs, ..., held_out}, warnings}
           or {label, runs, reason}}
    isoflop {budgets [{flops, runs, params, tokens, loss, N_opt, D_opt, loss_opt | reason}],
             a, b, N_opt, D_opt (at N_opt_at), resamples, failed, interval_reason} or {reason}
    allocation {from, target_flops, flops_per_param_token, a, b, N_opt, D_opt, tokens_per_param,
                loss_at_target} or {reason}
    groups {by, fits {value: {runs, forms, isoflop, allocation, notes} or {runs, reason}},
            comparisons [{groups, form, quantity, difference, intervals_overlap, resolved, verdict}]}
    notes, warnings, unsupported, predictions: lists of sentences"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.plumbing.errors import FitError
from workbench.plumbing.files import write_atomic
from workbench.scaling import isoflop as iso
from workbench.scaling import powerlaw as pw

FORMS = {"x": pw.Form(terms=1), "x-noE": pw.Form(terms=1, has_e=False),
         "nd": pw.Form(terms=2), "nd-tied": pw.Form(terms=2, tied=True)}
AXIS_SYMBOL = {"flops": "C", "params": "N", "tokens": "D"}
MIN_GROUP_RUNS = 4
MIN_DECADES = 0.3           # N and D must each span a factor 2 for L(N, D) to be identifiable


def save(result: dict, path: Path) -> Path:
    """Write a result (as returned by fit_runs) as JSON, atomically."""
    return write_atomic(Path(path), json.dumps(result, indent=2, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------ fits


def fit_runs(runs: pl.DataFrame, prov: dict, *, x: str | None = None, form: str = "auto",
             target_flops: float | None = None, bootstrap: int = 1000, huber_delta: float = 1e-3,
             holdout: float = 0.2, seed: int = 0, fixed_e: float | None = None, outliers: float | None = None,
             workers: int | None = None) -> dict:
    """Fit the runs (scaling.runs: read_runs or from_export, with their provenance): the requested forms (`auto`: L(x), plus L(N, D)
    when N and D both vary; or a comma-separated list of x, x-noE, nd, nd-tied), each with
    percentile bootstrap intervals and a backtest; an IsoFLOP analysis; compute-optimal
    allocation at `target_flops` (default: 100x the largest run) from the L(N, D) fit; and, with
    `group_by`, the same per group with pairwise comparisons. For a study, x and group_by
    default to its `scaling:` section. `outliers=k` drops runs whose log residual lies more
    than k robust SDs out (counted); `fixed_e` fixes E. Returns a JSON-able dict."""
    x = x or prov["defaults"]["x"]
    if x not in AXIS_SYMBOL:
        raise FitError(f"unknown x {x!r}: choose flops, params or tokens")
    names = _form_names(form)
    if target_flops is None and len(runs):
        target_flops = 100.0 * float(runs["flops"].max())
    opts = {"x": x, "forms": names, "target": target_flops, "bootstrap": bootstrap, "delta": huber_delta,
            "holdout": holdout, "seed": seed, "fixed_e": fixed_e, "outliers": outliers,
            "workers": workers or len(os.sched_getaffinity(0))}
    workers = opts["workers"]
    # Worker processes pay off once there are a hundred refits: ill-posed ones take many iterations.
    pool = ProcessPoolExecutor(workers) if workers > 1 and bootstrap >= 100 and len(runs) >= 4 else nullcontext()
    with pool as executor:
        overall, _ = _fit_runs(runs, opts, executor)
        groups = _fit_groups(runs, opts, executor, prov["conventions"]["group_by"])
    k = overall.pop("k")
    notes = prov["notes"] + overall.pop("notes")
    result = {
        "source": prov["source"], "kind": prov["kind"], "layout": prov["layout"], "study": prov["study"], "x": x,
        "target_flops": target_flops,
        "conventions": {**prov["conventions"], "flops_per_param_token": k},
        "counts": {"rows": prov["rows"], "used": prov["used"], "excluded": prov["excluded"]},
        "estimator": {"objective": "sum over runs of Huber(log L_hat - log L)", "huber_delta": huber_delta,
                      "parametrisation": "log L_hat = LSE(a - alpha log N, b - beta log D, e)",
                      "optimizer": "grid of starts, best 5 refined, finished with scipy L-BFGS-B",
                      "bootstrap": bootstrap, "interval": 0.95, "seed": seed,
                      "outliers": "none" if outliers is None else
                      f"drop runs whose log residual is more than {outliers:g} robust SDs from the median"},
        **overall, "groups": groups, "notes": notes,
    }
    result["warnings"] = _all_warnings(result)
    result["unsupported"] = _unsupported(result)
    result["predictions"] = _predictions(result)
    return _clean(result)


def _form_names(form: str) -> list[str]:
    names = ["auto"] if form == "auto" else [f.strip() for f in form.split(",") if f.strip()]
    unknown = [n for n in names if n != "auto" and n not in FORMS]
    if unknown or not names:
        raise FitError(f"unknown form {form!r}: choose auto or a list of {', '.join(FORMS)}")
    return names


def _fit_runs(runs: pl.DataFrame, opts: dict, executor) -> tuple[dict, dict]:
    """Every requested form, the IsoFLOP analysis and the allocation for one set of runs.
    Returns the JSON part and the bootstrap draws of the quantities groups are compared on."""
    N, D, C, L = (runs[c].to_numpy().astype(float) for c in ("params", "tokens", "flops", "loss"))
    out: dict[str, Any] = {"forms": {}, "notes": []}
    draws: dict[str, dict] = {}
    k = float(np.median(C / (N * D))) if len(runs) else 6.0
    out["k"] = k
    spread = float(np.exp(np.ptp(np.log(C / (N * D))))) if len(runs) else 1.0
    if spread > 1.1:
        out["notes"].append(f"C/(N·D) varies {spread:.2f}x across runs under these conventions; "
                            f"allocation uses C = {k:.3g}·N·D (the median)")
    names = ["x", "nd"] if opts["forms"] == ["auto"] else opts["forms"]
    nd_reason = _nd_reason(N, D)
    for name in names:
        if FORMS[name].terms == 2 and nd_reason:
            out["forms"][name] = {"label": _label(name, opts), "runs": len(L), "reason": nd_reason}
            continue
        out["forms"][name], d = _fit_form(name, N, D, C, L, k, opts, executor)
        if d:
            draws[name] = d
    out["isoflop"] = _isoflop(runs, opts)
    nd = next((n for n in ("nd", "nd-tied") if "params" in out["forms"].get(n, {})), None)
    out["allocation"] = {"from": nd, "target_flops": opts["target"], "flops_per_param_token": k,
                         **out["forms"][nd]["derived"]} if nd else \
        {"reason": "no L(N, D) fit: " + next((out["forms"][n]["reason"] for n in ("nd", "nd-tied")
                                               if n in out["forms"]), "not requested (form nd or nd-tied)")}
    if opts["target"] and len(runs):
        factor = opts["target"] / C.max()
        out["notes"].append(f"target compute {opts['target']:.3g} FLOPs is {factor:.3g}x the largest run "
                            f"({C.max():.3g}): predictions there are extrapolations; see the backtests")
    return out, draws


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


def _label(name: str, opts: dict) -> str:
    sym = AXIS_SYMBOL[opts["x"]]
    e = "E + " if opts["fixed_e"] is None else f"E(fixed {opts['fixed_e']:g}) + "
    return {"x": f"L({sym}) = {e}A·{sym}^-alpha", "x-noE": f"L({sym}) = A·{sym}^-alpha",
            "nd": f"L(N, D) = {e}A/N^alpha + B/D^beta",
            "nd-tied": f"L(N, D) = {e}A/N^alpha + B/D^alpha (alpha = beta)"}[name]


def _fit_form(name: str, N, D, C, L, k: float, opts: dict, executor) -> tuple[dict, dict]:
    form = FORMS[name]
    if opts["fixed_e"] is not None and form.has_e:
        form = pw.Form(form.terms, True, form.tied, opts["fixed_e"])
    entry: dict[str, Any] = {"label": _label(name, opts), "runs": len(L)}
    need = len(form.names) + 1
    if len(L) < need:
        return {**entry, "reason": f"{len(L)} runs: this form needs at least {need}"}, {}
    if form.terms == 2:
        X, key = np.log(np.c_[N, D]), C
    else:
        X = np.log({"flops": C, "params": N, "tokens": D}[opts["x"]])[:, None]
        key = np.exp(X[:, 0])
    y = np.log(L)
    fitted = pw.fit(form, X, y, opts["delta"])
    if opts["outliers"] is not None:
        drop = pw.outliers(y - np.log(pw.predict(form, fitted.params, X)), opts["outliers"])
        entry["outliers_dropped"] = int(drop.sum())
        if drop.any() and (~drop).sum() >= need:
            X, y, key = X[~drop], y[~drop], key[~drop]
            fitted = pw.fit(form, X, y, opts["delta"])
    pred = pw.predict(form, fitted.params, X)
    resid = y - np.log(pred)
    entry["gof"] = {"runs": len(y), "r2_log": float(1 - (resid ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300)),
                    "rmse_log": float(np.sqrt((resid ** 2).mean())), "objective": fitted.objective,
                    "grad_norm": fitted.grad_norm, "converged": fitted.converged, "message": fitted.message,
                    "starts_agreeing": fitted.starts_agreeing}
    draws = pw.bootstrap(fitted, X, y, opts["bootstrap"], opts["seed"], opts["delta"], executor, opts["workers"]) \
        if opts["bootstrap"] else None
    shown = ["E", "A", "alpha"] + (["B", "beta"] if form.terms == 2 else [])
    if not form.has_e:
        shown.remove("E")
    entry["params"] = {p: _estimate(fitted.params[p], draws and draws[p]) for p in shown}
    if form.fixed_e is not None:
        entry["params"]["E"] = {"estimate": form.fixed_e, "lo": None, "hi": None, "fixed": True}
    if form.tied:
        entry["params"]["beta"]["tied_to"] = "alpha"
    compare = {p: draws[p] for p in ("alpha", "beta") if draws and p in shown and not (p == "beta" and form.tied)}
    if form.terms == 2 and opts["target"]:
        point = pw.allocation(fitted.params, k, opts["target"])
        boot = pw.allocation(draws, k, opts["target"]) if draws else {}
        entry["derived"] = {q: _estimate(point[q], boot.get(q)) for q in point}
        compare.update({q: boot[q] for q in ("a", "loss_at_target") if boot})
    elif opts["x"] == "flops" and opts["target"]:
        at = lambda p: p["E"] * form.has_e + p["A"] * opts["target"] ** -np.asarray(p["alpha"])
        entry["derived"] = {"loss_at_target": _estimate(float(at(fitted.params)), draws and at(draws))}
        if draws:
            compare["loss_at_target"] = at(draws)
    entry["curve"] = _curve(form, fitted.params, draws, N, D, C, k, opts)
    if draws:
        entry["bootstrap"] = {"resamples": opts["bootstrap"], "unconverged": draws["unconverged"]}
    entry["backtest"] = pw.backtest(form, X, y, key, opts["holdout"], opts["delta"])
    entry["backtest"]["by"] = "flops" if form.terms == 2 else opts["x"]
    entry["warnings"] = _form_warnings(fitted, L, draws, opts)
    return entry, compare


def _curve(form: pw.Form, params: dict, draws, N, D, C, k: float, opts: dict) -> dict:
    """The fitted law along its axis for plots, with a 95% bootstrap band: L(x) from the
    smallest run to the largest (to the target, for compute); for L(N, D), the compute-optimal
    loss along C."""
    if form.terms == 2:
        axis, xs = "flops", np.geomspace(C.min(), max(C.max(), opts["target"] or 0), 60)
        columns = lambda p: {q: np.asarray(p[q], float)[..., None] for q in ("E", "A", "B", "alpha", "beta")}
        along = lambda p: pw.allocation(columns(p), k, xs)["loss_at_target"]
    else:
        axis = opts["x"]
        v = {"flops": C, "params": N, "tokens": D}[axis]
        xs = np.geomspace(v.min(), max(v.max(), (opts["target"] or 0) if axis == "flops" else 0), 60)
        along = lambda p: np.asarray(p["E"], float)[..., None] * form.has_e \
            + np.asarray(p["A"], float)[..., None] * xs ** -np.asarray(p["alpha"], float)[..., None]
    out = {"axis": axis, "x": xs, "y": along(params)}
    if draws:
        band = along(draws)
        out["lo"], out["hi"] = np.nanpercentile(band, 2.5, axis=0), np.nanpercentile(band, 97.5, axis=0)
    return out


def _estimate(value: float, draws) -> dict:
    lo, hi = pw.interval(draws) if draws is not None else (None, None)
    return {"estimate": float(value), "lo": lo, "hi": hi}


BOUND_HINTS = {("alpha", "lower"): "no power-law decrease in the data",
               ("beta", "lower"): "no power-law decrease in the data",
               ("alpha", "upper"): "implausibly steep: the data cannot pin this term down",
               ("beta", "upper"): "implausibly steep: the data cannot pin this term down",
               ("e", "lower"): "E is effectively 0: the data show no floor (try form x-noE)",
               ("e", "upper"): "E above the losses: the law is flat"}


def _form_warnings(fitted: pw.Fit, L: np.ndarray, draws, opts: dict) -> list[str]:
    out = []
    for name, side in fitted.at_bound:
        shown = {"a": "A", "b": "B", "e": "E"}.get(name, name)
        out.append(f"{shown} sits at its {side} bound: "
                   + BOUND_HINTS.get((name, side), "the optimum lies outside the search box"))
    if fitted.form.has_e and fitted.params["E"] > L.min():
        out.append(f"E = {fitted.params['E']:.4g} lies above the lowest observed loss ({L.min():.4g})")
    if not fitted.converged:
        out.append(f"L-BFGS-B did not report convergence: {fitted.message}")
    if draws and draws["unconverged"] > 0.01 * opts["bootstrap"]:
        out.append(f"{draws['unconverged']} of {opts['bootstrap']} bootstrap refits stopped at the iteration "
                   "limit in a flat valley (kept): the data barely constrain some parameter")
    return out


def _isoflop(runs: pl.DataFrame, opts: dict) -> dict:
    """Budgets: a ladder's nominal budgets when the runs carry them, else runs grouped by C."""
    designed = runs.filter(pl.col("budget").is_not_null())
    use = designed if len(designed) else runs
    if len(use) < 3:
        return {"reason": f"{len(use)} runs: an IsoFLOP analysis needs budgets of at least 3 sizes each"}
    N, D, C, L = (use[c].to_numpy().astype(float) for c in ("params", "tokens", "flops", "loss"))
    labels = iso.budgets(np.log(use["budget"].to_numpy().astype(float) if len(designed) else C))
    out = iso.isoflop(labels, np.log(C), np.log(N), np.log(D), L, opts["bootstrap"], opts["seed"],
                     np.log(opts["target"]) if opts["target"] else None)
    out["budgets_from"] = "ladder budgets" if len(designed) else "runs grouped by compute (within 10%)"
    draws = out.pop("draws", None)
    # Resamples that lose a budget's interior minimum are skipped; when many are, the rest are
    # a biased subset and their spread is no interval at all.
    usable = draws is not None and opts["bootstrap"] and out["failed"] <= 0.2 * out["resamples"]
    if draws is not None and opts["bootstrap"] and not usable:
        out["interval_reason"] = (f"{out['failed']} of {out['resamples']} resamples lost an interior minimum: "
                                  "too few runs per budget for bootstrap intervals")
    for q in ("a", "b", "N_opt", "D_opt"):
        if q in out:
            out[q] = _estimate(out[q], draws[q] if usable else None)
    if "N_opt" in out:
        out["N_opt_at"] = out["D_opt_at"] = opts["target"]
    return out


def _fit_groups(runs: pl.DataFrame, opts: dict, executor, by: str | None) -> dict | None:
    """Fit each group alone, then compare every pair on the quantities both groups have."""
    if by is None or runs["group"].null_count() == len(runs):
        return None
    fits, draws = {}, {}
    for (value,), part in sorted(runs.group_by("group"), key=lambda g: str(g[0][0])):
        value = str(value)
        if len(part) < MIN_GROUP_RUNS:
            fits[value] = {"runs": len(part), "reason": f"{len(part)} run(s): a group needs at least {MIN_GROUP_RUNS}"}
            continue
        fits[value], draws[value] = _fit_runs(part, opts, executor)
        fits[value]["runs"] = len(part)
        fits[value].pop("k")
    comparisons = []
    names = sorted(draws)
    for i, g1 in enumerate(names):
        for g2 in names[i + 1:]:
            for form in sorted(set(draws[g1]) & set(draws[g2])):
                for q in sorted(set(draws[g1][form]) & set(draws[g2][form])):
                    comparisons.append(_compare(g1, g2, form, q, fits, draws))
    return {"by": by, "fits": fits, "comparisons": comparisons}


def _compare(g1: str, g2: str, form: str, q: str, fits: dict, draws: dict) -> dict:
    """Is the difference in q between two groups resolved? Groups are independent samples, so
    their bootstrap draws pair at random; the 95% interval of the difference either excludes 0
    (resolved) or not."""
    def point(g):
        entry = fits[g]["forms"][form]
        src = entry["params"].get(q) or entry["derived"][q]
        return src["estimate"], src["lo"], src["hi"]
    d1, d2 = np.asarray(draws[g1][form][q]), np.asarray(draws[g2][form][q])
    m = min(len(d1), len(d2))
    diff = d1[:m] - d2[:m]
    (e1, lo1, hi1), (e2, lo2, hi2) = point(g1), point(g2)
    lo, hi = pw.interval(diff)
    resolved = bool(m and np.isfinite(lo) and (lo > 0 or hi < 0))
    overlap = bool(lo1 is not None and lo2 is not None and lo1 <= hi2 and lo2 <= hi1)
    verdict = (f"{q} ({form}): {g1} {e1:.4g} vs {g2} {e2:.4g}; difference {e1 - e2:+.4g} "
               f"[{lo:+.3g}, {hi:+.3g}] " + ("excludes 0: resolved by the data" if resolved
                                             else "contains 0: not resolved by the data"))
    return {"groups": [g1, g2], "form": form, "quantity": q, "difference": {"estimate": e1 - e2, "lo": lo, "hi": hi},
            "intervals_overlap": overlap, "resolved": resolved, "verdict": verdict}


def _all_warnings(result: dict) -> list[str]:
    return [f"{prefix}{entry['label']}: {w}" for prefix, part in _parts(result)
            for entry in (part.get("forms") or {}).values() for w in entry.get("warnings", [])]


def _parts(result: dict) -> list[tuple[str, dict]]:
    """The overall fit and each fitted group, with a prefix naming the group."""
    fits = (result.get("groups") or {}).get("fits") or {}
    by = (result.get("groups") or {}).get("by")
    return [("", result)] + [(f"{by} = {g}: ", f) for g, f in fits.items()]


def _unsupported(result: dict) -> list[str]:
    """Every place the data could not support a number, with the reason (for reports)."""
    out = []
    for prefix, part in _parts(result):
        if "reason" in part:
            out.append(f"{prefix}{part['reason']}")
            continue
        out += [f"{prefix}{e['label']}: {e['reason']}" for e in part["forms"].values() if "reason" in e]
        if "reason" in part["isoflop"]:
            out.append(f"{prefix}IsoFLOP: {part['isoflop']['reason']}")
    return out


def _predictions(result: dict) -> list[str]:
    """One sentence per usable prediction at the target compute, with its interval."""
    def est(e: dict, fmt: str = ".3g") -> str:
        text = format(e["estimate"], fmt)
        return text + (f" [{format(e['lo'], fmt)}, {format(e['hi'], fmt)}]" if e.get("lo") is not None else "")
    out = []
    for prefix, part in _parts(result):
        alloc = part.get("allocation") or {}
        if "N_opt" in alloc:
            out.append(f"{prefix}at C = {alloc['target_flops']:.3g} FLOPs, L(N, D) says: train "
                       f"N = {est(alloc['N_opt'])} parameters on D = {est(alloc['D_opt'])} tokens "
                       f"({est(alloc['tokens_per_param'])} tokens per parameter); "
                       f"predicted loss {est(alloc['loss_at_target'], '.4g')}")
        iso = part.get("isoflop") or {}
        if "a" in iso:
            line = f"{prefix}IsoFLOP: N_opt ∝ C^{est(iso['a'])}, D_opt ∝ C^{est(iso['b'])}"
            if "N_opt" in iso:
                line += f"; at C = {iso['N_opt_at']:.3g}: N_opt = {est(iso['N_opt'])}, D_opt = {est(iso['D_opt'])}"
            out.append(line)
        x_form = (part.get("forms") or {}).get("x") or {}
        if "loss_at_target" in x_form.get("derived", {}):
            out.append(f"{prefix}{x_form['label']} predicts loss {est(x_form['derived']['loss_at_target'], '.4g')} "
                       f"at C = {result['target_flops']:.3g}")
    return out


def _clean(value):
    """JSON-able: numpy scalars to Python numbers, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
