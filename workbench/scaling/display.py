"""The human-readable view of a fit result (scaling.result): rich tables for the terminal."""

from __future__ import annotations

from workbench.scaling.estimate import num
from workbench.scaling.result import Allocation, FitResult, FormFit, GroupFit, IsoFLOP, Selection


def _lines(*lines: str, style: str = "dim"):
    from rich.text import Text
    return Text("\n".join(lines), style=style)


def _form_table(name: str, entry: FormFit, prefix: str = "") -> list:
    from rich.table import Table
    from rich.text import Text
    if entry.reason:
        return [_lines(f"{prefix}{entry.label}: not fitted: {entry.reason}", style="yellow")]
    under = f", {entry.convention} parameters" if entry.convention not in (None, "as given") else ""
    table = Table(title=Text(f"{prefix}{entry.label}  (form {name}{under})", style="bold"), title_justify="left")
    for col in ("quantity", "estimate", "95% interval"):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    for q, e in {**entry.params, **(entry.derived or {})}.items():
        table.add_row(q, num(e.estimate), e.interval())
    g, bt = entry.gof, entry.backtest
    lines = [f"{g.runs} runs; R² (log) {g.r2_log:.4f}; RMSE of log residuals {g.rmse_log:.4f}; "
             f"objective {g.objective:.4g}; |gradient| {g.grad_norm:.2g}; "
             f"{'converged' if g.converged else 'NOT converged'}; {g.starts_agreeing} of 5 starts agree"]
    if entry.outliers_dropped is not None:
        lines.append(f"outliers dropped: {entry.outliers_dropped}")
    if entry.bootstrap:
        lines.append(f"bootstrap: {entry.bootstrap.resamples} resamples, "
                     f"{entry.bootstrap.unconverged} stopped at the iteration limit (kept)")
    lines.append(f"backtest (largest {bt.holdout:.0%} by {bt.by} held out): " + (
        bt.reason if bt.reason else
        f"{bt.test_runs} runs, mean |error| {num(bt.mae)} ({bt.mae_relative:.1%}), "
        f"bias {bt.bias:+.3g}, worst {num(bt.max_abs)} ({bt.max_relative:.1%})"
        + (f"; its own 95% interval there ±{bt.half_width:.1%} (log), {bt.outside} run(s) outside"
           if bt.half_width is not None else "")
        + (f"; model error beyond noise ±{bt.model_error:.1%} (SD of log loss, carried by one-run predictions)"
           if bt.model_error is not None else "")))
    verdict = _lines("supported: may back a recommendation", style="green") if entry.supported else \
        _lines(f"not supported: {entry.refusal}", f"what would fix it: {entry.fix}", style="yellow")
    return [table, _lines(*lines), verdict]


def _selection_table(sel: Selection, prefix: str = ""):
    """Held-out error of every fitted form and convention: why the chosen one was chosen."""
    from rich.table import Table
    from rich.text import Text
    table = Table(title=Text(f"{prefix}model choice: error on the held-out largest compute "
                             f"(largest {sel.holdout:.0%} of runs)", style="bold"), title_justify="left")
    for col in ("form", "parameters", "held-out error", "verdict"):
        table.add_column(col, justify="right" if col == "held-out error" else "left")
    for c in sel.rows:
        error = "-" if c.heldout_error is None else f"{c.heldout_error:.2%}"
        verdict = "chosen" if c.key == sel.chosen else ("supported" if c.supported else c.refusal or "")
        table.add_row(c.form, c.convention or "(any)", error,
                      Text(verdict, style="green" if c.supported else "yellow"))
    return table


