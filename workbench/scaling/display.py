"""The human-readable view of a fit result (scaling.fit): rich tables for the terminal."""

from __future__ import annotations


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3e}" if abs(v) >= 1e5 or (v and abs(v) < 1e-3) else f"{v:.4g}"


def _interval(e: dict) -> str:
    if e.get("fixed"):
        return "fixed"
    if e.get("tied_to"):
        return f"= {e['tied_to']}"
    return "(no interval)" if e.get("lo") is None else f"[{_num(e['lo'])}, {_num(e['hi'])}]"


def _lines(*lines: str, style: str = "dim"):
    from rich.text import Text
    return Text("\n".join(lines), style=style)


def _form_table(name: str, entry: dict, prefix: str = "") -> list:
    from rich.table import Table
    from rich.text import Text
    if "reason" in entry:
        return [_lines(f"{prefix}{entry['label']}: not fitted: {entry['reason']}", style="yellow")]
    table = Table(title=Text(f"{prefix}{entry['label']}  (form {name})", style="bold"), title_justify="left")
    for col in ("quantity", "estimate", "95% interval"):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    for q, e in {**entry["params"], **entry.get("derived", {})}.items():
        table.add_row(q, _num(e["estimate"]), _interval(e))
    g, bt = entry["gof"], entry["backtest"]
    lines = [f"{g['runs']} runs; R² (log) {g['r2_log']:.4f}; RMSE of log residuals {g['rmse_log']:.4f}; "
             f"objective {g['objective']:.4g}; |gradient| {g['grad_norm']:.2g}; "
             f"{'converged' if g['converged'] else 'NOT converged'}; {g['starts_agreeing']} of 5 starts agree"]
    if "outliers_dropped" in entry:
        lines.append(f"outliers dropped: {entry['outliers_dropped']}")
    if "bootstrap" in entry:
        lines.append(f"bootstrap: {entry['bootstrap']['resamples']} resamples, "
                     f"{entry['bootstrap']['unconverged']} stopped at the iteration limit (kept)")
    lines.append(f"backtest (largest {bt['holdout']:.0%} by {bt['by']} held out): " + (
        bt["reason"] if "reason" in bt else
        f"{bt['test_runs']} runs, mean |error| {_num(bt['mae'])} ({bt['mae_relative']:.1%}), "
        f"bias {bt['bias']:+.3g}, worst {_num(bt['max_abs'])} ({bt['max_relative']:.1%})"))
    return [table, _lines(*lines)]


def _isoflop_table(iso: dict, prefix: str = "") -> list:
    from rich.table import Table
    from rich.text import Text
    if "budgets" not in iso:
        return [_lines(f"{prefix}IsoFLOP: not fitted: {iso['reason']}", style="yellow")]
    table = Table(title=Text(f"{prefix}IsoFLOP analysis ({iso['budgets_from']})", style="bold"), title_justify="left")
    for col in ("budget C", "runs", "N_opt", "D_opt"):
        table.add_column(col, justify="right")
    for b in iso["budgets"]:
        if "reason" in b:
            table.add_row(_num(b["flops"]), str(b["runs"]), Text(b["reason"], style="yellow"), "")
        else:
            table.add_row(_num(b["flops"]), str(b["runs"]), _num(b["N_opt"]), _num(b["D_opt"]))
    if "reason" in iso:
        return [table, _lines(iso["reason"], style="yellow")]
    lines = [f"N_opt ∝ C^a: a = {_num(iso['a']['estimate'])} {_interval(iso['a'])}; "
             f"D_opt ∝ C^b: b = {_num(iso['b']['estimate'])} {_interval(iso['b'])}"]
    if "N_opt" in iso:
        lines.append(f"at C = {_num(iso['N_opt_at'])}: N_opt {_num(iso['N_opt']['estimate'])} "
                     f"{_interval(iso['N_opt'])}, D_opt {_num(iso['D_opt']['estimate'])} {_interval(iso['D_opt'])}")
    if "interval_reason" in iso:
        lines.append(iso["interval_reason"])
    elif iso.get("failed"):
        lines.append(f"{iso['failed']} of {iso['resamples']} bootstrap resamples lost an interior minimum (skipped)")
    return [table, _lines(*lines)]


def _allocation_lines(alloc: dict, prefix: str = "") -> list:
    if "reason" in alloc:
        return [_lines(f"{prefix}compute-optimal allocation: {alloc['reason']}", style="yellow")]
    return [_lines(f"{prefix}compute-optimal allocation (a, b, N_opt, D_opt, tokens_per_param, loss_at_target "
                   f"in the {alloc['from']} table): at C = {_num(alloc['target_flops'])} FLOPs, "
                   f"with C = {alloc['flops_per_param_token']:.3g}·N·D")]


def _sections(part: dict, prefix: str = "") -> list:
    out = [r for n, e in part["forms"].items() for r in _form_table(n, e, prefix)]
    return out + _allocation_lines(part["allocation"], prefix) + _isoflop_table(part["isoflop"], prefix)


def render(result: dict):
    """The human-readable view of a fit: one table per law, the IsoFLOP analysis, the
    allocation, group comparisons, then warnings and notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    c, n, est = result["conventions"], result["counts"], result["estimator"]
    excluded = ", ".join(f"{v} {k}" for k, v in n["excluded"].items()) or "none"
    parts: list = [Text(f"fit of {result['source']} ({result['kind']}): {n['used']} of {n['rows']} runs used "
                        f"(excluded: {excluded})", style="bold"),
                   Text(f"loss {c['loss']}; N = {c['N']}; C = {c['C']}; x = {result['x']}; "
                        f"estimator: Huber (delta {est['huber_delta']:g}) on log residuals, "
                        f"{est['bootstrap']} bootstrap resamples; outliers: {est['outliers']}")]
    parts += _sections(result)
    groups = result.get("groups")
    if groups:
        summary = Table(title=Text(f"groups by {groups['by']}", style="bold"), title_justify="left")
        for col in ("group", "runs", "fit"):
            summary.add_column(col)
        for g, f in groups["fits"].items():
            summary.add_row(g, str(f["runs"]), f.get("reason", "fitted (below)"))
        parts.append(summary)
        for g, f in groups["fits"].items():
            if "forms" in f:
                parts += _sections(f, f"[{groups['by']} = {g}] ")
        for comp in groups["comparisons"]:
            parts.append(Text(comp["verdict"], style="green" if comp["resolved"] else "dim"))
    parts += [Text(f"warning: {w}", style="yellow") for w in result["warnings"]]
    parts += [Text(f"note: {w}", style="dim") for w in result["notes"]]
    return Group(*parts)
