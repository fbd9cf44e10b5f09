"""The `workbench` command line. Each command is a thin shell over a library function; errors a
user can cause print one line per problem (file:line: field: message) and exit 2."""

from workbench.cli import scaling, specs, study  # noqa: F401  (each registers its commands)
from workbench.cli.app import app


def main() -> None:
    app()
