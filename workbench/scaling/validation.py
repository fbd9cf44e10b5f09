"""A study's validation run, planned from its finished ladder: fit the ladder's points, take the
compute-optimal size at the validation budget from the supported L(N, D) fit, build the model
nearest that size (the ladder size nearest in N, with its width scaled), and predict that model's
loss at the budget with its 95% interval. The plan is stored on the trial before it trains, so
the check is a real out-of-sample prediction: observed against predicted."""

from __future__ import annotations

import math
from typing import Any

import optuna

from workbench import accounting
from workbench.plumbing.errors import FitError
from workbench.scaling.fit import fit_runs
from workbench.scaling.predict import predict
from workbench.scaling.runs import study_runs
from workbench.study.schema import StudyFile
from workbench.study.space import Infeasible, spec_for
from workbench.study.table import trials_table

WIDEST = 8          # widths tried reach this multiple of the ladder's widest size


def plan(study: StudyFile, ostudy: optuna.Study, budget: float) -> dict[str, Any]:
    """{overrides, prediction} for the validation run at `budget` FLOPs; a FitError says why
    the ladder cannot back one (and what would)."""
    runs, prov = study_runs(study, trials_table(ostudy))
    result = fit_runs(runs, prov, target_flops=budget, seed=study.spec.sampler.seed, workers=1)
    alloc = result.allocation
    if alloc.N_opt is None:
        raise FitError(f"{alloc.reason}" + (f" (what would fix it: {'; '.join(alloc.fix)})" if alloc.fix else ""))
    convention = alloc.convention
    overrides, spec = nearest_model(study, alloc.N_opt.estimate, convention)
    per_token = accounting.flops_per_token(spec)[study.spec.ladder.flops_convention]
    batch = spec.train.batch_tokens
    tokens = max(1, round(budget / per_token / batch)) * batch
    overrides["train.budget"] = {"tokens": tokens}
    ladder = study.spec.ladder
    if ladder.branches:
        # The points were WSD branches: the check trains the same schedule, unbranched, with the
        # warmup tokens its size had on the ladder (the base fraction of the smallest budget).
        base = study.base.train.schedule
        smallest = min(ladder.flops) / per_token if ladder.flops else min(ladder.tokens)
        overrides["train.schedule"] = {**base.model_dump(mode="json"), "kind": "wsd", "branches": None,
                                       "decay": ladder.branches.decay, "shape": ladder.branches.shape,
                                       "warmup": base.warmup * min(1.0, smallest / tokens)}
    params = accounting.count_params(spec)
    got = predict(result, params={"total": params.total, "nonembedding": params.nonembedding},
                  tokens=float(tokens), seed=study.spec.sampler.seed)
    if not got.ok:
        raise FitError(got.text())
    return {"overrides": overrides, "prediction": {
        **got.model_dump(mode="json", exclude_none=True), "text": got.text(), "loss": study.spec.scaling.loss,
        "budget": budget, "N_opt": alloc.N_opt.estimate, "N_opt_lo": alloc.N_opt.lo, "N_opt_hi": alloc.N_opt.hi,
        "D_opt": alloc.D_opt.estimate if alloc.D_opt else None, "allocation_from": alloc.source,
        "ladder_runs": prov.used}}


def nearest_model(study: StudyFile, n_opt: float, convention: str) -> tuple[dict[str, Any], Any]:
    """The model nearest `n_opt` parameters (in log N): the ladder size nearest in N keeps its
    depth and other fields, and its width moves: in steps of the head size with heads to match
    when the ladder keeps one head size, else in steps that keep its heads whole and even."""
    ladder = study.spec.ladder
    group = ladder.groups[0]

    def count(overrides: dict[str, Any]):
        spec = spec_for(study, {**group, **overrides}, 0)
        return spec, getattr(accounting.count_params(spec), convention)

    counted = [count(size) for size in ladder.sizes]
    i = min(range(len(counted)), key=lambda j: abs(math.log(counted[j][1] / n_opt)))
    nearest = dict(ladder.sizes[i])
    specs = [spec.model for spec, _ in counted]
    head = {m.head_dim for m in specs}
    # A ladder that keeps its head size (heads grow with width) keeps it here too; otherwise the
    # nearest size's heads stay and the width moves in steps that keep each head whole and even.
    fixed_head = len(head) == 1 and len({m.heads for m in specs}) > 1
    step = head.pop() if fixed_head else 2 * specs[i].heads
    widest = max(m.width for m in specs) * WIDEST
    best = None
    for width in range(step, widest + 1, step):
        shape = {"model.width": width, **({"model.heads": width // step} if fixed_head else {})}
        try:
            candidate, n = count({**nearest, **shape})
        except Infeasible:
            continue
        gap = abs(math.log(n / n_opt))
        if best is None or gap < best[0]:
            best = (gap, {**group, **nearest, **shape}, candidate)
    if best is None:
        raise FitError(f"no model near the predicted optimum of {n_opt:.3g} parameters passes the study's checks")
    return best[1], best[2]
