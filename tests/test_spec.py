"""Spec files: every example validates, every broken file fails with file:line and field."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, SPECS
from workbench.spec import Spec
from workbench.plumbing.errors import SpecError
from workbench.specfile import load_spec

BROKEN = sorted(p for p in (Path(__file__).parent / "broken").glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_specs_validate(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert Spec.model_validate(spec.model_dump()) == spec  # resolved specs round-trip


def _expectation(path: Path) -> tuple[int, str, str]:
    line, field, text = re.match(r"# expect: (\d+) (\S+) (.+)", path.read_text().splitlines()[0]).groups()
    return int(line), field, text


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_specs_name_file_line_and_field(path):
    line, field, text = _expectation(path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    issue = info.value.issues[0]
    assert (issue.file, issue.line) == (str(path), line)
    if field != "-":
        assert issue.field == field
    assert text in issue.message
    assert str(issue).startswith(f"{path}:{line}: ")


def test_every_error_is_reported_at_once(tmp_path):
    bad = tmp_path / "many.yaml"
    bad.write_text("name: many\nmodel:\n  depth: x\n  width: 64\n  heads: 4\n  context: 32\n"
                   "  colour: red\ntrain: {budget: {steps: 1}, batch_tokens: 64, lr: -1}\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    found = {(i.line, i.field) for i in info.value.issues}
    assert found == {(3, "model.depth"), (7, "model.colour"), (8, "train.lr")}


def test_extends_overrides_and_keeps_base_lines(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nmodel: {depth: 2, width: 64, heads: 4, context: 32}\n"
                                        "train: {budget: {steps: 1}, batch_tokens: 64}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\nmodel: {depth: 3}\n"
                                         "train: {batch_tokens: 48}\n")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "child.yaml")
    [issue] = info.value.issues
    assert (Path(issue.file).name, issue.line, issue.field) == ("child.yaml", 4, "train.batch_tokens")
    spec = load_spec(tmp_path / "child.yaml", {"train.batch_tokens": 64})
    assert (spec.model.depth, spec.model.width, spec.name) == (3, 64, "child")


def test_yaml_exponent_floats_and_data_paths(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\nmodel: {depth: 1, width: 32, heads: 2, context: 16}\n"
                                     "data: {source: files, paths: [corpus/*.txt]}\n"
                                     "train: {budget: {tokens: 2e6}, batch_tokens: 32, lr: 1e-3}\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.train.budget.tokens == 2_000_000 and spec.train.lr == 1e-3
    assert spec.data.paths == [str(tmp_path / "corpus" / "*.txt")]


def test_digest_ignores_names_but_not_architecture():
    a = load_spec(ROOT / "specs" / "quickstart.yaml")
    b = a.model_copy(update={"name": "other"})
    c = load_spec(ROOT / "specs" / "quickstart.yaml", {"model.depth": 3})
    assert a.digest() == b.digest() != c.digest()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_validate_reports_all_files_without_traceback():
    broken = Path(__file__).parent / "broken"
    result = _cli("validate", ROOT / "specs" / "quickstart.yaml", broken / "unknown-key.yaml",
                  broken / "yaml-syntax.yaml")
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


def test_readme_examples_validate(tmp_path):
    """The spec and study shown in the README are real, valid files."""
    import shutil

    from workbench.study.file import load_study
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 3
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    (tmp_path / "studies").mkdir()
    (tmp_path / "specs" / "readme.yaml").write_text(blocks[0])
    (tmp_path / "specs" / "readme-tuned.yaml").write_text(blocks[1])
    (tmp_path / "studies" / "readme.yaml").write_text(blocks[2])
    assert load_spec(tmp_path / "specs" / "readme.yaml").name == "gpt-tiny"
    tuned = load_spec(tmp_path / "specs" / "readme-tuned.yaml")
    assert tuned.finetune.data.prompt == "instruction" and tuned.finetune.recipe(tuned.train).lr == 1e-3
    assert load_study(tmp_path / "studies" / "readme.yaml").name == "positional"


def test_digests_survive_new_fields_at_their_defaults():
    """Study fingerprints are built from the base spec's digest: fields added later (fine-tuning,
    prompt columns, devices, evaluation-suite sizes) must not change the digest of a spec that
    leaves them out, or every study begun earlier would refuse to resume. This value is the
    digest of specs/quickstart.yaml as the first released schema computed it."""
    spec = load_spec(ROOT / "specs" / "quickstart.yaml")
    assert spec.digest() == "36ab1fd8a347"
    changed = spec.model_copy(update={"train": spec.train.model_copy(update={"devices": 2, "completions": 0})})
    assert changed.digest() == spec.digest()
    assert load_spec(ROOT / "specs" / "finetune-docstrings.yaml").digest() != spec.digest()
