"""YAML files to validated models, with errors that name file:line and the field.

PyYAML composes the document into nodes that remember their marks; we keep a map from each data
path to the (file, line) it came from, through `extends:` chains, so a pydantic error location
(a data path) can be pointed back at the line a user wrote.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from workbench.data.sources import SOURCES
from workbench.plumbing import dotted
from workbench.plumbing.errors import Issue, SpecError
from workbench.spec import Spec

Path_ = tuple[str | int, ...]
Where = tuple[str, int]  # (file, 1-based line)
M = TypeVar("M", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 2e6 and 1e-3 as floats (YAML 1.1 wants a dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d[\d_]*(\.\d*)?|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _to_data(node: yaml.Node, file: str, path: Path_, locs: dict[Path_, Where], loader) -> Any:
    locs[path] = (file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = _to_data(value_node, file, path + (key,), locs, loader)
            locs[path + (key,)] = (file, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(v, file, path + (i,), locs, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def read_yaml(path: Path) -> tuple[dict, dict[Path_, Where]]:
    """Parse one YAML mapping, returning its data and the line of every data path in it."""
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError([Issue(file, None, "", "file not found")]) from None
    except OSError as e:
        raise SpecError([Issue(file, None, "", f"cannot read: {e.strerror}")]) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        locs: dict[Path_, Where] = {}
        data = {} if node is None else _to_data(node, file, (), locs, loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        message = f"YAML syntax error: {e.problem or e}"
        if e.context and e.context_mark and e.context_mark.line + 1 != line:
            message += f" ({e.context} at line {e.context_mark.line + 1})"
        raise SpecError([Issue(file, line, "", message)]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError([Issue(file, 1, "", "expected a mapping of fields at the top level")])
    return data, locs


def merge(base: dict, override: dict) -> dict:
    """Deep-merge mappings; the override wins, lists and scalars are replaced whole."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_with_extends(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, dict[Path_, Where]]:
    """Read a YAML file and the chain of files it `extends`, merged, with their locations."""
    data, locs = read_yaml(path)
    data = resolve_paths(data, path.parent)
    base_name = data.get("extends")
    if base_name is None:
        return data, locs
    where = locs.get(("extends",), (str(path), None))
    if not isinstance(base_name, str):
        raise SpecError([Issue(where[0], where[1], "extends", "expected a file name")])
    base_path = (path.parent / base_name).resolve()
    if base_path in _seen:
        raise SpecError([Issue(where[0], where[1], "extends", f"circular: {base_name}")])
    if not base_path.is_file():
        raise SpecError([Issue(where[0], where[1], "extends", f"file not found: {base_name}")])
    base_data, base_locs = read_with_extends(base_path, _seen + (path.resolve(),))
    merged = merge(base_data, data)
    kept = {p: w for p, w in base_locs.items() if _exists(merged, p)}
    return merged, {**kept, **locs}


def _exists(data: Any, path: Path_) -> bool:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _locate(locs: dict[Path_, Where], path: Path_, default: str) -> Where:
    for end in range(len(path), -1, -1):
        if path[:end] in locs:
            return locs[path[:end]]
    return (default, None)


def issues_from(error: ValidationError, locs: dict[Path_, Where], file: str,
                prefix: Path_ = ()) -> list[Issue]:
    """Turn pydantic errors into Issues pointing at the YAML lines they came from."""
    issues = []
    for err in error.errors(include_url=False):
        loc = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
        if err["type"] == "impossible":
            for sub, message in err["ctx"]["problems"]:
                full = loc + tuple(sub)
                issues.append(Issue(*_locate(locs, full, file), _dotted(full), message))
            continue
        message, kind, given = err["msg"], err["type"], err.get("input")
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "union_tag_invalid":
            loc += (err["ctx"]["discriminator"].strip("'"),)
            message = f"expected one of {err['ctx']['expected_tags']} (got {err['ctx']['tag']!r})"
        elif not isinstance(given, (dict, list)):
            message = f"{message} (got {given!r})"
        issues.append(Issue(*_locate(locs, loc, file), _dotted(loc), message))
    return issues


# The data sources' `source` names: a new source needs no edit here.
_UNION_TAGS = set(SOURCES)


def _is_union_tag(part: Any) -> bool:
    # Discriminated unions add the tag ('synthetic', ...) to locations; it is not a data path.
    return isinstance(part, str) and part in _UNION_TAGS


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def validate_data(model: type[M], data: dict, locs: dict[Path_, Where], file: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(issues_from(e, locs, file)) from None


def resolve_paths(data: dict, base: Path) -> dict:
    """Make the corpora's paths and held-out paths (data, finetune.data) and the tokenizer file
    absolute, relative to the file naming them."""
    def path(p: Any) -> Any:
        return p if not isinstance(p, str) or Path(p).is_absolute() else str((base / p).resolve())

    def resolved(section: Any) -> Any:
        if isinstance(section, dict) and isinstance(section.get("paths"), list):
            section = {**section, "paths": [path(p) for p in section["paths"]]}
        split = section.get("split") if isinstance(section, dict) else None
        if isinstance(split, dict) and isinstance(split.get("val_paths"), list):
            section = {**section, "split": {**split, "val_paths": [path(p) for p in split["val_paths"]]}}
        return section

    if isinstance(data.get("tokenizer"), dict) and "path" in data["tokenizer"]:
        data = {**data, "tokenizer": {**data["tokenizer"], "path": path(data["tokenizer"]["path"])}}
    if "data" in data:
        data = {**data, "data": resolved(data["data"])}
    if isinstance(data.get("finetune"), dict) and "data" in data["finetune"]:
        data = {**data, "finetune": {**data["finetune"], "data": resolved(data["finetune"]["data"])}}
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`model.depth=4` to ('model.depth', 4), the value read as YAML."""
    if "=" not in text:
        raise SpecError([Issue("--set", None, text, "expected FIELD=VALUE, e.g. model.depth=4")])
    key, value = text.split("=", 1)
    return key.strip(), yaml.load(value, Loader=_Loader)


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read, merge (`extends`), override and validate a spec file. Raises SpecError."""
    path = Path(path)
    data, locs = read_with_extends(path)
    for key, value in (overrides or {}).items():
        data = dotted.replace(data, key, value)
        locs[tuple(key.split("."))] = ("--set", None)
    return validate_data(Spec, data, locs, str(path))
