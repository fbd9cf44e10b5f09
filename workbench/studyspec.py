"""The study file: a base spec, a search space over dotted spec fields, objectives, a sampler and
pruner, a trial budget, baselines to run first, and an optional scaling ladder."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from workbench.spec import FlopsConvention


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class _Param(_Section):
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


class FloatParam(_Param):
    """A real range."""

    float: tuple[float, float]
    """[low, high]."""
    log: bool = False
    """Sample on a log scale (for learning rates, scales, ...)."""


class ChoiceParam(_Param):
    """One of a list of values."""

    choice: list[Any] = Field(min_length=1)
    """The values (numbers, strings, booleans)."""
    divides: str | None = None
    """Keep only the values that divide this other field's value (e.g. kv_heads dividing
    model.heads); each such value of the other field gets its own parameter."""


Param = Union[IntParam, FloatParam, ChoiceParam]

OBJECTIVES = {"val_bpb": "minimize", "val_loss": "minimize", "params": "minimize",
              "flops": "minimize", "tokens_per_s": "maximize", "wall_time": "minimize",
              # the evaluation suite of the finished model (after fine-tuning, when there is a phase)
              "top1": "maximize", "completion_exact": "maximize", "completion_bleu": "maximize",
              "int8_bpb": "minimize",
              # two-phase runs only
              "finetune_val_bpb": "minimize", "finetune_val_loss": "minimize",
              "finetune_gain_bpb": "maximize", "forgetting_bpb": "minimize"}
FINETUNE_OBJECTIVES = ("finetune_val_bpb", "finetune_val_loss", "finetune_gain_bpb", "forgetting_bpb")
# Objectives a pruner can judge from the evaluation curve, and the curve quantity it then watches.
PRUNABLE = {"val_bpb": "val_bpb", "val_loss": "val_loss", "int8_bpb": "val_bpb",
            "finetune_val_bpb": "val_bpb", "finetune_val_loss": "val_loss"}
CONSTRAINT_QUANTITIES = ("params", "nonembedding_params", "flops_per_token", "memory", "tokens")


class SamplerSpec(_Section):
    """The Optuna sampler, named explicitly so results do not change with Optuna's defaults."""

    kind: Literal["tpe", "random", "grid", "cmaes", "gp", "nsga2"] = "tpe"
    """tpe, random, grid (choices and integer ranges only), cmaes, gp, nsga2 (several objectives)."""
    seed: int = 0
    """Seed; worker i uses seed + i so parallel workers do not propose the same trials."""


class PrunerSpec(_Section):
    """Stopping unpromising trials early on their intermediate evaluation bpb."""

    kind: Literal["none", "median", "successive_halving", "hyperband"] = "median"
    """none, median, successive_halving or hyperband (single-objective studies only)."""
    warmup_evals: int = Field(1, ge=0)
    """Evaluations a trial always gets before it can be pruned (median pruner)."""


class LadderSpec(_Section):
    """A designed grid of model sizes and budgets for scaling fits. Every point is a trial."""

    sizes: list[dict[str, Any]] = Field(min_length=1)
    """Model sizes, each a mapping of dotted spec fields, e.g. {model.depth: 2, model.width: 128}."""
    flops: list[float] | None = None
    """Compute budgets (IsoFLOP design): each point trains flops / flops-per-token tokens."""
    tokens: list[float] | None = None
    """Token budgets: an explicit grid of sizes x tokens."""
    groups: list[dict[str, Any]] = [{}]
    """Variants crossed with the grid (e.g. each positional scheme), as dotted-field mappings."""
    flops_convention: FlopsConvention = "6N+attn"
    """Convention turning a compute budget into tokens."""

    @model_validator(mode="after")
    def _one_axis(self) -> LadderSpec:
        if (self.flops is None) == (self.tokens is None):
            raise PydanticCustomError("ladder", "give exactly one of flops or tokens")
        return self


class ScalingSpec(_Section):
    """What the scaling fits and report use by default."""

    x: Literal["flops", "params", "tokens"] = "flops"
    """The axis losses are fitted against."""
    group_by: str | None = None
    """A dotted spec field whose values are fitted and compared separately."""
    loss: Literal["val_bpb", "val_loss", "finetune_val_bpb", "finetune_val_loss"] = "val_bpb"
    """The loss fitted: pretraining, or after fine-tuning (against pretraining compute)."""


class HeartbeatSpec(_Section):
    """How a dead worker's trial is noticed and retried."""

    interval: float = Field(5.0, gt=0)
    """Seconds between a running trial's heartbeats."""
    grace: float = Field(60.0, gt=0)
    """A running trial silent this long is failed and retried (a dead worker on this machine is
    noticed at once)."""


class StudySpec(_Section):
    """A search over specs, run as an Optuna study."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Study name: the Optuna study name and its run folder."""
    description: str = ""
    """Free text for people."""
    base: str | dict[str, Any]
    """The base spec: a file relative to this one, or an inline spec mapping."""
    search: dict[str, Param] = {}
    """Dotted spec fields mapped to distributions: {int: [lo, hi]}, {float: [lo, hi], log: true},
    {choice: [...]}; any may carry `when:` (conditional) and choices `divides:`."""
    constraints: list[str] = []
    """Checked before training, e.g. "params <= 5e6"; quantities: params, nonembedding_params,
    flops_per_token, memory (bytes), tokens. An infeasible sample is recorded, never trained."""
    objectives: list[str | dict[str, Literal["minimize", "maximize"]]] = ["val_bpb"]
    """One or more of val_bpb, val_loss, params, flops, tokens_per_s, wall_time; a mapping
    {name: maximize} overrides the usual direction. Several give a Pareto front."""
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

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: list) -> list:
        for item in value:
            for name in [item] if isinstance(item, str) else item:
                if name not in OBJECTIVES:
                    raise PydanticCustomError("objective", "unknown objective {name!r}; one of {known}",
                                              {"name": name, "known": ", ".join(OBJECTIVES)})
        return value

    @field_validator("constraints")
    @classmethod
    def _parse_constraints(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_constraint(text)
        return value

    def directions(self) -> list[tuple[str, str]]:
        out = []
        for item in self.objectives:
            out += [(item, OBJECTIVES[item])] if isinstance(item, str) else list(item.items())
        return out

    def fingerprint(self, base_digest: str) -> str:
        """What must not change between runs of one study: the space and what is measured."""
        data = self.model_dump(mode="json", include={"search", "objectives", "ladder", "enqueue", "constraints"})
        blob = json.dumps({"base": base_digest, **data}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_constraint(text: str) -> tuple[str, str, float]:
    parts = text.split()
    if len(parts) != 3 or parts[0] not in CONSTRAINT_QUANTITIES or parts[1] not in ("<=", ">=", "<", ">"):
        raise PydanticCustomError("constraint", "expected 'QUANTITY OP NUMBER' with QUANTITY one of "
                                  "{known} and OP one of <=, >=, <, > (got {text!r})",
                                  {"known": ", ".join(CONSTRAINT_QUANTITIES), "text": text})
    try:
        return parts[0], parts[1], float(parts[2])
    except ValueError:
        raise PydanticCustomError("constraint", "{number!r} is not a number", {"number": parts[2]}) from None
