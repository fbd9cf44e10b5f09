"""The numbers of a scaling fit and the one way they are written: a number that may be missing
(non-finite numbers are missing, written as null in JSON), fields that are left out when they do
not apply, and an estimate with its 95% interval."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _finite(value: Any) -> Any:
    """Numbers (numpy's too) as Python floats; NaN and infinities as None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else None


Num = Annotated[float | None, BeforeValidator(_finite)]
"""A number that may be missing (a non-finite value is missing)."""

Column = list[float | None]
"""One number per run, for columns of up to millions of runs: validated as plain floats (a
Python check per value, as Num has, took seconds there), non-finite values written as null in the
JSON like Num's missing ones."""


def absent() -> Any:
    """A field left out of the JSON when it does not apply (is None)."""
    return Field(None, exclude_if=lambda v: v is None)


def num(value: float | None) -> str:
    """How every number of a fit is written: 4 significant digits, or scientific notation for
    the very large and very small; '-' when missing."""
    if value is None:
        return "-"
    return f"{value:.3e}" if abs(value) >= 1e5 or (value and abs(value) < 1e-3) else f"{value:.4g}"


class Plain(BaseModel):
    """The base of every part of a fit result: unknown fields are errors, aliases are written."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True,
                              validate_assignment=True)


class Estimate(Plain):
    """A point estimate with its 95% bootstrap interval (lo, hi: None without one). A fixed
    parameter says so; a tied one names the parameter it equals."""

    estimate: Num
    lo: Num = None
    hi: Num = None
    fixed: bool | None = absent()
    tied_to: str | None = absent()

    def interval(self) -> str:
        """The interval in words: '[lo, hi]', 'fixed', '= alpha' or '(no interval)'."""
        if self.fixed:
            return "fixed"
        if self.tied_to:
            return f"= {self.tied_to}"
        return "(no interval)" if self.lo is None else f"[{num(self.lo)}, {num(self.hi)}]"

    def text(self) -> str:
        """The estimate and its interval, e.g. '0.3412 [0.3301, 0.3525]'."""
        if self.lo is None and not self.fixed and not self.tied_to:
            return num(self.estimate)
        return f"{num(self.estimate)} {self.interval()}"
