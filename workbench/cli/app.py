"""The command line's shared parts: the Typer app, the consoles, the options several commands
take, and the guard that turns errors a user can cause into one line each and exit code 2."""

from __future__ import annotations

from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from workbench.plumbing.errors import SpecError, UserError
from workbench.specfile import load_spec, parse_override

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative architecture search and scaling laws for language models.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a field, e.g. --set model.depth=4 (repeatable).")]



study_app = typer.Typer(no_args_is_help=True, help="Run and inspect Optuna studies over specs.")
app.add_typer(study_app, name="study")
GpusOption = Annotated[Optional[int], typer.Option(
    min=1, help="Devices per trial: each trial runs as an Accelerate data-parallel job on this many "
                "GPUs (CPU processes without GPUs). Default: the base spec's train.devices.")]
StorageOption = Annotated[Optional[str], typer.Option(
    help="Optuna storage: a journal file path (default: runs/NAME/study.journal) or "
         "postgresql+psycopg://user@host/db.")]



def user_errors(fn):
    """Turn the errors a user can cause into clear lines and exit code 2, never a traceback."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            for issue in e.issues:
                err.print(f"[red]error[/red] {issue}", markup=True, soft_wrap=True)
        except (UserError, FileNotFoundError) as e:
            err.print(f"[red]error[/red] {e}", soft_wrap=True)
        raise typer.Exit(2)
    return wrapper


def spec_from(path: Path, sets: list[str] | None):
    """The spec file with its --set overrides applied."""
    return load_spec(path, dict(parse_override(s) for s in sets or []))
