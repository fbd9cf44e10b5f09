"""The Optuna samplers and pruners a study can name, each one table entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import optuna

from workbench.study.roles import filtered_study, role


@dataclass(frozen=True)
class Sampler:
    doc: str
    make: Callable[[int, dict[str, list[Any]]], optuna.samplers.BaseSampler]
    """(seed, the search space as a grid of values) to a sampler."""


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its `study.stop()` once every cell is taken: that call is
    only allowed inside `optimize`, so in a worker it raised inside `tell` and left the last
    trial running. A worker ends by itself when the discrete space is exhausted."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


SAMPLERS: dict[str, Sampler] = {
    "tpe": Sampler("tree-structured Parzen estimator", lambda seed, grid: optuna.samplers.TPESampler(seed=seed)),
    "random": Sampler("independent uniform draws", lambda seed, grid: optuna.samplers.RandomSampler(seed=seed)),
    "grid": Sampler("every combination (choices and integer ranges only)", lambda seed, grid: _Grid(grid, seed=seed)),
    "cmaes": Sampler("CMA evolution strategy", lambda seed, grid: optuna.samplers.CmaEsSampler(
        seed=seed, warn_independent_sampling=False)),
    "gp": Sampler("Gaussian-process Bayesian optimisation", lambda seed, grid: optuna.samplers.GPSampler(seed=seed)),
    "nsga2": Sampler("NSGA-II (several objectives)", lambda seed, grid: optuna.samplers.NSGAIISampler(seed=seed)),
}
"""Every sampler by name: a study's `sampler.kind` accepts exactly these."""


class SearchView(optuna.samplers.BaseSampler):
    """A named sampler that learns from the search's own trials only: the searched ones and the
    baselines, which share its budget. Ladder points, validation runs and branches train other
    budgets and would mislead it; and having no parameters, one of them would empty the
    intersection search space that GP and CMA-ES sample in, leaving them sampling at random."""

    def __init__(self, inner: optuna.samplers.BaseSampler):
        self.inner = inner

    @staticmethod
    def _view(study: optuna.Study) -> optuna.Study:
        return filtered_study(study, lambda t: role(t.user_attrs) in ("search", "baseline"))

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(self._view(study), trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(self._view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


@dataclass(frozen=True)
class Pruner:
    doc: str
    make: Callable[[], optuna.pruners.BasePruner]


PRUNERS: dict[str, Pruner] = {
    "none": Pruner("never prune", optuna.pruners.NopPruner),
    "median": Pruner("stop a trial below the median of earlier trials at the same step",
                     lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0, n_min_trials=1)),
    "successive_halving": Pruner("asynchronous successive halving", optuna.pruners.SuccessiveHalvingPruner),
    "hyperband": Pruner("Hyperband", optuna.pruners.HyperbandPruner),
}
"""Every pruner by name: a study's `pruner.kind` accepts exactly these."""


class GroupedPruner(optuna.pruners.BasePruner):
    """A named pruner that compares a searched trial only with the searched trials of its own
    group (the same budget and schedule, the trial's `group` attribute), each group with its own
    pruner state. It reads through a filtered view of the storage, so every Optuna pruner,
    Hyperband's brackets included, sees nothing outside the group."""

    def __init__(self, make: Callable[[], optuna.pruners.BasePruner]):
        self._make = make
        self._pruners: dict[str, optuna.pruners.BasePruner] = {}

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        group = trial.user_attrs.get("group")
        if group is None or role(trial.user_attrs) != "search":
            return False               # designed points and ungrouped trials run to the end
        pruner = self._pruners.setdefault(group, self._make())
        grouped = filtered_study(study, lambda t: role(t.user_attrs) == "search" and t.user_attrs.get("group") == group,
                                 pruner=pruner)
        return pruner.prune(grouped, trial)
