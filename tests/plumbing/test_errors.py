"""User errors: one line per problem, naming file, line and field where they are known."""

import pytest

from workbench.plumbing.errors import DataError, FitError, Issue, LaunchError, SpecError, StorageError, UserError


def test_an_issue_reads_file_line_field_message():
    assert str(Issue("s.yaml", 4, "model.depth", "must be >= 1")) == "s.yaml:4: model.depth: must be >= 1"
    assert str(Issue("s.yaml", None, "model.depth", "bad")) == "s.yaml: model.depth: bad"
    assert str(Issue("s.yaml", 6, "", "YAML syntax error")) == "s.yaml:6: YAML syntax error"


def test_a_spec_error_is_one_line_per_issue():
    issues = [Issue("a.yaml", 1, "x", "one"), Issue("a.yaml", 2, "y", "two")]
    e = SpecError(issues)
    assert e.issues == issues and str(e) == "a.yaml:1: x: one\na.yaml:2: y: two"


@pytest.mark.parametrize("kind", [SpecError, DataError, StorageError, LaunchError, FitError])
def test_every_user_facing_error_is_a_user_error(kind):
    assert issubclass(kind, UserError)
