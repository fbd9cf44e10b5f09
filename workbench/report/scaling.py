"""The report's scaling sections: the fit (scaling.result) drawn against the study's trials,
the fit table and its predictions, and the comparison of groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from workbench.report import figures
from workbench.report.figures import esc
from workbench.report.frame import Page
from workbench.report.rows import MISSING, best_trial, group_column, loss_column, scored, short
from workbench.scaling.choose import ranked
from workbench.scaling.estimate import Estimate, num
from workbench.scaling.result import FitResult, IsoFLOP, Repeated, Selection
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
    selection: Selection | None = None
    repeated: Repeated | None = None
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    """(group, law, why not used with what would fix it) for every fit the answer does not use."""


def fit_view(fit: FitResult | None) -> FitView | None:
    """The fit result as the page draws it (None without a fit): only supported fits are drawn,
    the chosen one and the one the allocation comes from."""
    if fit is None:
        return None
    view = FitView(isoflop=fit.isoflop, warnings=fit.warnings, unsupported=list(fit.unsupported),
                   predictions=fit.predictions, loss=fit.conventions.loss, selection=fit.selection,
                   repeated=fit.repeated,
                   comparison=[c.verdict for c in fit.groups.comparisons] if fit.groups else [])
    entries = list(fit.groups.fits.items()) if fit.groups else [("all runs", fit)]
    for group, part in entries:
        drawn = {key for key, _ in ranked(part)[:1]}
        if part.allocation is not None and part.allocation.source:
            drawn.add(part.allocation.source)
        for name, form in (part.forms or {}).items():     # a group's reason is in fit.unsupported already
            if not form.fitted:
                continue
            label = form.label + (f" ({form.convention} N)" if form.convention not in (None, "as given") else "")
            for pname, p in form.params.items():
                view.rows.append((group, label, pname, p))
            if not form.supported:
                view.refused.append((group, label, f"{form.refusal}. What would fix it: {form.fix}"))
            if name in ("x", "x-noE") and "alpha" in form.params and form.supported:
                view.groups.setdefault(group, {})["exponent"] = form.params["alpha"].text()
            if name not in drawn:
                continue
            c = form.curve
            view.curves.setdefault(c.axis, []).append(
                {"group": group, "label": label, "x": c.x, "y": c.y, "lo": c.lo, "hi": c.hi})
            held = form.backtest.held_out
            for key, observed in zip(held.key, held.observed) if held else ():
                view.backtest_points.setdefault(form.backtest.by or fit.x, []).append(
                    {"group": group, "x": key, "y": observed})
        alloc = part.allocation
        if alloc is not None and alloc.loss_at_target is not None:
            view.groups.setdefault(group, {})["predicted"] = alloc.loss_at_target.text()
    return view


def _fit_table(view: FitView) -> str:
    rows = [f"<tr><td>{esc(group)}</td><td>{esc(label)}</td><td>{esc(name)}</td>"
            f"<td>{num(p.estimate)}</td><td>{esc(p.interval())}</td></tr>" for group, label, name, p in view.rows]
    if not rows:
        return ""
    return ("<table class='data'><tr><th>group</th><th>form</th><th>parameter</th><th>estimate</th>"
            "<th>95% interval</th></tr>" + "".join(rows) + "</table>")


def _answer(view: FitView) -> str:
    """What to train at the target compute, from supported fits only; or why there is no
    recommendation and what data would fix it. It heads the section: nothing above it."""
    if view.predictions:
        return ("<div class='answer'><h3>The answer</h3>"
                + "".join(f"<p class='prediction'>{esc(line)}</p>" for line in view.predictions) + "</div>")
    return ("<div class='answer refused'><h3>No recommendation</h3><p>No fit the data support: "
            "the reasons and what data would fix them are below.</p></div>")


def _selection(sel: Selection | None) -> str:
    if not sel or not sel.rows:
        return ""
    rows = "".join(
        f"<tr><td>{esc(c.label)}</td><td>{esc(c.convention or '(any)')}</td>"
        f"<td>{'-' if c.heldout_error is None else f'{c.heldout_error:.2%}'}</td>"
        f"<td class='{'ok' if c.supported else 'warn'}'>"
        f"{'chosen' if c.key == sel.chosen else 'supported' if c.supported else esc(c.refusal or '')}</td></tr>"
        for c in sel.rows)
    return (f"<h3>Model choice</h3><p>Every law fitted without the largest {sel.holdout:.0%} of runs by compute, "
            "then judged by its mean relative error on them; the supported law with the lowest error is "
            "chosen.</p><table class='data' id='model-choice'><tr><th>law</th><th>parameters</th>"
            "<th>held-out error</th><th>verdict</th></tr>" + rows + "</table>")


def _isoflop_notes(iso: IsoFLOP | None) -> str:
    if not iso or not iso.budgets:
        return ""
    lines = [f"budget {line}" for line in iso.excluded or []]
    if iso.noise:
        lines.append(f"Intervals from run-to-run noise of {iso.noise.sd:.2%} (SD of log loss): {iso.noise.source}.")
    if iso.interval_reason:
        lines.append(iso.interval_reason)
    if iso.reason:
        lines.append(iso.reason)
    return "<h3>IsoFLOP</h3>" + "".join(f"<p class='{'note' if iso.supported else 'warn'}'>{esc(line)}</p>"
                                        for line in lines)


def scaling_section(page: Page, study: StudyFile, done: pl.DataFrame, fit: FitView | None,
                    fit_error: str | None, checks: list[dict] | None = None) -> None:
    """Validation runs first (predicted against observed), then the answer (a recommendation from supported fits, or why there is none), then the
    model choice, the IsoFLOP budgets, repeated data, loss against C, N and D with the chosen
    laws, the frontier, the IsoFLOP curves, the fit table, and why the other fits are not used."""
    page.add("<h2>Scaling</h2>")
    if checks:
        validation_block(page, checks)
    loss = loss_column(study)
    done = scored(done, loss)
    if done.height < 2:
        page.add("<p class='note'>Not enough completed trials to show scaling yet.</p>")
        return
    if fit_error:
        page.add(f"<p class='note'>No fit: {esc(fit_error)}</p>")
    if fit:
        page.add(_answer(fit) + _selection(fit.selection) + _isoflop_notes(fit.isoflop))
        if fit.repeated and fit.repeated.runs:
            page.add(f"<p class='warn' id='repeated'>Repeated data: {esc(fit.repeated.message)}</p>")
    if fit and fit.loss not in (None, loss):
        page.add(f"<p class='warn'>The fit is of {esc(fit.loss)}, the points of the study's "
                 f"scaling loss {esc(loss)}</p>")
    group = group_column(study, done)
    for axis in ("flops", "params", "tokens"):
        page.figure(figures.scaling_figure(done, axis, group, fit, loss))
    page.figure(figures.frontier_figure(done, loss))
    tune = study.spec.ladder.tune if study.spec.ladder else None
    for field in (tune.fields if tune else {}):
        column = f"spec.{field}"
        if column in done.columns and "point" in done.columns:
            page.figure(figures.tuning_figure(done.filter(pl.col("point").is_not_null()), column, loss))
    iso = figures.isoflop_figure(fit, loss)
    if iso is not None:
        page.figure(iso)
    if fit:
        page.add(_fit_table(fit))
        if fit.refused or fit.unsupported:
            page.add("<h3>Not used for the answer</h3>"
                     + "".join(f"<p class='note'>{esc(group)}: {esc(label)}: {esc(why)}</p>"
                               for group, label, why in fit.refused)
                     + "".join(f"<p class='note'>{esc(line)}</p>" for line in fit.unsupported))


def validation_block(page: Page, checks: list[dict]) -> None:
    """Each validation run: the prediction made before it trained, and what it observed."""
    lines = []
    for v in checks:
        if v["predicted"] is None:
            lines.append(f"<p class='warn'>Validation run (trial {v['number']}) {esc(v['status'])}: {esc(v['reason'])}</p>")
            continue
        head = (f"Predicted before training, at C = {v['budget']:.3g} FLOPs (N = {v['params']:.3g}{v['convention']}, "
                f"D = {v['tokens']:.3g}, trial {v['number']}): {esc(v['loss'])} {v['predicted']:.4f}, "
                f"95% interval for one run [{v['lo']:.4f}, {v['hi']:.4f}]"
                + (f" ({v['model_share']:.0%} of its width from model-form error, ±{v['model_error']:.1%} "
                   f"as the fit's backtest measured it out of sample)" if v.get("model_share") else ""))
        if v["observed"] is None:
            lines.append(f"<p class='note'>{head}; the run is {esc(v['status'])}"
                         + (f": {esc(v['reason'])}" if v["reason"] else "") + ".</p>")
            continue
        verdict = "inside" if v["inside"] else "outside"
        lines.append(f"<p class='{'ok' if v['inside'] else 'warn'}'>{head}. Observed {v['observed']:.4f} "
                     f"({v['error']:+.1%}): {verdict} the predicted interval.</p>")
    page.add("<div class='validation' id='validation'><h3>Validation beyond the ladder</h3>" + "".join(lines) + "</div>")
    if any(v["predicted"] is not None for v in checks):
        page.figure(figures.validation_figure(checks))


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
