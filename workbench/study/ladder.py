"""A study's scaling ladder: the designed (size, budget, group) points it trains for the fits,
each with its tuning runs when the ladder tunes hyperparameters per point, and the key that
tells a point already in the storage from a new one (so a ladder can grow)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from workbench import accounting
from workbench.study.schema import ChoiceParam, FloatParam, StudyFile, TuneSpec
from workbench.study.space import spec_for


def ladder_points(study: StudyFile) -> list[dict[str, Any]]:
    """The ladder's runs, one mapping each: `overrides` (the dotted fields the run applies to the
    base spec: its size, group, token budget rounded to whole batches, and tuned values),
    `point` (the same without the tuned values: which (size, budget, group) it measures) and
    `points` (every point the run measures: with `ladder.branches` one run per size reaches the
    largest budget and measures each smaller one as a branch, in order, the run's own last). For
    a flops axis, tokens = C / flops-per-token of that size."""
    ladder = study.spec.ladder
    if ladder is None:
        return []
    batch = study.base.train.batch_tokens
    tuned = tune_design(ladder.tune, study.spec.sampler.seed) if ladder.tune else [{}]
    runs = []
    for group in ladder.groups:
        for size in ladder.sizes:
            shape = {**group, **size}
            per_token = accounting.flops_per_token(spec_for(study, shape, 0))[ladder.flops_convention] \
                if ladder.flops else None
            steps = sorted({max(1, round((budget / per_token if per_token else budget) / batch))
                            for budget in ladder.flops or ladder.tokens})
            points = [{**shape, "train.budget": {"tokens": n * batch}} for n in steps]
            if ladder.branches:
                # Every branch shares the run's warmup: the base schedule's fraction of the smallest
                # budget, so no branch warms up longer than its separate run would.
                base = study.base.train.schedule
                schedule = {**base.model_dump(mode="json"), "kind": "wsd", "warmup": base.warmup * steps[0] / steps[-1],
                            "decay": ladder.branches.decay, "shape": ladder.branches.shape,
                            "branches": [n / steps[-1] for n in steps]}
                runs += [{"point": points[-1], "points": points,
                          "overrides": {**points[-1], "train.schedule": schedule, **values}} for values in tuned]
                continue
            runs += [{"point": point, "points": [point], "overrides": {**point, **values}}
                     for point in points for values in tuned]
    return runs


def key(overrides: dict[str, Any]) -> str:
    """A designed run's identity: its overrides as canonical JSON."""
    return json.dumps(overrides, sort_keys=True, default=str)


def tune_design(tune: TuneSpec, seed: int = 0) -> list[dict[str, Any]]:
    """The values each point's tuning runs take: every field gets `trials` values evenly spaced
    over its range (on a log scale when asked; choices in turn), and the runs pair them as a
    Latin hypercube (the first field in order, the others in a seeded shuffle), so one field
    alone is an even grid that includes both ends, and every point uses the same design."""
    n = tune.trials
    rng = np.random.default_rng(seed)
    columns = {}
    for i, (path, p) in enumerate(tune.fields.items()):
        if isinstance(p, ChoiceParam):
            values = [p.choice[j % len(p.choice)] for j in range(n)]
        else:
            low, high = p.float if isinstance(p, FloatParam) else p.int
            grid = np.geomspace(low, high, n) if p.log else np.linspace(low, high, n)
            values = [float(f"{v:.4g}") for v in grid] if isinstance(p, FloatParam) else \
                [int(low + round((v - low) / p.step) * p.step) for v in grid]
        columns[path] = values if i == 0 else [values[j] for j in rng.permutation(n)]
    return [{path: columns[path][j] for path in columns} for j in range(n)]


def largest_budget(study: StudyFile) -> float | None:
    """The ladder's largest compute budget (flops axis), which a validation factor multiplies."""
    ladder = study.spec.ladder
    return max(ladder.flops) if ladder and ladder.flops else None
