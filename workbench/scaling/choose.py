"""Which fitted law the answer comes from: the model-choice table (every form, under each
parameter convention fitted, judged by its error on the held-out largest compute), the
allocation at the target compute from the best supported L(N, D), and the sentences a reader
gets: recommendations only from supported fits, refusals with what data would fix them."""

from __future__ import annotations

import numpy as np

from workbench.scaling.result import Allocation, Choice, FitResult, FormFit, GroupFit, HeldOut, IsoFLOP, Selection


def judge(forms: dict[str, FormFit], noise: float) -> None:
    """Each fitted form's verdict. It may back a recommendation only with no warning and a
    backtest within its own 95% interval: at each held-out run, the spread of the law fitted
    without it combined with run-to-run noise `noise` (SD of log loss); the mean |log error|
    must not exceed the mean half-width."""
    for f in forms.values():
        if not f.fitted:
            continue
        f.noise = noise
        problems = list(f._problems)
        bt = f.backtest
        if not bt.reason and bt.held_out:
            bt.model_error = model_error(bt.held_out, noise)
        if bt.reason:
            problems.append((f"no backtest: {bt.reason}", "more runs, so that some can be held out"))
        elif not bt.held_out or bt.held_out.lo is None:
            problems.append(("no interval to judge its backtest by (no bootstrap)", "a bootstrap"))
        else:
            column = lambda name: np.array(getattr(bt.held_out, name), float)     # None (non-finite) as NaN
            law = (np.log(column("hi")) - np.log(column("lo"))) / 2
            half = np.sqrt(law ** 2 + (1.96 * noise) ** 2)
            err = np.abs(np.log(column("observed") / column("predicted")))
            bt.half_width, bt.outside = float(half.mean()), int((err > half).sum())
            bt.passed = bool(err.mean() <= half.mean())
            if not bt.passed:
                problems.append((f"backtest: its mean error on the held-out largest compute ({bt.mae_relative:.1%}) "
                                 f"is beyond its own 95% interval there (±{np.expm1(bt.half_width):.1%})",
                                 "runs at larger compute, or another form"))
        f.supported = not problems
        f.refusal = "; ".join(p for p, _ in problems) or None
        f.fix = "; ".join(dict.fromkeys(fix for _, fix in problems)) or None


def model_error(held: HeldOut, noise: float) -> float:
    """The law's error one extrapolation step out, net of run-to-run noise (SD of log loss): the
    root mean square of the held-out log errors, less the noise each observed run carries. The
    backtest is the only out-of-sample look at the form: the bootstrap measures how far the
    parameters wobble if the form is right, never how wrong the form is."""
    err = np.log(np.array(held.observed, float) / np.array(held.predicted, float))
    err = err[np.isfinite(err)]
    return float(np.sqrt(max(0.0, np.mean(err ** 2) - noise ** 2))) if len(err) else 0.0


def selection(forms: dict[str, FormFit], holdout: float) -> Selection:
    """The model-choice table, lowest held-out error first among supported fits, then the rest;
    the chosen fit is the first supported one."""
    rows = [Choice(key=key, form=f.form or key, convention=f.convention, label=f.label,
                   heldout_error=f.backtest.mae_relative if f.backtest else None, supported=bool(f.supported),
                   refusal=f.reason or f.refusal) for key, f in forms.items()]
    order = lambda c: (not c.supported, c.heldout_error is None, c.heldout_error or 0.0)
    rows.sort(key=order)
    chosen = rows[0].key if rows and rows[0].supported else None
    out = Selection(holdout=holdout, rows=rows, chosen=chosen)
    if chosen is None:
        out.reason = "no fitted law is supported by the data" if rows else "no law was fitted"
    return out


def ranked(part: FitResult | GroupFit, two_terms: bool = False) -> list[tuple[str, FormFit]]:
    """The supported fits of a part, lowest held-out error first (only L(N, D) forms with
    `two_terms`)."""
    if part.selection is None:
        return []
    out = [(c.key, part.forms[c.key]) for c in part.selection.rows if c.supported]
    return [(k, f) for k, f in out if not two_terms or (f.params and "beta" in f.params)]


