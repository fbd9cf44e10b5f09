"""Spec files: every example validates, every broken file fails with file:line and field,
`extends` chains keep their lines, and --set overrides are read as YAML."""

import re
from pathlib import Path

import pytest

from support import SPECS
from workbench.plumbing.errors import SpecError
from workbench.spec import Spec
from workbench.specfile import load_spec, merge, parse_override, read_yaml

BROKEN = sorted(p for p in (Path(__file__).parent / "broken").glob("*.yaml") if not p.name.startswith("_"))
TINY = "name: t\nmodel: {depth: 1, width: 32, heads: 2, context: 16}\ntrain: {budget: {steps: 1}, batch_tokens: 32}\n"


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


def test_an_error_in_the_base_names_the_base_file(tmp_path):
    (tmp_path / "base.yaml").write_text(TINY.replace("heads: 2", "heads: 3"))
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\n")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "child.yaml")
    [issue] = info.value.issues
    assert (Path(issue.file).name, issue.line, issue.field) == ("base.yaml", 2, "model.heads")


def test_circular_and_malformed_extends_are_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(SpecError, match=r"/b.yaml:1: extends: circular: a.yaml"):
        load_spec(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("name: c\nextends: [x.yaml]\n")
    with pytest.raises(SpecError, match=r"c.yaml:2: extends: expected a file name"):
        load_spec(tmp_path / "c.yaml")


def test_merge_is_deep_and_replaces_lists_and_scalars_whole():
    base = {"model": {"depth": 2, "mlp": {"kind": "gelu", "ratio": 4}}, "data": {"paths": ["a", "b"]}}
    over = {"model": {"mlp": {"ratio": 2}}, "data": {"paths": ["c"]}, "name": "x"}
    assert merge(base, over) == {"model": {"depth": 2, "mlp": {"kind": "gelu", "ratio": 2}},
                                 "data": {"paths": ["c"]}, "name": "x"}
    assert base["model"]["mlp"]["ratio"] == 4          # the base is not changed


def test_overrides_are_yaml_values_and_their_errors_say_set(tmp_path):
    assert parse_override("model.depth=4") == ("model.depth", 4)
    assert parse_override("train.lr = 1e-3") == ("train.lr", 1e-3)
    assert parse_override("model.positional={kind: rope, theta: 500}") == \
        ("model.positional", {"kind": "rope", "theta": 500})
    with pytest.raises(SpecError, match="--set: model.depth: expected FIELD=VALUE"):
        parse_override("model.depth")
    (tmp_path / "s.yaml").write_text(TINY)
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "s.yaml", {"model.depth": 0})
    [issue] = info.value.issues
    assert (issue.file, issue.line, issue.field) == ("--set", None, "model.depth")
    assert str(issue).startswith("--set: model.depth: ")


def test_a_file_that_is_not_a_mapping_or_not_there_is_one_error(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="list.yaml:1: expected a mapping of fields"):
        read_yaml(tmp_path / "list.yaml")
    with pytest.raises(SpecError, match="nowhere.yaml: file not found"):
        load_spec(tmp_path / "nowhere.yaml")


def test_yaml_exponent_floats_and_data_paths(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\nmodel: {depth: 1, width: 32, heads: 2, context: 16}\n"
                                     "data: {source: files, paths: [corpus/*.txt]}\n"
                                     "train: {budget: {tokens: 2e6}, batch_tokens: 32, lr: 1e-3}\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.train.budget.tokens == 2_000_000 and spec.train.lr == 1e-3
    assert spec.data.paths == [str(tmp_path / "corpus" / "*.txt")]


def test_fine_tuning_paths_are_relative_to_the_file_naming_them(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.yaml").write_text(TINY + "finetune: {data: {source: jsonl, paths: [qa.jsonl]}, "
                                              "budget: {steps: 1}}\n")
    (tmp_path / "child.yaml").write_text("extends: base/b.yaml\ndata: {source: files, paths: [/abs/x.txt]}\n")
    spec = load_spec(tmp_path / "child.yaml")
    assert spec.finetune.data.paths == [str(tmp_path / "base" / "qa.jsonl")]
    assert spec.data.paths == ["/abs/x.txt"]
