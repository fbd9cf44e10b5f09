"""A study's scaling ladder: the designed (size, budget, group) points it trains for the fits."""

from __future__ import annotations

from typing import Any

from workbench import accounting
from workbench.study.schema import StudyFile
from workbench.study.space import spec_for


def ladder_points(study: StudyFile) -> list[dict[str, Any]]:
    """Overrides of every ladder point: sizes x budgets x groups, tokens rounded to whole batches
    (at least one). For a flops axis, tokens = C / flops-per-token of that size."""
    ladder = study.spec.ladder
    if ladder is None:
        return []
    batch = study.base.train.batch_tokens
    points = []
    for group in ladder.groups:
        for size in ladder.sizes:
            shape = {**group, **size}
            per_token = accounting.flops_per_token(spec_for(study, shape, 0))[ladder.flops_convention] \
                if ladder.flops else None
            for budget in ladder.flops or ladder.tokens:
                tokens = budget / per_token if per_token else budget
                steps = max(1, round(tokens / batch))
                points.append({**shape, "train.budget": {"tokens": steps * batch}})
    return points