def _isoflop_table(iso: IsoFLOP, prefix: str = "") -> list:
    """Each budget's local minimum (or what it lacks), the exponents and their noise model."""
    from rich.table import Table
    from rich.text import Text
    if iso.budgets is None:
        return [_lines(f"{prefix}IsoFLOP: not fitted: {iso.reason}", style="yellow")]
    table = Table(title=Text(f"{prefix}IsoFLOP analysis ({iso.budgets_from})", style="bold"), title_justify="left")
    for col in ("budget C", "runs", "sizes", "N_opt", "D_opt", "resamples losing it"):
        table.add_column(col, justify="right")
    for b in iso.budgets:
        failed = "-" if b.failed is None else f"{b.failed:.0%}"
        if b.reason:
            table.add_row(num(b.flops), str(b.runs), str(b.sizes), Text(b.reason, style="yellow"), "", "")
        else:
            table.add_row(num(b.flops), str(b.runs), str(b.sizes), num(b.N_opt), num(b.D_opt), failed)
    noise = [f"run-to-run noise {iso.noise.sd:.2%} (SD of log loss): {iso.noise.source}"] if iso.noise else []
    if iso.reason:
        return [table, _lines(iso.reason, *noise, style="yellow")]
    lines = [f"N_opt ∝ C^a: a = {iso.a.text()}; D_opt ∝ C^b: b = {iso.b.text()}"]
    if iso.N_opt is not None:
        lines.append(f"at C = {num(iso.N_opt_at)}: N_opt {iso.N_opt.text()}, D_opt {iso.D_opt.text()}")
    lines += noise
    if iso.interval_reason:
        lines.append(iso.interval_reason)
    elif iso.failed:
        lines.append(f"{iso.failed} of {iso.resamples} bootstrap resamples lost an interior minimum (skipped)")
    return [table, _lines(*lines, style="dim" if iso.supported else "yellow")]


def _allocation_lines(alloc: Allocation, prefix: str = "") -> list:
    if alloc.reason:
        return [_lines(f"{prefix}no recommendation: {alloc.reason}",
                       *[f"  what would fix it: {f}" for f in alloc.fix or []], style="yellow")]
    return [_lines(f"{prefix}compute-optimal allocation (a, b, N_opt, D_opt, tokens_per_param, loss_at_target "
                   f"in the {alloc.source} table): at C = {num(alloc.target_flops)} FLOPs, "
                   f"with C = {alloc.flops_per_param_token:.3g}·N·D", style="green")]


def _sections(part: FitResult | GroupFit, prefix: str = "") -> list:
    out = [r for n, e in part.forms.items() for r in _form_table(n, e, prefix)]
    if part.selection:
        out.append(_selection_table(part.selection, prefix))
    return out + _allocation_lines(part.allocation, prefix) + _isoflop_table(part.isoflop, prefix)


def render(result: FitResult):
    """The human-readable view of a fit: one table per law, the IsoFLOP analysis, the
    allocation, group comparisons, then warnings and notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    c, n, est = result.conventions, result.counts, result.estimator
    excluded = ", ".join(f"{v} {k}" for k, v in n.excluded.items()) or "none"
    parts: list = [Text(f"fit of {result.source} ({result.kind}): {n.used} of {n.rows} runs used "
                        f"(excluded: {excluded})", style="bold"),
                   Text(f"loss {c.loss}; N = {c.N}; C = {c.C}; x = {result.x}; "
                        f"estimator: Huber (delta {est.huber_delta:g}) on log residuals, "
                        f"{est.bootstrap} bootstrap resamples; outliers: {est.outliers}")]
    parts += _sections(result)
    groups = result.groups
    if groups:
        summary = Table(title=Text(f"groups by {groups.by}", style="bold"), title_justify="left")
        for col in ("group", "runs", "fit"):
            summary.add_column(col)
        for g, f in groups.fits.items():
            summary.add_row(g, str(f.runs), f.reason or "fitted (below)")
        parts.append(summary)
        for g, f in groups.fits.items():
            if f.forms is not None:
                parts += _sections(f, f"[{groups.by} = {g}] ")
        for comp in groups.comparisons:
            parts.append(Text(comp.verdict, style="green" if comp.resolved else "dim"))
    if result.repeated:
        parts.append(Text(f"repeated data: {result.repeated.message}",
                          style="yellow" if result.repeated.runs else "dim"))
    parts += [Text(f"note: {w}", style="dim") for w in result.notes]
    parts += [Text("the answer:", style="bold")]
    parts += [Text(line, style="bold green") for line in result.predictions] or \
        [Text("no recommendation: no fit the data support", style="bold yellow")]
    parts += [Text(f"not supported: {line}", style="yellow") for line in result.unsupported]
    return Group(*parts)
