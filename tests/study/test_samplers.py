"""Every sampler in SAMPLERS proposes valid specs; every pruner in PRUNERS builds."""

import optuna
import pytest

from support import write_study
from workbench.study.file import load_study
from workbench.study.samplers import PRUNERS, SAMPLERS
from workbench.study.space import grid, spec_for, suggest


@pytest.mark.parametrize("kind", SAMPLERS)
def test_every_named_sampler_proposes_valid_specs(tmp_path, kind):
    search = {"model.depth": {"int": [1, 3]}, "model.width": {"choice": [32, 64]}}
    if kind != "grid":
        search["train.lr"] = {"float": [1e-4, 1e-2], "log": True}
    study = load_study(write_study(tmp_path, search=search, sampler={"kind": kind, "seed": 3}))
    ostudy = optuna.create_study(sampler=SAMPLERS[kind].make(3, grid(study)), pruner=PRUNERS["median"].make())
    for i in range(4):
        trial = ostudy.ask()
        spec = spec_for(study, suggest(trial, study), trial.number)
        ostudy.tell(trial, spec.model.depth + spec.model.width / 100)
    assert len({tuple(sorted(t.params.items())) for t in ostudy.trials}) >= 2


@pytest.mark.parametrize("kind", SAMPLERS)
def test_every_named_sampler_repeats_itself_from_its_seed(tmp_path, kind):
    search = {"model.depth": {"int": [1, 3]}, "model.width": {"choice": [32, 64]}}
    study = load_study(write_study(tmp_path, search=search))

    def proposals(seed: int) -> list:
        ostudy = optuna.create_study(sampler=SAMPLERS[kind].make(seed, grid(study)))
        out = []
        for _ in range(3):
            trial = ostudy.ask()
            out.append(tuple(sorted(suggest(trial, study).items())))
            ostudy.tell(trial, 1.0)
        return out

    assert proposals(5) == proposals(5)


@pytest.mark.parametrize("kind", PRUNERS)
def test_every_named_pruner_builds(tmp_path, kind):
    study = load_study(write_study(tmp_path, pruner={"kind": kind}))
    assert isinstance(PRUNERS[study.spec.pruner.kind].make(), optuna.pruners.BasePruner)


def test_samplers_learn_from_the_search_alone_so_ladder_points_leave_gp_its_space():
    """A ladder point has no parameters: in the whole study it empties the intersection search
    space GP and CMA-ES sample in (they fall back to random draws); the search's view keeps it."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from workbench.study.samplers import SearchView

    study = optuna.create_study()
    space = {"x": FloatDistribution(0.0, 1.0)}
    for x in (0.2, 0.5, 0.8):
        study.add_trial(create_trial(params={"x": x}, distributions=space, values=[x], user_attrs={"origin": "search"}))
    study.add_trial(create_trial(values=[3.0], user_attrs={"origin": "ladder"}))
    running = study.ask()
    bare, viewed = optuna.samplers.GPSampler(seed=0), SearchView(optuna.samplers.GPSampler(seed=0))
    assert bare.infer_relative_search_space(study, running) == {}
    assert viewed.infer_relative_search_space(study, running) == space
    study.tell(running, state=TrialState.FAIL)
