"""The study schema: every named choice (samplers, pruners, objectives, constraint quantities,
fittable losses) is pinned to the table of its implementations, in the JSON Schema and in
validation, and the study fingerprint follows what is measured."""

import re

import pytest

from support import BASE, FINETUNE, write_study
from workbench.plumbing.errors import SpecError
from workbench.plumbing.schema import one_of
from workbench.study.constraints import OPERATORS, QUANTITIES
from workbench.study.file import load_study
from workbench.study.objectives import FITTABLE, OBJECTIVES
from workbench.study.samplers import PRUNERS, SAMPLERS
from workbench.study.schema import StudySpec

SCHEMA = StudySpec.model_json_schema()
TUNED = {**BASE, "finetune": FINETUNE}
"""A base spec with a fine-tuning phase, so that every objective applies."""


def _issue(tmp_path, **fields):
    with pytest.raises(SpecError) as info:
        load_study(write_study(tmp_path, **fields))
    [issue] = info.value.issues
    assert issue.line is not None
    return issue


# ------------------------------------------------------------------------------- the schema


@pytest.mark.parametrize("section,field,table", [("SamplerSpec", "kind", SAMPLERS), ("PrunerSpec", "kind", PRUNERS),
                                                 ("ScalingSpec", "loss", FITTABLE)])
def test_the_schema_lists_exactly_the_table(section, field, table):
    assert SCHEMA["$defs"][section]["properties"][field]["enum"] == list(table)


def test_the_schema_lists_exactly_the_objectives_by_name_and_in_mappings():
    name, mapping = SCHEMA["properties"]["objectives"]["items"]["anyOf"]
    assert name["enum"] == list(OBJECTIVES) and mapping["propertyNames"]["enum"] == list(OBJECTIVES)
    assert mapping["additionalProperties"]["enum"] == ["minimize", "maximize"]


def test_the_schema_pattern_names_exactly_the_constraint_quantities():
    pattern = SCHEMA["properties"]["constraints"]["items"]["pattern"]
    names = re.match(r"\^\\s\*\(([^)]*)\)", pattern).group(1).split("|")
    assert names == list(QUANTITIES)
    for quantity in QUANTITIES:
        for op in OPERATORS:
            assert re.fullmatch(pattern, f"{quantity} {op} 5e6")
    assert not re.fullmatch(pattern, "parameters <= 5e6") and not re.fullmatch(pattern, "params = 5e6")


def test_fittable_losses_are_the_objectives_with_words_for_the_fit_and_a_curve():
    assert FITTABLE == {name: o for name, o in OBJECTIVES.items() if o.fit_words}
    assert all(o.curve and o.direction == "minimize" for o in FITTABLE.values())


# ------------------------------------------------------------------------- outside the tables


@pytest.mark.parametrize("field,table", [("sampler", SAMPLERS), ("pruner", PRUNERS)])
def test_a_sampler_or_pruner_outside_the_table_is_an_error_naming_the_field(tmp_path, field, table):
    issue = _issue(tmp_path, **{field: {"kind": "annealing"}})
    assert (issue.field, issue.message) == (f"{field}.kind", f"expected {one_of(list(table))} (got 'annealing')")


@pytest.mark.parametrize("objectives", [["accuracy"], ["val_bpb", {"accuracy": "maximize"}]], ids=["name", "mapping"])
def test_an_objective_outside_the_table_is_an_error_naming_the_field(tmp_path, objectives):
    issue = _issue(tmp_path, objectives=objectives, pruner={"kind": "none"})
    assert issue.field == "objectives"
    assert issue.message == f"unknown objective 'accuracy'; expected {one_of(list(OBJECTIVES))}"


def test_a_loss_that_cannot_be_fitted_is_an_error_naming_the_field(tmp_path):
    issue = _issue(tmp_path, scaling={"loss": "params"})           # an objective, but not a loss
    assert (issue.field, issue.message) == ("scaling.loss", f"expected {one_of(list(FITTABLE))} (got 'params')")


def test_a_constraint_quantity_outside_the_table_is_an_error_naming_the_field(tmp_path):
    issue = _issue(tmp_path, constraints=["parameters <= 5e6"])
    assert issue.field == "constraints.0" and f"QUANTITY one of {', '.join(QUANTITIES)}" in issue.message


# ---------------------------------------------------------------------------- inside the tables


@pytest.mark.parametrize("kind", SAMPLERS)
def test_every_sampler_is_a_valid_study(tmp_path, kind):
    assert load_study(write_study(tmp_path, sampler={"kind": kind})).spec.sampler.kind == kind


@pytest.mark.parametrize("kind", PRUNERS)
def test_every_pruner_is_a_valid_study(tmp_path, kind):
    assert load_study(write_study(tmp_path, pruner={"kind": kind})).spec.pruner.kind == kind


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_is_a_valid_study_with_its_direction(tmp_path, name):
    objective = OBJECTIVES[name]
    pruner = {"kind": "median" if objective.curve else "none"}        # prune where a curve allows it
    study = load_study(write_study(tmp_path, objectives=[name], pruner=pruner, base=TUNED))
    assert study.spec.directions() == [(name, objective.direction)]
    flipped = "maximize" if objective.direction == "minimize" else "minimize"
    study = load_study(write_study(tmp_path, objectives=[{name: flipped}], pruner={"kind": "none"}, base=TUNED))
    assert study.spec.directions() == [(name, flipped)]


@pytest.mark.parametrize("loss", FITTABLE)
def test_every_fittable_loss_is_a_valid_study(tmp_path, loss):
    assert load_study(write_study(tmp_path, scaling={"loss": loss}, base=TUNED)).spec.scaling.loss == loss


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_every_constraint_quantity_is_a_valid_study(tmp_path, quantity):
    text = f"{quantity} >= 0"
    assert load_study(write_study(tmp_path, constraints=[text])).spec.constraints == [text]


# ------------------------------------------------------------------------------- fingerprints


def test_the_fingerprints_follow_what_is_measured_not_the_budget_nor_the_design(tmp_path):
    """What a study measures is fingerprinted part by part; the trial budget, baselines and the
    ladder's points may change (a ladder grows), so they are not."""
    space = {"model.width": {"choice": [32, 64]}}
    base = load_study(write_study(tmp_path, name="f", search=space))
    digest = base.base.digest()
    same = [load_study(write_study(tmp_path, name="f", search=space, **fields))
            for fields in ({"trials": 50}, {"description": "more words"}, {"sampler": {"kind": "tpe", "seed": 9}},
                           {"enqueue": [{"model.width": 32}]},
                           {"ladder": {"tokens": [256], "sizes": [{"model.depth": 1}]}})]
    assert all(s.spec.fingerprints(digest).items() >= base.spec.fingerprints(digest).items() for s in same)
    changed = {"search space": {"search": {"model.width": {"choice": [32, 48]}}},
               "objectives": {"search": space, "objectives": ["val_loss"]},
               "constraints": {"search": space, "constraints": ["params <= 1e9"]},
               "ladder flops_convention": {"search": space, "ladder": {
                   "flops": [1e8], "sizes": [{"model.depth": 1}], "flops_convention": "6N"}}}
    flops = load_study(write_study(tmp_path, name="f", search=space, ladder={
        "flops": [1e8], "sizes": [{"model.depth": 1}]})).spec.fingerprints(digest)
    for part, fields in changed.items():
        other = load_study(write_study(tmp_path, name="f", **fields)).spec.fingerprints(digest)
        assert [k for k in other if other[k] != flops[k]] == [part]
    assert base.spec.fingerprints("another-base")["base spec"] != base.spec.fingerprints(digest)["base spec"]
