"""The study schema (what a study file says): a base spec, a search space over dotted spec
fields, objectives, a sampler and pruner, a trial budget, baselines to run first, and an optional
scaling ladder. Named choices (objectives, samplers, pruners, constraint quantities, fittable
losses) are checked against the tables beside their implementations."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from workbench.plumbing.schema import FILE_SAFE, Choice, Section, one_of
from workbench.spec import FlopsConvention, Spec
from workbench.study.constraints import ConstraintText, parse as parse_constraint
from workbench.study.objectives import FITTABLE, OBJECTIVES
from workbench.study.samplers import PRUNERS, SAMPLERS

MAX_LADDER_TOKENS = 1e15        # a quadrillion tokens: far beyond any run this tool trains
MAX_LADDER_FLOPS = 1e30


class _Param(Section):
    when: dict[str, Any] | None = None
    """Sample this field only when every listed field has the given value (or one of a list of
    values), e.g. {model.positional.kind: rope}; otherwise the base spec's value stands."""


class IntParam(_Param):
    """An integer range, inclusive."""

    int: tuple[int, int]
    """[low, high], inclusive."""
    step: int = Field(1, ge=1)
    """Spacing of the allowed values."""
    log: bool = False
    """Sample on a log scale."""

    @model_validator(mode="after")
    def _ordered(self) -> IntParam:
        return _check_range(self, self.int)


def _check_range(param, bounds):
    low, high = bounds
    if low > high:
        raise PydanticCustomError("range", "the range [{low}, {high}] is reversed: give [low, high]",
                                  {"low": low, "high": high})
    if param.log and low <= 0:
        raise PydanticCustomError("range", "a log range needs a positive low bound (got {low})", {"low": low})
    return param


class FloatParam(_Param):
    """A real range."""

    float: tuple[float, float]
    """[low, high]."""
    log: bool = False
    """Sample on a log scale (for learning rates, scales, ...)."""

    @model_validator(mode="after")
    def _ordered(self) -> FloatParam:
        return _check_range(self, self.float)


class ChoiceParam(_Param):
    """One of a list of values."""

    choice: list[Any] = Field(min_length=1)
    """The values (numbers, strings, booleans)."""
    divides: str | None = None
    """Keep only the values that divide this other field's value (e.g. kv_heads dividing
    model.heads); each such value of the other field gets its own parameter."""


def _param_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((PARAM_TAGS[key] for key in ("int", "float", "choice") if key in value), None)
    return {IntParam: "int-range", FloatParam: "float-range", ChoiceParam: "choices"}.get(type(value))


PARAM_TAGS = {"int": "int-range", "float": "float-range", "choice": "choices"}
"""How a search field's distribution is told apart: by the key it gives (int, float or choice)."""
Param = Annotated[Union[Annotated[IntParam, Tag("int-range")], Annotated[FloatParam, Tag("float-range")],
                        Annotated[ChoiceParam, Tag("choices")]],
                  Discriminator(_param_kind, custom_error_type="distribution",
                                custom_error_message="expected {int: [lo, hi]}, {float: [lo, hi]} or {choice: [...]}")]

def _constraint(text: str) -> str:
    try:
        parse_constraint(text)
    except ValueError as e:
        raise PydanticCustomError("constraint", "{reason}", {"reason": str(e)}) from None
    return text


ObjectiveName = Annotated[str, Choice(OBJECTIVES)]

class SamplerSpec(Section):
    """The Optuna sampler, named explicitly so results do not change with Optuna's defaults."""

    kind: Annotated[str, Choice(SAMPLERS)] = "tpe"
    """tpe, random, grid (choices and integer ranges only), cmaes, gp, nsga2 (several objectives)."""
    seed: int = 0
    """Seed of the study; each worker draws its own stream from it, its index and the trials
    already stored, so parallel or resumed workers do not replay each other's proposals."""


class PrunerSpec(Section):
    """Stopping unpromising trials early on their intermediate evaluation bpb."""

    kind: Annotated[str, Choice(PRUNERS)] = "median"
    """none, median, successive_halving or hyperband (single-objective studies only)."""
    warmup_evals: int = Field(1, ge=0)
    """Evaluations a trial always gets before it can be pruned (median pruner)."""


