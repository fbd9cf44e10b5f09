"""The base of every schema section, and named choices checked against the table of
implementations they name.

A choice field (`positional.kind`, `tokenizer.kind`, `sampler.kind`, an objective, ...) is a
plain string whose allowed values are the keys of the table beside its implementations. The table
is read when a value is validated and when the JSON Schema is made, so adding an entry to the
table is all a new variant needs: the schema, `workbench schema` and the error messages follow.
"""

from __future__ import annotations

import types
from typing import Any, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError, core_schema


FILE_SAFE = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
"""Names that are safe as one folder name (run folders, study folders): letters, digits, '.',
'-' and '_', and not '.' or '..'. Used as a pydantic `pattern`, whose errors specfile explains."""


class Section(BaseModel):
    """A part of a spec or study: unknown fields are errors, attribute docstrings document it,
    numbers are finite, and a boolean is never taken for a number (`depth: true` is an error,
    not 1)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True,
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            errors = [InitErrorDetails(type=PydanticCustomError("number_not_bool", "expected a number, got a boolean"),
                                       loc=(key,), input=value)
                      for key, value in data.items() if isinstance(value, bool) and key in cls.model_fields
                      and _numeric(cls.model_fields[key].annotation)]
            if errors:
                raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


def _numeric(annotation: Any) -> bool:
    """Whether a field takes numbers but not booleans: int, float, or either or None."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return bool({int, float} & set(options)) and bool not in options


def one_of(names: list[str]) -> str:
    """'a', 'b' or 'c': how the allowed values are listed in messages."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class Choice:
    """`Annotated[str, Choice(TABLE)]`: a string that must be a key of TABLE."""

    def __init__(self, table: Mapping[str, Any]):
        self.table = table

    def check(self, value: str) -> str:
        if value not in self.table:
            # The given value is not in the template: pydantic formats only plain {fields}, and
            # the input is in the error already (specfile adds it to the line a user reads).
            raise PydanticCustomError("choice", "expected {expected}", {"expected": one_of(list(self.table))})
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, core_schema.str_schema())

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {"type": "string", "enum": list(self.table)}
