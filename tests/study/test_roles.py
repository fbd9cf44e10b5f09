"""Trial roles: one vocabulary, read from a trial's origin, and a study seen through one role
gives the search's best trial, history and importances without ladder points or baselines."""

import optuna
import pytest
from optuna.trial import TrialState

from workbench.study.roles import ROLES, role, with_role


def test_the_roles_are_search_baseline_ladder_validation_and_branch():
    assert list(ROLES) == ["search", "baseline", "ladder", "validation", "branch"] and all(ROLES.values())
    assert [role({"origin": name}) for name in ROLES] == list(ROLES)
    assert role({}) == "search"                      # claimed, origin not yet written
    with pytest.raises(ValueError, match="'tuning' is not a role"):
        role({"origin": "tuning"})


def test_a_study_seen_through_a_role_has_only_its_trials():
    ostudy = optuna.create_study()
    for origin, value, width in [("search", 3.0, 32), ("ladder", 1.0, 0), ("baseline", 2.0, 0), ("search", 2.5, 64)]:
        ostudy.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=value, user_attrs={"origin": origin},
            params={"model.width": width} if origin == "search" else {},
            distributions={"model.width": optuna.distributions.CategoricalDistribution([32, 64])}
            if origin == "search" else {}))
    assert ostudy.best_trial.number == 1                         # the ladder point, over everything
    searched = with_role(ostudy, "search")
    assert searched.best_trial.number == 3 and [t.number for t in searched.trials] == [0, 3]
    assert [t.number for t in with_role(ostudy, "ladder").trials] == [1]
    with pytest.raises(ValueError, match="unknown role"):
        with_role(ostudy, "tuning")
