"""`workbench validate`, `schema` and `describe`: every problem at once, the JSON Schema with
field docs, budgets in words, and bad input as one line with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from support import ROOT
from workbench.cli import app

BROKEN = Path(__file__).parent.parent / "broken"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_validate_reports_all_files_without_traceback():
    result = _cli("validate", ROOT / "specs" / "quickstart.yaml", BROKEN / "unknown-key.yaml",
                  BROKEN / "yaml-syntax.yaml")
    assert result.returncode == 1
    assert "ok  " in result.stdout and "Traceback" not in result.stderr
    assert "unknown-key.yaml:6: model.dropoot: unknown field" in result.stderr
    assert "yaml-syntax.yaml:6: YAML syntax error" in result.stderr


def test_cli_schema_is_json_schema_with_field_docs():
    result = _cli("schema")
    schema = json.loads(result.stdout)
    assert "model" in schema["properties"]
    depth = schema["$defs"]["ModelSpec"]["properties"]["depth"]
    assert depth["description"] == "Number of transformer blocks."


def test_describe_shows_the_fine_tuning_budget():
    run = _cli("describe", ROOT / "specs" / "finetune-docstrings.yaml")
    assert run.returncode == 0, run.stderr
    assert "fine-tuning tokens" in run.stdout and "100,352" in run.stdout     # 1e5 rounded to whole steps


def test_a_bad_override_is_one_line_and_exit_code_2():
    result = CliRunner().invoke(app, ["describe", str(ROOT / "specs" / "quickstart.yaml"), "--set", "model.depth=0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error --set: model.depth: Input should be greater than or equal to 1")


def test_describe_as_json_is_the_accounting():
    from workbench.accounting import describe
    from workbench.specfile import load_spec
    result = CliRunner().invoke(app, ["describe", str(ROOT / "specs" / "quickstart.yaml"), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(json.dumps(describe(load_spec(ROOT / "specs" / "quickstart.yaml"))))