class TuneSpec(Section):
    """Hyperparameters tuned at every ladder point, written flat beside `trials`, e.g.
    {train.lr: {float: [1e-3, 3e-2], log: true}, trials: 4}. Each point trains `trials` runs
    over a fixed design of these fields' values; the fit uses the best run of each point, and
    every run is recorded (the report shows the best value against size)."""

    trials: int = Field(4, ge=2, le=64)
    """Runs per ladder point."""
    fields: dict[str, Param] = Field(min_length=1)
    """The tuned fields (dotted spec fields) and their ranges; written flat in the file."""

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        if isinstance(value, dict) and "fields" not in value:
            return {"fields": {k: v for k, v in value.items() if k != "trials"},
                    **({"trials": value["trials"]} if "trials" in value else {})}
        return value


class ValidateSpec(Section):
    """A validation run beyond the ladder: once every ladder point has finished, the study fits
    them, predicts the compute-optimal model at this budget with a 95% interval, records the
    prediction, then trains that model and records observed against predicted."""

    flops: Annotated[float, Field(gt=0, le=MAX_LADDER_FLOPS)] | Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?x$")]
    """The budget: FLOPs (e.g. 1e12), or a factor of the largest ladder budget written like 4x."""

    def budget(self, largest: float) -> float:
        """The validation budget in FLOPs, given the largest ladder budget."""
        return largest * float(self.flops[:-1]) if isinstance(self.flops, str) else float(self.flops)


class BranchesSpec(Section):
    """Several ladder budgets from one run per size: each size trains one warmup-stable-decay
    run to the largest budget, and every smaller budget is a branch of it that decays over its
    own last `decay` fraction to the base schedule's min_lr_ratio. The branches share one warmup:
    the base schedule's warmup fraction of the smallest budget. Each branch is its own ladder
    point with its own record; the shared constant-rate part is charged once and each decay on
    its own. Adding a budget to a branched ladder starts new runs (a branch cannot be added to a
    finished run)."""

    decay: float = Field(0.2, gt=0.0, lt=1.0)
    """Fraction of each branch's tokens spent decaying."""
    shape: Literal["linear", "1-sqrt"] = "linear"
    """The decay's shape."""


class LadderSpec(Section):
    """A designed grid of model sizes and budgets for scaling fits. Every point is a trial.
    Points may be added to a running study (budgets, sizes, groups, tuning runs, a validation
    budget): finished points are kept and only the new ones train."""

    sizes: list[dict[str, Any]] = Field(min_length=1)
    """Model sizes, each a mapping of dotted spec fields, e.g. {model.depth: 2, model.width: 128}."""
    flops: list[Annotated[float, Field(gt=0, le=MAX_LADDER_FLOPS)]] | None = None
    """Compute budgets (IsoFLOP design): each point trains flops / flops-per-token tokens."""
    tokens: list[Annotated[float, Field(ge=1, le=MAX_LADDER_TOKENS)]] | None = None
    """Token budgets: an explicit grid of sizes x tokens."""
    groups: list[dict[str, Any]] = [{}]
    """Variants crossed with the grid (e.g. each positional scheme), as dotted-field mappings."""
    flops_convention: FlopsConvention = "6N+attn"
    """Convention turning a compute budget into tokens."""
    tune: TuneSpec | None = None
    """Per-point tuning of hyperparameters such as the learning rate (see TuneSpec)."""
    validate_: ValidateSpec | None = Field(None, alias="validate")
    """A validation run beyond the ladder, e.g. {flops: 4x} (see ValidateSpec)."""
    branches: BranchesSpec | None = None
    """One run per size with a branch at every budget (see BranchesSpec), e.g. {decay: 0.2}."""

    @model_validator(mode="after")
    def _one_axis(self) -> LadderSpec:
        if (self.flops is None) == (self.tokens is None):
            raise PydanticCustomError("ladder", "give exactly one of flops or tokens")
        if self.validate_ and self.tokens and isinstance(self.validate_.flops, str):
            raise PydanticCustomError("ladder", "validate: a factor like 4x needs a flops ladder; give FLOPs")
        return self


class ScalingSpec(Section):
    """What the scaling fits and report use by default."""

    x: Literal["flops", "params", "tokens"] = "flops"
    """The axis losses are fitted against."""
    group_by: str | None = None
    """A dotted spec field whose values are fitted and compared separately."""
    loss: Annotated[str, Choice(FITTABLE)] = "val_bpb"
    """The loss fitted: pretraining, or after fine-tuning (against pretraining compute)."""


