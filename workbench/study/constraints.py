"""Constraints on a sampled spec, checked before anything trains ("params <= 5e6"): the
quantities they can name, each read from the spec alone, and the parser of their text."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable

from pydantic import GetJsonSchemaHandler
from pydantic_core import core_schema

from workbench import accounting
from workbench.spec import Spec


@dataclass(frozen=True)
class Quantity:
    doc: str
    get: Callable[[Spec], float]


QUANTITIES: dict[str, Quantity] = {
    "params": Quantity("total parameters", lambda s: accounting.count_params(s).total),
    "nonembedding_params": Quantity("non-embedding parameters", lambda s: accounting.count_params(s).nonembedding),
    "flops_per_token": Quantity("training FLOPs per token (6N+attn)", lambda s: accounting.flops_per_token(s)["6N+attn"]),
    "memory": Quantity("estimated training memory in bytes", lambda s: accounting.memory_estimate(s)["total"]),
    "tokens": Quantity("training tokens", lambda s: accounting.budget_tokens(s) or 0),
}
"""Every quantity a constraint can name."""

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def pattern() -> str:
    """A regular expression matching the text of every constraint `parse` accepts the shape of,
    naming each quantity and operator (read from the tables, so a new quantity needs no edit)."""
    names = "|".join(map(re.escape, QUANTITIES))
    ops = "|".join(map(re.escape, OPERATORS))
    return rf"^\s*({names})\s+({ops})\s+\S+\s*$"


class ConstraintText:
    """`Annotated[str, ConstraintText()]`: a constraint's text, whose JSON Schema pattern names
    every quantity, so editors and `StudySpec.model_json_schema()` list them."""

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {**handler(schema), "pattern": pattern()}


def parse(text: str) -> tuple[str, str, float]:
    """'QUANTITY OP NUMBER' to its parts; ValueError with the reason otherwise."""
    parts = text.split()
    if len(parts) != 3 or parts[0] not in QUANTITIES or parts[1] not in OPERATORS:
        raise ValueError(f"expected 'QUANTITY OP NUMBER' with QUANTITY one of {', '.join(QUANTITIES)} "
                         f"and OP one of {', '.join(OPERATORS)} (got {text!r})")
    try:
        bound = float(parts[2])
    except ValueError:
        raise ValueError(f"{parts[2]!r} is not a number (in {text!r})") from None
    if not math.isfinite(bound):
        raise ValueError(f"{parts[2]!r} is not a finite number (in {text!r})")
    return parts[0], parts[1], bound


def violated(spec: Spec, constraints: list[str]) -> str | None:
    """Why `spec` breaks the first constraint it breaks, or None when it keeps them all."""
    for text in constraints:
        name, op, bound = parse(text)
        value = QUANTITIES[name].get(spec)
        if not OPERATORS[op](value, bound):
            return f"constraint {text!r} violated: {name} = {value:.4g}"
    return None
