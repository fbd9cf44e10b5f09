"""The human-readable view of a fit result (scaling.result): rich tables for the terminal."""

from __future__ import annotations

from workbench.scaling.result import Allocation, FitResult, FormFit, GroupFit, IsoFLOP, num


def _lines(*lines: str, style: str = "dim"):
    from rich.text import Text
    return Text("\n".join(lines), style=style)


def _form_table(name: str, entry: FormFit, prefix: str = "") -> list:
    from rich.table import Table
    from rich.text import Text
    if entry.reason:
        return [_lines(f"{prefix}{entry.label}: not fitted: {entry.reason}", style="yellow")]
    table = Table(title=Text(f"{prefix}{entry.label}  (form {name})", style="bold"), title_justify="left")
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
        f"bias {bt.bias:+.3g}, worst {num(bt.max_abs)} ({bt.max_relative:.1%})"))
    return [table, _lines(*lines)]


def _isoflop_table(iso: IsoFLOP, prefix: str = "") -> list:
    from rich.table import Table
    from rich.text import Text
    if iso.budgets is None:
        return [_lines(f"{prefix}IsoFLOP: not fitted: {iso.reason}", style="yellow")]
    table = Table(title=Text(f"{prefix}IsoFLOP analysis ({iso.budgets_from})", style="bold"), title_justify="left")
    for col in ("budget C", "runs", "N_opt", "D_opt"):
        table.add_column(col, justify="right")
    for b in iso.budgets:
        if b.reason:
            table.add_row(num(b.flops), str(b.runs), Text(b.reason, style="yellow"), "")
        else:
            table.add_row(num(b.flops), str(b.runs), num(b.N_opt), num(b.D_opt))
    if iso.reason:
        return [table, _lines(iso.reason, style="yellow")]
    lines = [f"N_opt ∝ C^a: a = {iso.a.text()}; D_opt ∝ C^b: b = {iso.b.text()}"]
    if iso.N_opt is not None:
        lines.append(f"at C = {num(iso.N_opt_at)}: N_opt {iso.N_opt.text()}, D_opt {iso.D_opt.text()}")
    if iso.interval_reason:
        lines.append(iso.interval_reason)
    elif iso.failed:
        lines.append(f"{iso.failed} of {iso.resamples} bootstrap resamples lost an interior minimum (skipped)")
    return [table, _lines(*lines)]


def _allocation_lines(alloc: Allocation, prefix: str = "") -> list:
    if alloc.reason:
        return [_lines(f"{prefix}compute-optimal allocation: {alloc.reason}", style="yellow")]
    return [_lines(f"{prefix}compute-optimal allocation (a, b, N_opt, D_opt, tokens_per_param, loss_at_target "
                   f"in the {alloc.source} table): at C = {num(alloc.target_flops)} FLOPs, "
                   f"with C = {alloc.flops_per_param_token:.3g}·N·D")]


def _sections(part: FitResult | GroupFit, prefix: str = "") -> list:
    out = [r for n, e in part.forms.items() for r in _form_table(n, e, prefix)]
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
    parts += [Text(f"warning: {w}", style="yellow") for w in result.warnings]
    parts += [Text(f"note: {w}", style="dim") for w in result.notes]
    return Group(*parts)