class HeartbeatSpec(Section):
    """How a dead worker's trial is noticed and retried."""

    interval: float = Field(5.0, gt=0)
    """Seconds between a running trial's heartbeats."""
    grace: float = Field(60.0, gt=0)
    """A running trial silent this long is failed and retried (a dead worker on this machine is
    noticed at once)."""


class StudySpec(Section):
    """A search over specs, run as an Optuna study."""

    name: str = Field(min_length=1, max_length=100, pattern=FILE_SAFE)
    """Study name: the Optuna study name and its run folder (letters, digits, '.', '-', '_')."""
    description: str = ""
    """Free text for people."""
    base: str | dict[str, Any]
    """The base spec: a file relative to this one, or an inline spec mapping."""
    search: dict[str, Param] = {}
    """Dotted spec fields mapped to distributions: {int: [lo, hi]}, {float: [lo, hi], log: true},
    {choice: [...]}; any may carry `when:` (conditional) and choices `divides:`."""
    constraints: list[Annotated[str, ConstraintText(), AfterValidator(_constraint)]] = []
    """Checked before training, e.g. "params <= 5e6"; quantities: params, nonembedding_params,
    flops_per_token, memory (bytes), tokens. An infeasible sample is recorded, never trained."""
    objectives: list[ObjectiveName | dict[ObjectiveName, Literal["minimize", "maximize"]]] = ["val_bpb"]
    """One or more objectives by name (each with its usual direction); a mapping {name: maximize}
    overrides the direction. Several give a Pareto front."""
    sampler: SamplerSpec = SamplerSpec()
    """The sampler."""
    pruner: PrunerSpec = PrunerSpec()
    """The pruner."""
    trials: int = Field(10, ge=0)
    """Number of searched trials (baselines and ladder points come on top)."""
    enqueue: list[dict[str, Any]] = []
    """Baselines evaluated first: dotted-field mappings applied to the base spec."""
    ladder: LadderSpec | None = None
    """An optional scaling ladder."""
    scaling: ScalingSpec = ScalingSpec()
    """Defaults for fits and reports."""
    retries: int = Field(1, ge=0)
    """How often a trial interrupted by a dead worker is retried."""
    heartbeat: HeartbeatSpec = HeartbeatSpec()
    """Dead-worker detection."""

    @field_validator("objectives", mode="before")
    @classmethod
    def _known_objectives(cls, value: Any) -> Any:
        # Before the items' own checks, so an unknown name is one error naming it rather than
        # one per branch of the item's union.
        for item in value if isinstance(value, list) else []:
            for name in [item] if isinstance(item, str) else item if isinstance(item, dict) else []:
                if name not in OBJECTIVES:
                    raise PydanticCustomError("objective", "unknown objective {name}; expected {known}",
                                              {"name": repr(name), "known": one_of(list(OBJECTIVES))})
        names = [n for item in (value if isinstance(value, list) else [])
                 for n in ([item] if isinstance(item, str) else item if isinstance(item, dict) else [])]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise PydanticCustomError("objective", "{names} named more than once", {"names": ", ".join(twice)})
        return value

    def directions(self) -> list[tuple[str, str]]:
        out = []
        for item in self.objectives:
            out += [(item, OBJECTIVES[item].direction)] if isinstance(item, str) else list(item.items())
        return out

    def fingerprints(self, base_digest: str) -> dict[str, str]:
        """What must not change between runs of one study, part by part, so a refusal can name
        the part: the base spec, the search space, the objectives, the constraints and the
        convention turning ladder budgets into tokens. Everything else may change: the trial
        budget, baselines, and the ladder's points (sizes, budgets, groups, tuning, validation),
        which are matched run by run, so finished runs are kept and only new ones train."""
        data = self.model_dump(mode="json", include={"search", "objectives", "constraints"})
        parts = {"base spec": base_digest, "search space": data["search"], "objectives": data["objectives"],
                 "constraints": data["constraints"]}
        if self.ladder and self.ladder.flops:     # how its budgets became tokens
            parts["ladder flops_convention"] = self.ladder.flops_convention
        return {name: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
                for name, value in parts.items()}


@dataclass
class StudyFile:
    """A study file as loaded: what it says (`spec`, a StudySpec) and its validated base spec.
    The trials themselves live in an Optuna study in the storage (see storage.py)."""

    path: Path
    spec: StudySpec
    base_data: dict
    base: Spec

    @property
    def name(self) -> str:
        return self.spec.name
