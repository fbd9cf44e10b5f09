"""Schema sections forbid unknown fields and document themselves; a Choice is checked against
its table when a value is validated and when the JSON Schema is made."""

from typing import Annotated

import pytest
from pydantic import ValidationError

from workbench.plumbing.schema import Choice, Section, one_of

TABLE = {"alpha": 1, "beta": 2}


class Example(Section):
    """An example section."""

    kind: Annotated[str, Choice(TABLE)] = "alpha"
    """Which variant."""
    size: int = 1


def test_one_of_lists_names_for_messages():
    assert one_of(["a"]) == "'a'"
    assert one_of(["a", "b"]) == "'a' or 'b'"
    assert one_of(["a", "b", "c"]) == "'a', 'b' or 'c'"


def test_a_choice_outside_its_table_is_one_formatted_error():
    with pytest.raises(ValidationError) as info:
        Example(kind="gamma")
    [error] = info.value.errors()
    assert (error["loc"], error["type"], error["input"]) == (("kind",), "choice", "gamma")
    assert error["msg"] == "expected 'alpha' or 'beta'"       # every placeholder filled


def test_the_table_is_read_when_validating_and_when_making_the_schema(monkeypatch):
    monkeypatch.setitem(TABLE, "gamma", 3)
    assert Example(kind="gamma").kind == "gamma"
    field = Example.model_json_schema()["properties"]["kind"]
    assert field["enum"] == ["alpha", "beta", "gamma"] and field["description"] == "Which variant."


def test_sections_forbid_unknown_fields_and_check_assignments():
    with pytest.raises(ValidationError, match="extra"):
        Example(colour="red")
    e = Example()
    with pytest.raises(ValidationError):
        e.kind = "delta"
    with pytest.raises(ValidationError):
        e.size = "big"
