"""From a study file to the specs its trials train: loading and checking, sampling a search
space into spec overrides (with conditionals), constraints checked before training, the scaling
ladder's designed points, and the named Optuna sampler and pruner."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from pydantic import ValidationError

from workbench import accounting
from workbench.spec import Spec
from workbench.specfile import (Issue, SpecError, read_with_extends, read_yaml, resolve_paths,
                                set_dotted, validate_data)
from workbench.studyspec import FINETUNE_OBJECTIVES, PRUNABLE, ChoiceParam, FloatParam, IntParam, StudySpec, parse_constraint


@dataclass
class Study:
    """A loaded study file with its validated base spec."""

    path: Path
    spec: StudySpec
    base_data: dict
    base: Spec

    @property
    def name(self) -> str:
        return self.spec.name


def load_study(path: str | Path) -> Study:
    """Read and validate a study file and its base spec; every problem names file:line."""
    path = Path(path)
    data, locs = read_yaml(path)
    spec = validate_data(StudySpec, data, locs, str(path))
    if isinstance(spec.base, str):
        base_path = (path.parent / spec.base).resolve()
        if not base_path.is_file():
            file, line = locs.get(("base",), (str(path), None))
            raise SpecError([Issue(file, line, "base", f"file not found: {spec.base}")])
        base_data, base_locs, base_file = *read_with_extends(base_path), str(base_path)
    else:
        base_data = resolve_paths(spec.base, path.parent)
        base_locs = {k[1:]: v for k, v in locs.items() if k[:1] == ("base",)}
        base_file = str(path)
    base = validate_data(Spec, base_data, base_locs, base_file)
    study = Study(path, spec, base_data, base)
    problems = [Issue(*locs.get(where, (str(path), None)), ".".join(map(str, where)), message)
                for where, message in _space_problems(study)]
    if base.finetune is None:
        wanted = [name for name, _ in spec.directions() if name in FINETUNE_OBJECTIVES]
        if spec.scaling.loss.startswith("finetune_"):
            wanted.append(f"scaling.loss {spec.scaling.loss}")
        if wanted:
            file, line = locs.get(("objectives",), (str(path), None))
            problems.append(Issue(file, line, "objectives", f"{', '.join(wanted)} need a finetune: "
                                  "phase in the base spec"))
    if not problems and spec.ladder:
        for size in spec.ladder.sizes:
            for group in spec.ladder.groups:
                try:
                    spec_for(study, {**group, **size}, 0)
                except Infeasible as e:
                    file, line = locs.get(("ladder", "sizes"), (str(path), None))
                    problems.append(Issue(file, line, "ladder.sizes", f"{ {**group, **size} }: {e}"))
    if problems:
        raise SpecError(problems)
    return study


def _space_problems(study: Study) -> list[tuple[tuple, str]]:
    fields = study.base.model_dump(mode="json")
    out = []

    def known(dotted: str) -> bool:
        node = fields
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    for dotted, param in study.spec.search.items():
        if not known(dotted):
            out.append((("search", dotted), "not a field of the base spec"))
        for other in list((param.when or {})) + ([param.divides] if isinstance(param, ChoiceParam) and param.divides else []):
            if not known(other):
                out.append((("search", dotted), f"refers to {other!r}, not a field of the base spec"))
        if study.spec.sampler.kind == "grid" and isinstance(param, FloatParam):
            out.append((("search", dotted), "the grid sampler needs choices or integer ranges"))
    for i, entry in enumerate(study.spec.enqueue):
        out += [(("enqueue", i), f"{k!r} is not a field of the base spec") for k in entry if not known(k)]
    if study.spec.ladder:
        for i, entry in enumerate(study.spec.ladder.sizes + study.spec.ladder.groups):
            out += [(("ladder",), f"{k!r} is not a field of the base spec") for k in entry if not known(k)]
    directions = study.spec.directions()
    if len(directions) > 1 and study.spec.pruner.kind != "none":
        out.append((("pruner", "kind"), "studies with several objectives cannot prune; use none"))
    elif study.spec.pruner.kind != "none" and directions[0][0] not in PRUNABLE:
        out.append((("pruner", "kind"), f"a pruner judges trials by their evaluation loss, not by "
                    f"{directions[0][0]}; use none, or one of {', '.join(PRUNABLE)} as the objective"))
    if any(name.startswith("completion_") for name, _ in directions) and study.base.train.completions == 0:
        out.append((("objectives",), "completion objectives need train.completions above 0 in the base spec"))
    return out


def current(data: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _applies(when: dict[str, Any] | None, data: dict) -> bool:
    for dotted, wanted in (when or {}).items():
        value = current(data, dotted)
        if value not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


class Infeasible(Exception):
    """A sampled spec that must not be trained; the message says why."""


def sample(trial: optuna.Trial, study: Study, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Suggest every applicable search field in order; returns the dotted overrides to apply.
    Conditions (`when`, `divides`) see the base spec with the overrides chosen so far."""
    chosen = dict(overrides or {})
    data = _apply(study.base.model_dump(mode="json"), chosen)
    for dotted, p in study.spec.search.items():
        if dotted in chosen or not _applies(p.when, data):
            continue
        if isinstance(p, IntParam):
            value = trial.suggest_int(dotted, p.int[0], p.int[1], step=p.step, log=p.log)
        elif isinstance(p, FloatParam):
            value = trial.suggest_float(dotted, p.float[0], p.float[1], log=p.log)
        elif p.divides:
            of = current(data, p.divides)
            options = [v for v in p.choice if isinstance(of, int) and isinstance(v, int) and v > 0 and of % v == 0]
            if not options:
                raise Infeasible(f"no value of {dotted} in {p.choice} divides {p.divides} = {of}")
            value = trial.suggest_categorical(f"{dotted}[{p.divides}={of}]", options)
        else:
            value = trial.suggest_categorical(dotted, p.choice)
        chosen[dotted] = value
        data = set_dotted(data, dotted, value)
    return chosen


