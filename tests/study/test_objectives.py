"""Every objective in OBJECTIVES reads its value from a real run record, and the curve a pruner
watches is one the evaluations record."""

import math

import pytest

from support import BASE, FINETUNE, write_study
from workbench.record import EvalPoint
from workbench.study.file import load_study
from workbench.study.objectives import OBJECTIVES
from workbench.study.worker import objective_values


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_reads_a_finite_value_from_a_fine_tuned_record(two_phase_run, name):
    _, record, _ = two_phase_run
    value = OBJECTIVES[name].get(record)
    assert isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_says_what_a_pruner_may_watch(name):
    objective = OBJECTIVES[name]
    assert objective.doc and objective.direction in ("minimize", "maximize")
    assert objective.curve is None or objective.curve in EvalPoint.model_fields
    assert not objective.needs_finetune or objective.last_phase       # measured after the phase it needs


def test_only_objectives_of_the_last_phase_need_the_suite_or_fine_tuning(two_phase_run):
    _, record, _ = two_phase_run
    pretrained = record.model_copy(update={"finetune_val_bpb": None, "finetune_val_loss": None,
                                           "finetune_gain_bpb": None, "forgetting_bpb": None, "suite": None})
    assert {name for name, o in OBJECTIVES.items() if o.get(pretrained) is None} == \
        {name for name, o in OBJECTIVES.items() if o.last_phase}


def test_a_study_reads_its_objectives_and_names_what_a_run_lacks(two_phase_run, tmp_path):
    _, record, _ = two_phase_run
    study = load_study(write_study(tmp_path, objectives=["finetune_val_bpb", {"params": "minimize"}],
                                   pruner={"kind": "none"}, base={**BASE, "finetune": FINETUNE}))
    assert objective_values(study, record) == [record.finetune_val_bpb, record.params["total"]]
    broken = record.model_copy(update={"suite": None, "suite_error": "OutOfMemoryError: no memory"})
    study = load_study(write_study(tmp_path, objectives=["top1"], pruner={"kind": "none"}))
    with pytest.raises(ValueError, match=r"the run has no top1: its evaluation suite failed \(OutOfMemoryError"):
        objective_values(study, broken)
