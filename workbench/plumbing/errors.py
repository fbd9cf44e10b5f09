"""Errors a user can cause and fix. Each is one line per problem naming where and what; the
command line prints them and exits 2, never with a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """A problem with the user's input or environment; str() is one line per problem."""


@dataclass(frozen=True)
class Issue:
    """One problem in a spec or study file: where (file, line, field) and what."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(UserError):
    """One or more problems with a spec or study file."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("\n".join(map(str, issues)))


class DataError(UserError):
    """A corpus that cannot be read; names the path or field at fault."""


class StorageError(UserError):
    """The storage cannot be reached or does not hold what was asked for."""


class LaunchError(UserError):
    """A data-parallel job failed; names the exit code, the run folder and the first error."""


class FitError(UserError):
    """A table of runs that cannot be fitted as asked; names the file and the column."""


class OutputError(UserError):
    """A place the workbench must write to is not a writable folder; names the path."""


class RunFolderError(UserError):
    """A run folder that is missing, incomplete or damaged; names the folder and the file."""