def _apply(data: dict, overrides: dict[str, Any]) -> dict:
    for dotted, value in overrides.items():
        data = set_dotted(data, dotted, value)
    return data


def spec_for(study: Study, overrides: dict[str, Any], number: int) -> Spec:
    """The trial's spec: base + overrides, validated and checked against the constraints.
    Raises Infeasible with the reason."""
    data = _apply(study.base_data, overrides)
    data["name"] = f"{study.name}-{number}"
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:  # the sample is an impossible shape
        raise Infeasible("; ".join(_explain(err) for err in e.errors(include_url=False))) from None
    quantities = {
        "params": lambda: accounting.count_params(spec).total,
        "nonembedding_params": lambda: accounting.count_params(spec).nonembedding,
        "flops_per_token": lambda: accounting.flops_per_token(spec)["6N+attn"],
        "memory": lambda: accounting.memory_estimate(spec)["total"],
        "tokens": lambda: accounting.budget_tokens(spec) or 0,
    }
    ops = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
    for text in study.spec.constraints:
        name, op, bound = parse_constraint(text)
        value = quantities[name]()
        if not ops[op](value, bound):
            raise Infeasible(f"constraint {text!r} violated: {name} = {value:.4g}")
    return spec


def _explain(err: dict) -> str:
    if err["type"] == "impossible":
        return "; ".join(f"{'.'.join(p)}: {m}" for p, m in err["ctx"]["problems"])
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"


def ladder_points(study: Study) -> list[dict[str, Any]]:
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


def make_sampler(study: Study, worker: int = 0) -> optuna.samplers.BaseSampler:
    s = study.spec.sampler
    seed = s.seed + worker
    if s.kind == "grid":
        grid = {}
        for dotted, p in study.spec.search.items():
            grid[dotted] = p.choice if isinstance(p, ChoiceParam) else list(range(p.int[0], p.int[1] + 1, p.step))
        return optuna.samplers.GridSampler(grid, seed=seed)
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }[s.kind]()


def make_pruner(study: Study) -> optuna.pruners.BasePruner:
    p = study.spec.pruner
    return {
        "none": optuna.pruners.NopPruner,
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0,
                                                      n_min_trials=1),
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }[p.kind]()
