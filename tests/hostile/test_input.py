"""Hostile and careless input: every bad spec, study or override is one clear line per problem
naming where and what, exit code 1 (validate) or 2, never a traceback and never silent acceptance."""

import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from support import BASE, ROOT, write_study
from workbench.cli import app
from workbench.plumbing.errors import SpecError
from workbench.specfile import load_spec, parse_override
from workbench.study.file import load_study

QUICKSTART = (ROOT / "specs" / "quickstart.yaml").read_text()
runner = CliRunner()


def validate(path: Path):
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb (10^9 values)": (bomb(), "alias bomb"),
    "duplicate key": (QUICKSTART + "name: again\n", "duplicate key 'name'"),
    "python tag on a mapping": (QUICKSTART.replace("model:", "model: !!python/object/new:os.system\n  args: [ls]\nold:", 1),
                                "tag tag:yaml.org,2002:python/object/new:os.system is not allowed"),
    "binary value": (QUICKSTART.replace("name: quickstart", "name: !!binary aGVsbG8="), "binary is not allowed"),
    "complex key": (QUICKSTART + "? [a, b]\n: 1\n", "a key must be a plain name"),
    "non-UTF-8 file": (QUICKSTART.replace("# The quickstart", "# caf\xe9").encode("latin-1"), "not a UTF-8 text file"),
    "control character": (QUICKSTART + "\x00\n", "not YAML text"),
    "boolean depth": (QUICKSTART.replace("depth: 2", "depth: true"), "model.depth: expected a number, got a boolean"),
    "infinite learning rate": (QUICKSTART.replace("lr: 3e-3", "lr: .inf"), "train.lr: Input should be a finite number"),
    "name climbing out of runs/": (QUICKSTART.replace("name: quickstart", "name: ../../x"), "not a safe folder name"),
    "absolute name": (QUICKSTART.replace("name: quickstart", "name: /abs/x"), "not a safe folder name"),
    "impossible memory": (QUICKSTART.replace("width: 128", "width: 65536").replace("depth: 2", "depth: 64"),
                          "exceeds this machine"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_spec_files_are_one_clear_line(tmp_path, case):
    text, expected = HOSTILE[case]
    path = tmp_path / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = validate(path)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and expected in errors[0] and str(path) in errors[0], result.output


def test_oversized_files_are_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(QUICKSTART + "# " + "x" * (2 << 20) + "\n")
    assert "larger than any spec" in validate(path).output


@pytest.mark.parametrize("override,expected", [
    ("model.depth=[1", "YAML syntax error"),
    ("model.depth=!!python/object:os.system 1", "is not allowed"),
    ("=3", "expected FIELD=VALUE"),
    ("model..depth=3", "expected FIELD=VALUE"),
    ("model.depth", "expected FIELD=VALUE"),
])
def test_bad_overrides_are_one_clear_line(override, expected):
    with pytest.raises(SpecError, match=expected):
        parse_override(override)
    result = runner.invoke(app, ["describe", str(ROOT / "specs" / "quickstart.yaml"), "--set", override])
    assert result.exit_code == 2 and "Traceback" not in result.output and expected in result.output


def test_train_refuses_a_spec_too_large_for_the_machine(tmp_path):
    result = runner.invoke(app, ["train", str(ROOT / "specs" / "quickstart.yaml"), "--set", "model.width=65536",
                                 "--set", "model.depth=64", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "exceeds this machine" in result.output
    assert not (tmp_path / "run" / "record.json").exists()


def test_train_refuses_an_output_that_is_a_file(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    result = runner.invoke(app, ["train", str(ROOT / "specs" / "quickstart.yaml"), "--out", str(taken)])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output and taken.read_text() == "mine"


BAD_STUDIES = {
    "reversed float range": ({"search": {"train.lr": {"float": [1e-2, 1e-4]}}}, "search.train.lr", "reversed"),
    "log range from zero": ({"search": {"train.lr": {"float": [0.0, 1e-2], "log": True}}}, "search.train.lr",
                            "positive low bound"),
    "reversed int range": ({"search": {"model.depth": {"int": [4, 1]}}}, "search.model.depth", "reversed"),
    "infinite bound": ({"search": {"train.lr": {"float": [1e-4, float("inf")]}}}, "search.train.lr.float.1", "finite"),
    "baseline outside the choices": ({"search": {"model.width": {"choice": [32, 64]}},
                                      "enqueue": [{"model.width": 48}]}, "enqueue.0", "not one of the choices"),
    "baseline outside the range": ({"search": {"model.depth": {"int": [1, 3]}},
                                    "enqueue": [{"model.depth": 9}]}, "enqueue.0", "outside the searched range"),
    "duplicate objectives": ({"objectives": ["val_bpb", "val_bpb"]}, "objectives", "more than once"),
    "ladder budget of zero": ({"ladder": {"flops": [0.0, 1e9], "sizes": [{"model.width": 32}]}}, "ladder.flops.0",
                              "greater than 0"),
    "ladder of 1e30 tokens": ({"ladder": {"tokens": [1e30], "sizes": [{"model.width": 32}]}}, "ladder.tokens.0",
                              "less than or equal"),
    "constraint against NaN": ({"constraints": ["params <= nan"]}, "constraints.0", "not a finite number"),
    "study named ..": ({"name": ".."}, "name", "not a safe folder name"),
    "branches that are all decay": ({"ladder": {"tokens": [256, 512], "sizes": [{"model.width": 32}],
                                                "branches": {"decay": 1.0}}}, "ladder.branches.decay", "less than 1"),
    "branches of an unknown shape": ({"ladder": {"tokens": [256, 512], "sizes": [{"model.width": 32}],
                                                 "branches": {"shape": "cosine"}}}, "ladder.branches.shape", "linear"),
    "branches inside the warmup": ({"base": {**BASE, "train": {**BASE["train"], "schedule": {"warmup": 0.9}}},
                                    "ladder": {"tokens": [256, 1024], "sizes": [{"model.width": 32}], "branches": {}}},
                                   "ladder.branches", "inside the warmup (0.225)"),
}


@pytest.mark.parametrize("case", list(BAD_STUDIES))
def test_bad_studies_are_validation_errors(tmp_path, case):
    fields, where, expected = BAD_STUDIES[case]
    with pytest.raises(SpecError) as info:
        load_study(write_study(tmp_path, **fields))
    assert any(i.field == where and expected in i.message for i in info.value.issues), info.value


def test_every_bad_constraint_is_reported_with_its_text(tmp_path):
    with pytest.raises(SpecError) as info:
        load_study(write_study(tmp_path, constraints=["params <= 1e6", "speed <= 3", "params < many"]))
    issues = {i.field: i.message for i in info.value.issues}
    assert set(issues) == {"constraints.1", "constraints.2"}
    assert "'speed <= 3'" in issues["constraints.1"] and "'many'" in issues["constraints.2"]
    assert "{" not in " ".join(issues.values())                    # no template left unfilled


# --------------------------------------------------------------------------------- fuzzing


def _mutations(rng: random.Random, spec: dict, study: dict) -> tuple[str, str]:
    """One malformed spec or study file: a random field given a wrong value or a wrong name, or a
    file mangled as text. Returns (kind, text)."""
    wrong_values = [True, "lots", -1, 0, 1e308, [1, 2], {"x": 1}, None, "", "1e", float("nan"), 10**30]
    target = rng.choice(["spec", "study"])
    data = yaml.safe_load(yaml.safe_dump(spec if target == "spec" else study))
    paths = []

    def walk(node, prefix):
        for key, value in node.items():
            paths.append(prefix + (key,))
            if isinstance(value, dict):
                walk(value, prefix + (key,))
    walk(data, ())
    action = rng.choice(["value", "value", "unknown", "remove", "text"])
    path = rng.choice(paths)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if action == "value":
        parent[path[-1]] = rng.choice(wrong_values)
    elif action == "unknown":
        parent[path[-1] + "_typo"] = 1
    elif action == "remove":
        for required in (("model",), ("train",), ("model", "width"), ("base",), ("name",)):
            if required[:-1] == path[:-1] and required[-1] in parent:
                del parent[required[-1]]
                break
        else:
            parent[path[-1]] = rng.choice(wrong_values)
    text = yaml.safe_dump(data, sort_keys=False)
    if action == "text":
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice([":", "[", "{", "&a *a", "\t", "- ", "!!binary x", "? "]) + text[cut:]
    return target, text


def test_two_hundred_malformed_files_each_give_clear_lines(tmp_path):
    rng = random.Random(0)
    spec = yaml.safe_load(QUICKSTART)
    spec["train"]["budget"] = {"tokens": 200000}
    study = {"name": "fuzz", "base": BASE, "search": {"model.depth": {"int": [1, 2]}},
             "objectives": ["val_bpb"], "trials": 2, "ladder": {"flops": [1e9], "sizes": [{"model.width": 32}]}}
    rejected = 0
    for i in range(200):
        kind, text = _mutations(rng, spec, study)
        path = tmp_path / f"{kind}-{i}.yaml"
        path.write_text(text)
        result = validate(path)
        assert result.exit_code in (0, 1), (text, result.output)
        if result.exit_code == 1:
            rejected += 1
            lines = [line for line in result.output.splitlines() if line.strip()]
            assert lines[-1] == "1 of 1 file(s) invalid"
            assert all(line.startswith(f"error {path}") for line in lines[:-1]), result.output
    assert rejected >= 150          # most mutations break the file; the rest happen to stay valid
