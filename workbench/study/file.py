"""A study file, loaded: its schema validated, its base spec resolved and validated, and the
study-wide rules checked (search fields exist, objectives fit the base spec, ladder sizes are
possible shapes), every problem naming file:line."""

from __future__ import annotations

from pathlib import Path

from workbench.plumbing import dotted
from workbench.plumbing.errors import Issue, SpecError
from workbench.spec import Spec
from workbench.specfile import read_with_extends, read_yaml, resolve_paths, validate_data
from workbench.study.ladder import ladder_points
from workbench.study.objectives import OBJECTIVES
from workbench.study.schema import ChoiceParam, FloatParam, IntParam, StudyFile, StudySpec
from workbench.study.space import Infeasible, spec_for


def load_study(path: str | Path) -> StudyFile:
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
    study = StudyFile(path, spec, base_data, base)
    problems = [Issue(*locs.get(where, (str(path), None)), ".".join(map(str, where)), message)
                for where, message in _space_problems(study)]
    if base.finetune is None:
        wanted = [name for name, _ in spec.directions() if OBJECTIVES[name].needs_finetune]
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
    if not problems and spec.ladder and spec.ladder.branches:
        for run in ladder_points(study)[:1]:       # the branched schedule each run takes
            try:
                spec_for(study, run["overrides"], 0)
            except Infeasible as e:
                file, line = locs.get(("ladder", "branches"), (str(path), None))
                problems.append(Issue(file, line, "ladder.branches", f"the branched runs cannot be trained: {e}"))
    if problems:
        raise SpecError(problems)
    return study


def _space_problems(study: StudyFile) -> list[tuple[tuple, str]]:
    fields = study.base.model_dump(mode="json")
    out = []

    def known(path: str) -> bool:
        return dotted.exists(fields, path)

    for path, param in study.spec.search.items():
        if not known(path):
            out.append((("search", path), "not a field of the base spec"))
        for other in list((param.when or {})) + ([param.divides] if isinstance(param, ChoiceParam) and param.divides else []):
            if not known(other):
                out.append((("search", path), f"refers to {other!r}, not a field of the base spec"))
        if study.spec.sampler.kind == "grid" and isinstance(param, FloatParam):
            out.append((("search", path), "the grid sampler needs choices or integer ranges"))
    for i, entry in enumerate(study.spec.enqueue):
        out += [(("enqueue", i), f"{k!r} is not a field of the base spec") for k in entry if not known(k)]
        out += [(("enqueue", i), f"{k}: {why}") for k, v in entry.items()
                if k in study.spec.search and (why := _outside(study.spec.search[k], v))]
    if study.spec.ladder:
        for i, entry in enumerate(study.spec.ladder.sizes + study.spec.ladder.groups):
            out += [(("ladder",), f"{k!r} is not a field of the base spec") for k in entry if not known(k)]
        tune = study.spec.ladder.tune
        shaped = {k for entry in study.spec.ladder.sizes + study.spec.ladder.groups for k in entry}
        for path, param in (tune.fields if tune else {}).items():
            if not known(path):
                out.append((("ladder", "tune", path), "not a field of the base spec"))
            elif path in shaped or path.startswith("train.budget"):
                out.append((("ladder", "tune", path), "set by the ladder's sizes, groups or budgets; it cannot be tuned"))
            if param.when or getattr(param, "divides", None):
                out.append((("ladder", "tune", path), "a tuned field takes no `when` or `divides`"))
    directions = study.spec.directions()
    if len(directions) > 1 and study.spec.pruner.kind != "none":
        out.append((("pruner", "kind"), "studies with several objectives cannot prune; use none"))
    elif study.spec.pruner.kind != "none" and OBJECTIVES[directions[0][0]].curve is None:
        prunable = [name for name, o in OBJECTIVES.items() if o.curve]
        out.append((("pruner", "kind"), f"a pruner judges trials by their evaluation loss, not by "
                    f"{directions[0][0]}; use none, or one of {', '.join(prunable)} as the objective"))
    if any(OBJECTIVES[name].needs_completions for name, _ in directions) and study.base.train.completions == 0:
        out.append((("objectives",), "completion objectives need train.completions above 0 in the base spec"))
    return out


def _outside(param, value) -> str | None:
    """Why a baseline's value lies outside a searched field's domain (a sampler would crash on
    it, and its retry would run a sampled value still called a baseline), or None."""
    if isinstance(param, ChoiceParam):
        return None if value in param.choice else f"{value!r} is not one of the choices {param.choice}"
    low, high = param.int if isinstance(param, IntParam) else param.float
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number in [{low}, {high}]"
    if not low <= value <= high:
        return f"{value!r} lies outside the searched range [{low}, {high}]"
    if isinstance(param, IntParam) and (value != int(value) or (value - low) % param.step):
        return f"{value!r} is not one of the integers {low}, {low + param.step}, ... {high} searched"
    return None
