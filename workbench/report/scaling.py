"""The report's scaling sections: the fit (scaling.result) drawn against the study's trials,
the fit table and its predictions, and the comparison of groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from workbench.report import figures
from workbench.report.figures import esc
from workbench.report.frame import Page
from workbench.report.rows import MISSING, best_trial, group_column, loss_column, scored, short
from workbench.scaling.result import Estimate, FitResult, IsoFLOP, num
from workbench.study.schema import StudyFile


@dataclass
class FitView:
    """A fit result rearranged for drawing: curves and held-out points per axis and group, one
    table row per parameter, per-group summaries, and the sentences the page shows."""

    curves: dict[str, list[dict]] = field(default_factory=dict)
    backtest_points: dict[str, list[dict]] = field(default_factory=dict)
    rows: list[tuple[str, str, str, Estimate]] = field(default_factory=list)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    isoflop: IsoFLOP | None = None
    warnings: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    comparison: list[str] = field(default_factory=list)
    loss: str | None = None


def fit_view(fit: FitResult | None) -> FitView | None:
    """The fit result as the page draws it (None without a fit)."""
    if fit is None:
        return None
    view = FitView(isoflop=fit.isoflop, warnings=fit.warnings, unsupported=list(fit.unsupported),
                   predictions=fit.predictions, loss=fit.conventions.loss,
                   comparison=[c.verdict for c in fit.groups.comparisons] if fit.groups else [])
    entries = list(fit.groups.fits.items()) if fit.groups else [("all runs", fit)]
    for group, part in entries:
        for name, form in (part.forms or {}).items():     # a group's reason is in fit.unsupported already
            if not form.fitted:
                continue
            label = form.label or name
            if form.curve:
                c = form.curve
                view.curves.setdefault(c.axis, []).append(
                    {"group": group, "label": label, "x": c.x, "y": c.y, "lo": c.lo, "hi": c.hi})
            backtest = form.backtest
            for p in (backtest.held_out or []) if backtest else []:
                view.backtest_points.setdefault(backtest.by or fit.x, []).append(
                    {"group": group, "x": p.key, "y": p.observed})
            for pname, p in form.params.items():
                view.rows.append((group, label, pname, p))
            if name in ("x", "x-noE") and "alpha" in form.params:
                view.groups.setdefault(group, {})["exponent"] = form.params["alpha"].text()
            at_target = (form.derived or {}).get("loss_at_target")
            if at_target is not None:
                view.groups.setdefault(group, {})["predicted"] = at_target.text()
    return view


def _fit_table(view: FitView) -> str:
    rows = [f"<tr><td>{esc(group)}</td><td>{esc(label)}</td><td>{esc(name)}</td>"
            f"<td>{num(p.estimate)}</td><td>{esc(p.interval())}</td></tr>" for group, label, name, p in view.rows]
    if not rows:
        return ""
    return ("<table class='data'><tr><th>group</th><th>form</th><th>parameter</th><th>estimate</th>"
            "<th>95% interval</th></tr>" + "".join(rows) + "</table>")


def scaling_section(page: Page, study: StudyFile, done: pl.DataFrame, fit: FitView | None,
                    fit_error: str | None) -> None:
    """Loss against C, N and D with the fitted laws, the frontier, the IsoFLOP curves, the fit
    table and its predictions; or why there is nothing to show yet."""
    page.add("<h2>Scaling</h2>")
    loss = loss_column(study)
    done = scored(done, loss)
    if done.height < 2:
        page.add("<p class='note'>Not enough completed trials to show scaling yet.</p>")
        return
    if fit_error:
        page.add(f"<p class='note'>No fit: {esc(fit_error)}</p>")
    for reason in fit.unsupported if fit else []:
        page.add(f"<p class='note'>{esc(reason)}</p>")
    for warning in fit.warnings if fit else []:
        page.add(f"<p class='warn'>warning: {esc(warning)}</p>")
    if fit and fit.loss not in (None, loss):
        page.add(f"<p class='warn'>warning: the fit is of {esc(fit.loss)}, the points of the study's "
                 f"scaling loss {esc(loss)}</p>")
    group = group_column(study, done)
    for axis in ("flops", "params", "tokens"):
        page.figure(figures.scaling_figure(done, axis, group, fit, loss))
    page.figure(figures.frontier_figure(done, loss))
    iso = figures.isoflop_figure(fit, loss)
    if iso is not None:
        page.figure(iso)
    if fit:
        page.add(_fit_table(fit))
        for line in fit.predictions:
            page.add(f"<p class='prediction'>{esc(line)}</p>")


def comparison_section(page: Page, study: StudyFile, done: pl.DataFrame, fit: FitView | None) -> None:
    """Per group: its runs, its best trial by the study's loss, its fitted exponent and its
    prediction at the target compute; then the fit's verdicts on each pair of groups."""
    group = group_column(study, done)
    if not group or done.is_empty():
        return
    page.add(f"<h2>Architecture comparison by {esc(study.spec.scaling.group_by)}</h2>")
    loss = loss_column(study)
    rows = []
    for name, part in figures.groups(done, group):
        best = best_trial(scored(part, loss), loss)
        cell = f"{best[loss]:.4f} (trial {best['trial']})" if best else MISSING
        g = fit.groups.get(name, {}) if fit else {}
        rows.append(f"<tr><td>{esc(name)}</td><td>{part.height}</td><td>{cell}</td>"
                    f"<td>{esc(g.get('exponent', ''))}</td><td>{esc(g.get('predicted', ''))}</td></tr>")
    page.add(f"<table class='data'><tr><th>group</th><th>runs</th>"
             f"<th>best {esc(short(loss))}</th><th>fitted exponent</th>"
             "<th>predicted at target C</th></tr>" + "".join(rows) + "</table>")
    for verdict in fit.comparison if fit else []:
        page.add(f"<p>{esc(verdict)}</p>")
