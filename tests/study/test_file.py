"""Study files: every example validates with its ladder, and every study-wide rule (search fields,
objectives that fit the base spec, pruning, ladder shapes) names file, line and field."""

import pytest
import yaml

from support import BASE, STUDIES, tiny_spec, write_study
from workbench.plumbing.errors import SpecError
from workbench.study.file import load_study
from workbench.study.ladder import ladder_points
from workbench.study.space import spec_for


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_example_studies_validate(path):
    study = load_study(path)
    assert study.name == path.stem
    for run in ladder_points(study):
        spec_for(study, run["overrides"], 0)


def test_study_errors_name_file_line_and_field(tmp_path):
    path = write_study(tmp_path, search={"model.depht": {"int": [1, 2]}}, objectives=["accuracy"])
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert any(i.field == "objectives" and "unknown objective" in i.message for i in info.value.issues)
    path = write_study(tmp_path, search={"model.depht": {"int": [1, 2]}})
    with pytest.raises(SpecError) as info:
        load_study(path)
    [issue] = info.value.issues
    assert issue.field == "search.model.depht" and issue.line is not None and "not a field" in issue.message


def test_conditions_baselines_and_ladders_must_name_fields_of_the_base(tmp_path):
    path = write_study(tmp_path, search={"model.kv_heads": {"choice": [1, 2], "divides": "model.haeds",
                                                            "when": {"model.positional.knd": "rope"}}},
                       enqueue=[{"model.widht": 32}], ladder={"tokens": [256], "sizes": [{"model.dpth": 1}]})
    with pytest.raises(SpecError) as info:
        load_study(path)
    found = {(i.field, i.message) for i in info.value.issues}
    assert ("search.model.kv_heads", "refers to 'model.positional.knd', not a field of the base spec") in found
    assert ("search.model.kv_heads", "refers to 'model.haeds', not a field of the base spec") in found
    assert ("enqueue.0", "'model.widht' is not a field of the base spec") in found
    assert ("ladder", "'model.dpth' is not a field of the base spec") in found
    assert all(i.line is not None for i in info.value.issues)


def test_an_impossible_ladder_size_is_reported_before_anything_trains(tmp_path):
    path = write_study(tmp_path, ladder={"tokens": [256], "sizes": [{"model.depth": 1}, {"model.heads": 3}]})
    with pytest.raises(SpecError) as info:
        load_study(path)
    [issue] = info.value.issues
    assert issue.field == "ladder.sizes" and "width 32 is not divisible by heads 3" in issue.message


def test_the_grid_sampler_needs_choices_or_integer_ranges(tmp_path):
    path = write_study(tmp_path, sampler={"kind": "grid"}, search={"train.lr": {"float": [1e-4, 1e-2]}})
    with pytest.raises(SpecError, match="search.train.lr: the grid sampler needs choices or integer ranges"):
        load_study(path)


def test_multi_objective_studies_cannot_prune(tmp_path):
    with pytest.raises(SpecError, match="cannot prune"):
        load_study(write_study(tmp_path, objectives=["val_bpb", "params"], pruner={"kind": "median"}))


def test_pruners_judge_only_what_the_evaluation_curve_measures(tmp_path):
    with pytest.raises(SpecError, match="judges trials by their evaluation loss, not by top1"):
        load_study(write_study(tmp_path, objectives=["top1"], pruner={"kind": "median"}))
    assert load_study(write_study(tmp_path, objectives=["top1"])).spec.directions() == [("top1", "maximize")]
    no_tasks = {**BASE, "train": {**BASE["train"], "completions": 0}}
    with pytest.raises(SpecError, match="completion objectives need train.completions above 0"):
        load_study(write_study(tmp_path, objectives=["completion_bleu"], base=no_tasks))


def test_finetune_objectives_need_a_finetune_phase(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec().model_dump(mode="json")))
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump({"name": "s", "base": str(spec_path), "objectives": ["finetune_val_bpb"],
                                          "sampler": {"kind": "random"}}))
    with pytest.raises(SpecError, match="need a finetune: phase"):
        load_study(study_path)
    study_path.write_text(yaml.safe_dump({"name": "s", "base": str(spec_path),
                                          "scaling": {"loss": "finetune_val_loss"}}))
    with pytest.raises(SpecError, match="scaling.loss finetune_val_loss need a finetune: phase"):
        load_study(study_path)


def test_a_missing_base_file_names_the_line(tmp_path):
    (tmp_path / "study.yaml").write_text("name: s\nbase: nowhere.yaml\n")
    with pytest.raises(SpecError) as info:
        load_study(tmp_path / "study.yaml")
    [issue] = info.value.issues
    assert (issue.line, issue.field, issue.message) == (2, "base", "file not found: nowhere.yaml")
