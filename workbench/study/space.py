"""A study's search space: suggesting values for its fields from an Optuna trial (with
conditions), and turning chosen overrides into a trial's spec, checked against the study's
constraints before anything trains."""

from __future__ import annotations

import math
from typing import Any

import optuna
from pydantic import ValidationError

from workbench.accounting import memory_problem
from workbench.plumbing import dotted
from workbench.spec import Spec
from workbench.study.constraints import violated
from workbench.study.schema import ChoiceParam, FloatParam, IntParam, StudyFile

def _applies(when: dict[str, Any] | None, data: dict) -> bool:
    for path, wanted in (when or {}).items():
        value = dotted.get(data, path)
        if value not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


class Infeasible(Exception):
    """A sampled spec that must not be trained; the message says why."""


def suggest(trial: optuna.Trial, study: StudyFile, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Suggest every applicable search field in order; returns the dotted overrides to apply.
    Conditions (`when`, `divides`) see the base spec with the overrides chosen so far."""
    chosen = dict(overrides or {})
    data = dotted.apply(study.base.model_dump(mode="json"), chosen)
    for path, p in study.spec.search.items():
        if path in chosen or not _applies(p.when, data):
            continue
        if isinstance(p, IntParam):
            value = trial.suggest_int(path, p.int[0], p.int[1], step=p.step, log=p.log)
        elif isinstance(p, FloatParam):
            value = trial.suggest_float(path, p.float[0], p.float[1], log=p.log)
        elif p.divides:
            of = dotted.get(data, p.divides)
            options = [v for v in p.choice if isinstance(of, int) and isinstance(v, int) and v > 0 and of % v == 0]
            if not options:
                raise Infeasible(f"no value of {path} in {p.choice} divides {p.divides} = {of}")
            value = trial.suggest_categorical(f"{path}[{p.divides}={of}]", options)
        else:
            value = trial.suggest_categorical(path, p.choice)
        chosen[path] = value
        data = dotted.replace(data, path, value)
    return chosen


def spec_for(study: StudyFile, overrides: dict[str, Any], number: int) -> Spec:
    """The trial's spec: base + overrides, validated and checked against the constraints.
    Raises Infeasible with the reason."""
    data = dotted.apply(study.base_data, overrides)
    data["name"] = f"{study.name}-{number}"
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:  # the sample is an impossible shape
        raise Infeasible("; ".join(_explain(err) for err in e.errors(include_url=False))) from None
    reason = violated(spec, study.spec.constraints) or memory_problem(spec)
    if reason:
        raise Infeasible(reason)
    return spec


def _explain(err: dict) -> str:
    if err["type"] == "impossible":
        return "; ".join(f"{'.'.join(p)}: {m}" for p, m in err["ctx"]["problems"])
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"




def grid(study: StudyFile) -> dict[str, list[Any]]:
    """The search space as every value of every field (choices and integer ranges): what the
    grid sampler enumerates."""
    return {path: p.choice if isinstance(p, ChoiceParam) else list(range(p.int[0], p.int[1] + 1, p.step))
            for path, p in study.spec.search.items() if not isinstance(p, FloatParam)}


def space_size(study: StudyFile) -> int | None:
    """How many configurations the search space has, when it is discrete and unconditional (no
    float range, no `when`, no `divides`); None otherwise."""
    if not study.spec.search or any(isinstance(p, FloatParam) or p.when or getattr(p, "divides", None)
                                    for p in study.spec.search.values()):
        return None
    return math.prod(len(values) for values in grid(study).values())
