"""Pruning compares a searched trial only with searched trials of its own budget and schedule,
at the same number of tokens seen: checked on stored trials for every named pruner, and on a real
study whose search space mixes two budgets."""

import optuna
import pytest
from optuna.trial import TrialState

from support import BASE, write_study
from workbench.study.file import load_study
from workbench.study.samplers import PRUNERS, GroupedPruner
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise


def _add(ostudy, group, values, origin="search", state=TrialState.COMPLETE):
    ostudy.add_trial(optuna.trial.create_trial(
        state=state, value=values[-1] if state == TrialState.COMPLETE else None,
        intermediate_values={128 * (i + 1): v for i, v in enumerate(values)},
        user_attrs={"origin": origin, "group": group}))
    return ostudy.get_trials(deepcopy=False)[-1]


def test_a_trial_is_judged_only_by_searched_trials_of_its_own_group():
    ostudy = optuna.create_study()
    for _ in range(2):
        _add(ostudy, "short", [1.0, 0.9])
        _add(ostudy, "long", [0.5, 0.4], origin="ladder")    # designed points never judge the search
    trial = _add(ostudy, "long", [5.0, 4.0], state=TrialState.RUNNING)
    assert PRUNERS["median"].make().prune(ostudy, trial)    # the plain pruner would compare across groups
    grouped = GroupedPruner(PRUNERS["median"].make)
    assert not grouped.prune(ostudy, trial)
    for _ in range(2):
        _add(ostudy, "long", [1.0, 0.9])
    assert grouped.prune(ostudy, trial)                     # now its own group has better trials
    ladder = _add(ostudy, "long", [9.0, 9.0], origin="ladder", state=TrialState.RUNNING)
    assert not grouped.prune(ostudy, ladder)


@pytest.mark.parametrize("kind", list(PRUNERS))
def test_every_named_pruner_decides_as_if_the_other_groups_were_absent(kind):
    mixed, alone = optuna.create_study(study_name="m"), optuna.create_study(study_name="a")
    for i in range(6):
        _add(mixed, "other", [0.1 * (i + 1)] * 8)
        for ostudy in (mixed, alone):
            _add(ostudy, "mine", [1.0 + 0.2 * i - 0.01 * s for s in range(8)])
    for ostudy in (mixed, alone):
        _add(ostudy, "mine", [2.5] * 8, state=TrialState.RUNNING)
    decisions = [GroupedPruner(PRUNERS[kind].make).prune(s, s.get_trials(deepcopy=False)[-1]) for s in (mixed, alone)]
    assert decisions[0] == decisions[1]


def test_a_search_over_two_budgets_never_prunes_across_them(tmp_path, monkeypatch):
    """Half-warmup schedules: at equal tokens the 8-step trials are still warming up while the
    4-step ones are done, so a pruner comparing across budgets would stop the long ones."""
    monkeypatch.chdir(tmp_path)
    base = {**BASE, "train": {**BASE["train"], "eval_every": 1, "schedule": {"warmup": 0.5}}}
    # Sampler seed 6 proposes budgets 4, 4, 8, 8, 4, 4: two short trials finish before the
    # first long one starts, so comparing across budgets would prune it at its first evaluation.
    study = load_study(write_study(tmp_path, base=base, trials=6, pruner={"kind": "median", "warmup_evals": 0},
                                   sampler={"kind": "random", "seed": 6},
                                   search={"train.budget.steps": {"choice": [4, 8]}, "train.lr": {"float": [8e-3, 1e-2]}}))
    url = str(tmp_path / "p.journal")
    supervise(study, url, workers=1, poll=0.2)
    trials = [t for t in load_existing(study, url).get_trials() if t.user_attrs.get("status") != "duplicate"]
    groups = {t.number: t.user_attrs["group"] for t in trials}
    assert len(set(groups.values())) == 2
    for t in trials:            # keyed by tokens seen: whole batches of 128 tokens
        assert t.intermediate_values and all(k % 128 == 0 for k in t.intermediate_values)
    long = [t for t in trials if t.params["train.budget.steps"] == 8]
    short = [t for t in trials if t.params["train.budget.steps"] == 4 and t.state == TrialState.COMPLETE]
    assert long and short
    # Across budgets the long trials look worse at their first evaluation ...
    assert all(t.intermediate_values[128] > s.intermediate_values[128] for t in long for s in short)
    # ... yet the first two long trials always finish (their group starts empty), a long trial
    # finishes after short ones did, and every pruned trial was behind the median of the trials
    # of its own budget finished before it.
    assert all(t.state == TrialState.COMPLETE for t in long[:2])
    assert any(t.state == TrialState.COMPLETE and t.number > min(s.number for s in short) for t in long)
    for t in trials:
        if t.state != TrialState.PRUNED:
            continue
        step = t.last_step
        peers = [p.intermediate_values[step] for p in trials if p.state == TrialState.COMPLETE and p.number < t.number
                 and groups[p.number] == groups[t.number] and step in p.intermediate_values]
        assert len(peers) >= 2 and t.intermediate_values[step] > sorted(peers)[(len(peers) - 1) // 2]
