"""Predictions for one run before it is trained: the loss a fit expects at given parameters and
tokens (or compute), with the 95% interval one run there should fall in, from the supported fit
with the lowest held-out error that can answer; or a refusal that says why and what data would
fix it. `workbench predict` prints it; a validation run records it before it starts.

The one-run interval carries three errors, each in log loss: the law's bootstrap spread (how far
its parameters wobble, if its form is right), run-to-run noise (with the uncertainty of the noise
estimate), and model-form error: how far the form itself misses one extrapolation step beyond
the data, which no in-sample quantity can show. The backtest measures it out of sample (the law
fitted without the largest compute, against those runs): the root mean square of its held-out
log errors net of noise (choose.model_error), added as an independent normal term. Its held-out
errors include the spread of the law fitted without them, so when the form is right the interval
counts part of the law's spread twice and errs a little wide (new runs twice beyond a
quickstart-like ladder: 96% covered, intervals 16% wider); when the form is wrong, it is what
keeps the interval honest (a law with extra curvature in log D: 93% covered, where the bootstrap
and noise alone hold 85%); see tests/scaling/test_predict.py."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from workbench.plumbing.errors import FitError
from workbench.scaling import powerlaw as pw
from workbench.scaling.choose import ranked
from workbench.scaling.forms import allocate, features, law
from workbench.scaling.estimate import Num, Plain, absent, num
from workbench.scaling.result import FitResult, FormFit


class Prediction(Plain):
    """The predicted loss of one run, or why there is none."""

    params: Num = None
    """N, in the convention of the fit it came from."""
    tokens: Num = None
    flops: Num = None
    estimate: Num = None
    """The fitted law's loss there."""
    lo: Num = None
    """95% interval for one run: the law's bootstrap spread, run-to-run noise (with the
    uncertainty of the noise estimate when its degrees of freedom are known) and model-form
    error from the backtest."""
    hi: Num = None
    law_lo: Num = None
    """95% interval of the law alone (its bootstrap spread)."""
    law_hi: Num = None
    noise: Num = None
    """Run-to-run noise (SD of log loss) added for one run."""
    model_error: Num = None
    """Model-form error (SD of log loss) added for one run: the fit's backtest, out of sample."""
    model_share: Num = None
    """The share of the one-run interval's width that model-form error adds (0 when none)."""
    form: str | None = None
    """Key of the fit in the result's forms."""
    convention: str | None = None
    label: str | None = None
    compute_optimal: bool = False
    """Only compute was given: the loss at the fit's compute-optimal N and D for it."""
    refused: str | None = absent()
    fix: str | None = absent()

    @property
    def ok(self) -> bool:
        return self.refused is None

    def text(self) -> str:
        """One sentence for people."""
        if not self.ok:
            return f"no prediction: {self.refused}" + (f"; what would fix it: {self.fix}" if self.fix else "")
        where = ", ".join(f"{k} = {num(v)}" for k, v in (("N", self.params), ("D", self.tokens), ("C", self.flops))
                          if v is not None)
        under = f" ({self.convention} parameters)" if self.convention not in (None, "as given") else ""
        model = f", {self.model_share:.0%} of its width from model error" if self.model_share else ""
        return (f"predicted loss {num(self.estimate)} [{num(self.lo)}, {num(self.hi)}] (95%, one run{model}; law alone "
                f"[{num(self.law_lo)}, {num(self.law_hi)}]) at {where}"
                + (" (compute-optimal)" if self.compute_optimal else "") + f", from {self.label}{under}")