def allocation(part: GroupFit, target: float | None, ks: dict[str, float]) -> Allocation:
    """The compute-optimal allocation at `target` from the supported L(N, D) fit with the lowest
    held-out error (C = k·N·D with k = ks[its parameter convention]); or why there is none and
    what data would fix it."""
    best = ranked(part, two_terms=True)
    if best and target:
        key, f = best[0]
        return Allocation(source=key, convention=f.convention, target_flops=target,
                          flops_per_param_token=ks[f.convention], **f.derived)
    two = {key: f for key, f in part.forms.items() if f.form and f.form.startswith("nd")}
    if not two:
        return Allocation(reason="no L(N, D) fit: not requested (form nd, nd-noE, nd-tied or nd-dc)")
    if not target:
        return Allocation(reason="no target compute")
    reasons = [f"{f.label}{_under(f)}: {f.reason or f.refusal}" for f in two.values()]
    fixes = list(dict.fromkeys(fix for f in two.values() for fix in _fixes(f)))
    return Allocation(reason="no supported L(N, D) fit: " + " | ".join(reasons), fix=fixes)


def _under(f: FormFit) -> str:
    return f" ({f.convention} parameters)" if f.convention not in (None, "as given") else ""


def _fixes(f: FormFit) -> list[str]:
    if f.reason:
        return ["more runs, with both N and D varying"] if "N, D" in f.label else ["more runs"]
    return (f.fix or "").split("; ") if f.fix else []


def isoflop_verdict(iso: IsoFLOP) -> None:
    """An IsoFLOP analysis supports a recommendation with at least two budgets that have an
    interior minimum and a bootstrap interval."""
    iso.supported = iso.a is not None and iso.a.lo is not None


def sentences(result: FitResult) -> tuple[list[str], list[str]]:
    """What the fit says at the target compute (recommendations from supported fits, each with
    its interval and the fit it came from), and every place the data could not support a
    number or a recommendation, with the reason and what data would fix it."""
    said, unsupported = [], []
    for prefix, _, part in result.parts():
        if part.reason:
            unsupported.append(f"{prefix}{part.reason}")
            continue
        unsupported += [f"{prefix}{e.label}{_under(e)}: {e.reason}" for e in part.forms.values() if e.reason]
        alloc = part.allocation
        if alloc.N_opt is not None:
            f = part.forms[alloc.source]
            said.append(f"{prefix}at C = {alloc.target_flops:.3g} FLOPs, {f.label}{_under(f)} says: train "
                        f"N = {alloc.N_opt.text()} parameters on D = {alloc.D_opt.text()} tokens "
                        f"({alloc.tokens_per_param.text()} tokens per parameter); "
                        f"predicted loss {alloc.loss_at_target.text()}")
        elif alloc.reason:
            unsupported.append(f"{prefix}no recommendation: {alloc.reason}"
                               + (f"; what would fix it: {'; '.join(alloc.fix)}" if alloc.fix else ""))
        iso = part.isoflop
        if iso.reason:
            unsupported.append(f"{prefix}IsoFLOP: {iso.reason}")
        if iso.supported:
            line = f"{prefix}IsoFLOP: N_opt ∝ C^{iso.a.text()}, D_opt ∝ C^{iso.b.text()}"
            if iso.N_opt is not None:
                line += f"; at C = {iso.N_opt_at:.3g}: N_opt = {iso.N_opt.text()}, D_opt = {iso.D_opt.text()}"
            said.append(line)
        elif iso.interval_reason:
            unsupported.append(f"{prefix}IsoFLOP: {iso.interval_reason}")
        best = ranked(part)[:1]
        for _, f in best:       # the chosen fit, when it is L(C): its loss at the target
            if "beta" not in f.params and f.derived and "loss_at_target" in f.derived:
                said.append(f"{prefix}{f.label} predicts loss {f.derived['loss_at_target'].text()} "
                            f"at C = {result.target_flops:.3g}")
    return said, unsupported
