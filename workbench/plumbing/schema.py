"""The base of every schema section, and named choices checked against the table of
implementations they name.

A choice field (`positional.kind`, `tokenizer.kind`, `sampler.kind`, an objective, ...) is a
plain string whose allowed values are the keys of the table beside its implementations. The table
is read when a value is validated and when the JSON Schema is made, so adding an entry to the
table is all a new variant needs: the schema, `workbench schema` and the error messages follow.
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema


class Section(BaseModel):
    """A part of a spec or study: unknown fields are errors, attribute docstrings document it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


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
