"""Why a trial ran: the roles a study's trials play, one table entry each. A trial's role is its
stored `origin` attribute (retries keep it); every statistic of the search reads only `search`."""

from __future__ import annotations

from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from workbench.record import records_compute

ROLES: dict[str, str] = {
    "search": "proposed by the sampler; the searched trials share one budget and are the only ones the "
              "search's objective, best trial, history, importances and pruning read",
    "baseline": "a configuration the study file lists under `enqueue`; runs once, to the end, never pruned",
    "ladder": "a designed (size, budget, group) point of the scaling ladder; runs to the end and feeds the fits",
    "validation": "a run beyond the ladder that checks the fit's prediction (observed against predicted)",
    "branch": "an earlier token count of a searched or baseline run with a branched schedule, recorded as a "
              "run of its own (a ladder's branches are ladder points)",
}
"""Every role by name, with what it means; the trials table's `role` column holds these names."""


def role(attrs: dict[str, Any]) -> str:
    """A trial's role from its user attributes (a trial claimed before any origin was set is searched)."""
    origin = attrs.get("origin") or "search"
    if origin not in ROLES:
        raise ValueError(f"trial origin {origin!r} is not a role: expected one of {', '.join(ROLES)}")
    return origin


class _TrialFilter:
    """A storage seen through a filter: reads of trials (and the best trial) see only those
    `keep` accepts; everything else, writes included, goes to the storage itself."""

    def __init__(self, storage: optuna.storages.BaseStorage, keep: Callable[[optuna.trial.FrozenTrial], bool]):
        self._storage, self._keep = storage, keep

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states) if self._keep(t)]

    def get_best_trial(self, study_id: int) -> optuna.trial.FrozenTrial:
        return optuna.storages.BaseStorage.get_best_trial(self, study_id)    # over the kept trials only

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def filtered_study(ostudy: optuna.Study, keep: Callable[[optuna.trial.FrozenTrial], bool],
                   pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The same stored study, seen with only the trials `keep` accepts: what Optuna's pruners,
    best_trial, visualisations and importances then read."""
    return optuna.Study(ostudy.study_name, storage=_TrialFilter(ostudy._storage, keep),
                        sampler=ostudy.sampler, pruner=pruner or ostudy.pruner)


def with_role(ostudy: optuna.Study, name: str) -> optuna.Study:
    """The study seen with only the trials of one role, e.g. with_role(s, "search") for the
    search's history, best trial and importances."""
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}: expected one of {', '.join(ROLES)}")
    return filtered_study(ostudy, lambda t: role(t.user_attrs) == name)


def validation_check(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A validation run: its prediction (made before it trained), and once it has finished the
    observed loss and whether it fell inside the predicted 95% interval for one run."""
    attrs = t.user_attrs
    pred = attrs.get("prediction") or {}
    observed = (attrs.get("record") or {}).get(pred.get("loss", "val_bpb")) if t.state == TrialState.COMPLETE else None
    lo, hi, estimate = pred.get("lo"), pred.get("hi"), pred.get("estimate")
    return {"number": t.number, "status": attrs.get("status", t.state.name.lower()), "reason": attrs.get("reason"),
            "budget": attrs.get("budget"), "loss": pred.get("loss"), "predicted": estimate, "lo": lo, "hi": hi,
            "params": pred.get("params"), "tokens": pred.get("tokens"), "fields": attrs.get("overrides", {}),
            "convention": f" {pred['convention']}" if pred.get("convention") not in (None, "as given") else "",
            "model_error": pred.get("model_error"), "model_share": pred.get("model_share"),
            "observed": observed,
            "error": observed / estimate - 1 if observed is not None and estimate else None,
            "inside": lo <= observed <= hi if observed is not None and lo is not None and hi is not None else None}


def validation_checks(ostudy: optuna.Study) -> list[dict[str, Any]]:
    """Every validation run of a study that was not replaced by a retry, as validation_check."""
    return [validation_check(t) for t in ostudy.get_trials(deepcopy=False)
            if role(t.user_attrs) == "validation" and not t.user_attrs.get("retried")]


def compute_spent(trials: list[optuna.trial.FrozenTrial], convention: str = "6N+attn") -> dict[str, Any]:
    """The training compute a study's runs have spent: records_compute over its trials' records
    (those replaced by a retry left out)."""
    return records_compute([t.user_attrs["record"] for t in trials
                            if t.user_attrs.get("record") and not t.user_attrs.get("retried")], convention)