def predict(result: FitResult, *, params: float | Mapping[str, float] | None = None, tokens: float | None = None,
            flops: float | None = None, group: str | None = None, seed: int = 0) -> Prediction:
    """The predicted loss of one run of `params` parameters (a number in the fit's convention,
    or a mapping by convention such as a run record's `params`) trained on `tokens` tokens, or
    of `flops` compute (with one of the others, or alone: then at the compute-optimal
    allocation). Uses the supported fit (of `group`, when given) with the lowest held-out error
    that can answer: L(N, D) for parameters and tokens; L(C) or L(N, D) for compute alone."""
    given = check_question(params, tokens, flops)
    part = result if group is None else (result.groups.fits.get(group) if result.groups else None)
    if part is None or part.reason:
        return Prediction(refused=f"no fit of group {group!r}" + (f": {part.reason}" if part else ""))
    candidates = ranked(part, two_terms=flops is None or given == 2)
    if flops is not None and given == 1:
        candidates = [(k, f) for k, f in candidates if "beta" in f.params or result.x == "flops"]
    if not candidates:
        return _refusal(part)
    key, f = candidates[0]
    if f.draws is None:
        return Prediction(refused="this result carries no bootstrap draws (it was read back from JSON, or "
                                  "fitted without a bootstrap): predict from the runs instead")
    if isinstance(params, Mapping):
        if f.convention not in params:
            return Prediction(refused=f"the chosen fit counts {f.convention} parameters; none given")
        params = params[f.convention]
    tau = (f.backtest.model_error if f.backtest else None) or 0.0
    out = Prediction(form=key, convention=f.convention, label=f.label, noise=f.noise, model_error=tau)
    fixed = f.params.get("E")
    form = law(f.form, fixed.estimate if fixed is not None and fixed.fixed else None)
    point = {p: e.estimate for p, e in f.params.items()}
    if "beta" not in f.params:                                   # L(C)
        X = np.log([[flops]])
        laws, at = pw.predict(form, f.draws, X)[:, 0], pw.predict(form, _full(point), X)[0]
        out.flops, out.compute_optimal = flops, True
    elif given == 1:                                              # L(N, D) at its compute-optimal allocation
        k = f.flops_per_param_token
        laws = allocate(f.form, f.draws, k, flops, f.unique_tokens)["loss_at_target"]
        best = allocate(f.form, _full(point), k, flops, f.unique_tokens)
        at = float(best["loss_at_target"])
        out.params, out.tokens, out.flops, out.compute_optimal = float(best["N_opt"]), float(best["D_opt"]), flops, True
    else:
        k = f.flops_per_param_token
        N = params if params is not None else flops / (k * tokens)
        D = tokens if tokens is not None else flops / (k * N)
        X = features(f.form, np.array([N]), np.array([D]), np.array([f.unique_tokens or np.nan]), result.x)
        laws, at = pw.predict(form, f.draws, X)[:, 0], float(pw.predict(form, _full(point), X)[0])
        out.params, out.tokens, out.flops = N, D, flops if flops is not None else k * N * D
    laws = np.asarray(laws, float)
    out.estimate = float(at)
    out.law_lo, out.law_hi = pw.interval(laws)
    rng = np.random.default_rng(seed)
    # The noise is itself an estimate: with few degrees of freedom behind it, each draw takes its
    # own SD from the estimate's sampling distribution (scaled inverse chi-square), which makes
    # the one-run interval Student-t-like rather than pretending the SD is known.
    sd = f.noise * np.sqrt(f.noise_dof / rng.chisquare(f.noise_dof, laws.shape)) if f.noise_dof else f.noise
    z = rng.normal(0.0, 1.0, laws.shape)
    # Model-form error is a second independent normal term in log loss; the same draws without
    # it tell how much of the width it adds.
    with np.errstate(all="ignore"):
        lo, hi = pw.interval(laws * np.exp(z * sd))
        out.lo, out.hi = pw.interval(laws * np.exp(z * np.sqrt(sd ** 2 + tau ** 2)))
    width = np.log(out.hi) - np.log(out.lo)
    out.model_share = float(max(0.0, 1 - (np.log(hi) - np.log(lo)) / width)) if tau and width > 0 else 0.0
    return out


def check_question(params, tokens, flops) -> int:
    """How many of parameters, tokens and compute are given; a FitError unless they make a
    question (parameters and tokens, compute with one of them, or compute alone)."""
    given = sum(v is not None for v in (params, tokens, flops))
    if given == 0 or given == 3 or (given == 1 and flops is None):
        raise FitError("predict: give parameters and tokens, compute with one of them, or compute alone")
    return given


def _full(point: dict[str, float]) -> dict[str, float]:
    """A fit's point parameters with the terms a form lacks set to zero."""
    return {"E": 0.0, "B": 0.0, "beta": 0.0, **point}


def _refusal(part) -> Prediction:
    """No supported fit can answer: each candidate's refusal, and what would fix them."""
    rows = [c for c in (part.selection.rows if part.selection else [])]
    if not rows:
        return Prediction(refused="no law was fitted", fix="more runs")
    forms: list[FormFit] = [part.forms[c.key] for c in rows]
    reasons = " | ".join(f"{c.label}: {c.refusal}" for c in rows if c.refusal)
    fixes = "; ".join(dict.fromkeys(fix for f in forms if f.fix for fix in f.fix.split("; ")))
    return Prediction(refused="no supported fit can answer: " + (reasons or "none of them fits this question"),
                      fix=fixes or None)
