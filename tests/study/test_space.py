"""A study's search space: every distribution, conditions (`when`) and `divides`, overrides
chosen in advance, the grid, and specs checked for shape and constraints before training."""

import optuna
import pytest

from support import write_study
from workbench.study.file import load_study
from workbench.study.space import Infeasible, grid, spec_for, suggest


def _trial(seed: int = 1) -> optuna.Trial:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


def test_every_distribution_kind_and_conditionals(tmp_path):
    study = load_study(write_study(tmp_path, search={
        "model.depth": {"int": [1, 4], "step": 1},
        "train.lr": {"float": [1e-4, 1e-2], "log": True},
        "model.positional.kind": {"choice": ["rope", "learned"]},
        "model.positional.theta": {"float": [1e3, 1e5], "log": True, "when": {"model.positional.kind": "rope"}},
        "model.heads": {"choice": [1, 2, 4]},
        "model.kv_heads": {"choice": [1, 2, 4], "divides": "model.heads"},
    }))
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_kinds = set()
    for _ in range(30):
        trial = ostudy.ask()
        chosen = suggest(trial, study)
        spec = spec_for(study, chosen, trial.number)
        seen_kinds.add(spec.model.positional.kind)
        assert 1 <= spec.model.depth <= 4 and 1e-4 <= spec.train.lr <= 1e-2
        assert ("model.positional.theta" in chosen) == (spec.model.positional.kind == "rope")
        assert spec.model.heads % spec.model.kv_heads == 0
        assert f"model.kv_heads[model.heads={spec.model.heads}]" in trial.params
        ostudy.tell(trial, 1.0)
    assert seen_kinds == {"rope", "learned"}


def test_infeasible_samples_carry_their_reason(tmp_path):
    study = load_study(write_study(tmp_path, constraints=["params <= 1000"],
                                   search={"model.heads": {"choice": [3]}}))
    with pytest.raises(Infeasible, match="heads"):
        spec_for(study, suggest(_trial(), study), 0)           # width 32 not divisible by 3
    with pytest.raises(Infeasible, match="constraint 'params <= 1000' violated"):
        spec_for(study, {}, 0)


def test_divides_with_no_dividing_value_is_infeasible(tmp_path):
    study = load_study(write_study(tmp_path, search={"model.kv_heads": {"choice": [3, 5], "divides": "model.heads"}}))
    with pytest.raises(Infeasible, match=r"no value of model.kv_heads in \[3, 5\] divides model.heads = 2"):
        suggest(_trial(), study)


def test_when_accepts_a_list_of_values_and_sees_earlier_choices(tmp_path):
    study = load_study(write_study(tmp_path, search={
        "model.positional.kind": {"choice": ["rope", "learned", "alibi"]},
        "model.positional.max_positions": {"int": [32, 64], "when": {"model.positional.kind": ["learned", "alibi"]}},
    }))
    for seed in range(12):
        chosen = suggest(_trial(seed), study)
        assert ("model.positional.max_positions" in chosen) == (chosen["model.positional.kind"] != "rope")


def test_overrides_chosen_in_advance_are_kept_and_steer_conditions(tmp_path):
    study = load_study(write_study(tmp_path, search={
        "model.positional.kind": {"choice": ["rope", "learned"]},
        "model.positional.theta": {"float": [1e3, 1e5], "when": {"model.positional.kind": "rope"}},
        "model.kv_heads": {"choice": [1, 2], "divides": "model.heads"},
    }))
    trial = _trial()
    chosen = suggest(trial, study, {"model.positional.kind": "learned", "model.heads": 1})
    assert chosen["model.positional.kind"] == "learned" and "model.positional.theta" not in chosen
    assert chosen["model.kv_heads"] == 1 and "model.kv_heads[model.heads=1]" in trial.params
    assert "model.positional.kind" not in trial.params                      # fixed, not suggested


def test_spec_for_names_the_trial_and_applies_overrides(tmp_path):
    study = load_study(write_study(tmp_path))
    spec = spec_for(study, {"model.depth": 2, "train.budget": {"tokens": 512}}, 7)
    assert spec.name == f"{study.name}-7" and spec.model.depth == 2 and spec.train.budget.tokens == 512
    assert spec_for(study, {}, 0).model == study.base.model


def test_the_grid_is_every_choice_and_integer_and_no_float(tmp_path):
    study = load_study(write_study(tmp_path, search={
        "model.depth": {"int": [1, 5], "step": 2}, "model.width": {"choice": [32, 64]},
        "train.lr": {"float": [1e-4, 1e-2]}}))
    assert grid(study) == {"model.depth": [1, 3, 5], "model.width": [32, 64]}
