"""YAML files to validated models, with errors that name file:line and the field.

PyYAML composes the document into nodes that remember their marks; we keep a map from each data
path to the (file, line) it came from, through `extends:` chains, so a pydantic error location
(a data path) can be pointed back at the line a user wrote. Reading is bounded: files over a
megabyte, alias bombs, tags, complex and duplicate keys are refused with the line at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from workbench.plumbing import dotted
from workbench.plumbing.errors import Issue, SpecError
from workbench.plumbing.schema import FILE_SAFE
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


MAX_BYTES = 1 << 20       # a spec or study file is a page of YAML, never a megabyte
MAX_VALUES = 100_000      # values after aliases are expanded: an alias bomb stops here, not at 24 GB
_PLAIN = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
          "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}
_CONTAINERS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Reader:
    """Turns composed YAML nodes into plain data (mappings with string keys, lists, strings,
    numbers, booleans, null), remembering the line of every data path, and refusing what a spec
    never needs: tags (`!!python/...`, `!!binary`, ...), complex or duplicate keys, and more than
    MAX_VALUES values (aliases are references, so a small file can name billions of them)."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader, self.file, self.values = loader, file, 0
        self.locs: dict[Path_, Where] = {}

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError([Issue(self.file, node.start_mark.line + 1, "", message)])

    def data(self, node: yaml.Node, path: Path_ = ()) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.fail(node, f"more than {MAX_VALUES:,} values once aliases are expanded: "
                            "not a spec (an alias bomb?)")
        self.locs[path] = (self.file, node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _CONTAINERS:
            raise self.fail(node, f"the tag {node.tag} is not allowed in a spec")
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN:
                    raise self.fail(key_node, "a key must be a plain name, not a list, mapping or tagged value")
                key = self.loader.construct_object(key_node)
                if key in out:
                    raise self.fail(key_node, f"duplicate key {key!r} (the first is at line "
                                    f"{self.locs[path + (key,)][1]})")
                self.locs[path + (key,)] = (self.file, key_node.start_mark.line + 1)
                out[key] = self.data(value_node, path + (key,))
                self.locs[path + (key,)] = (self.file, key_node.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.data(v, path + (i,)) for i, v in enumerate(node.value)]
        if node.tag not in _PLAIN:
            raise self.fail(node, f"the tag {node.tag} is not allowed in a spec")
        return self.loader.construct_object(node)


def _parse(text: str, file: str) -> tuple[Any, dict[Path_, Where]]:
    """YAML text to plain data and its lines; every problem is a SpecError naming file:line."""
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        reader = _Reader(loader, file)
        return (None if node is None else reader.data(node)), reader.locs
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        message = f"YAML syntax error: {e.problem or e}"
        if e.context and e.context_mark and e.context_mark.line + 1 != line:
            message += f" ({e.context} at line {e.context_mark.line + 1})"
        raise SpecError([Issue(file, line, "", message)]) from None
    except yaml.YAMLError as e:                    # reader errors: control characters, bad encodings
        raise SpecError([Issue(file, None, "", f"not YAML text: {str(e).splitlines()[0]}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path) -> tuple[dict, dict[Path_, Where]]:
    """Parse one YAML mapping, returning its data and the line of every data path in it."""
    file = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError([Issue(file, None, "", f"{path.stat().st_size:,} bytes: larger than any spec or "
                                   f"study file ({MAX_BYTES:,} at most)")])
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError([Issue(file, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise SpecError([Issue(file, None, "", "a folder, not a spec or study file")]) from None
    except UnicodeDecodeError as e:
        raise SpecError([Issue(file, None, "", f"not a UTF-8 text file (byte {e.start} cannot be read)")]) from None
    except OSError as e:
        raise SpecError([Issue(file, None, "", f"cannot read: {e.strerror}")]) from None
    data, locs = _parse(text, file)
    if data is None:
        data = {}
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


def issues_from(error: ValidationError, locs: dict[Path_, Where], file: str, data: Any = None) -> list[Issue]:
    """Turn pydantic errors into Issues pointing at the YAML lines they came from."""
    issues = []
    for err in error.errors(include_url=False):
        loc = _data_path(err["loc"], locs, data, missing=err["type"] == "missing")
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
        elif kind == "string_pattern_mismatch" and err["ctx"]["pattern"] == FILE_SAFE:
            message = f"{given!r} is not a safe folder name: use letters, digits, '.', '-' and '_'"
        elif kind == "union_tag_invalid":
            loc += (err["ctx"]["discriminator"].strip("'"),)
            message = f"expected one of {err['ctx']['expected_tags']} (got {err['ctx']['tag']!r})"
        elif not isinstance(given, (dict, list)):
            message = f"{message} (got {given!r})"
        issues.append(Issue(*_locate(locs, loc, file), _dotted(loc), message))
    return issues


def _data_path(loc: tuple, locs: dict[Path_, Where], data: Any, missing: bool) -> Path_:
    """A pydantic error location as the data path a user wrote: unions put the member's tag
    into locations (a data source's name, a search distribution's kind), which no file holds;
    only a missing field is named without having been written."""
    out: Path_ = ()
    for i, part in enumerate(loc):
        written = out + (part,) in locs or _exists(data, out + (part,))
        if written or (missing and i == len(loc) - 1) or not isinstance(part, str):
            out += (part,)
    return out


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def validate_data(model: type[M], data: dict, locs: dict[Path_, Where], file: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(issues_from(e, locs, file, data)) from None


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
    """`model.depth=4` to ('model.depth', 4), the value read as YAML with the same rules as a file."""
    if "=" not in text:
        raise SpecError([Issue("--set", None, text, "expected FIELD=VALUE, e.g. model.depth=4")])
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part.strip() for part in key.split(".")):
        raise SpecError([Issue("--set", None, text, "expected FIELD=VALUE with a dotted field, e.g. model.depth=4")])
    try:
        data, _ = _parse(value, "--set")
    except SpecError as e:
        raise SpecError([Issue("--set", None, key, e.issues[0].message)]) from None
    return key, data


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read, merge (`extends`), override and validate a spec file. Raises SpecError."""
    path = Path(path)
    data, locs = read_with_extends(path)
    for key, value in (overrides or {}).items():
        data = dotted.replace(data, key, value)
        locs[tuple(key.split("."))] = ("--set", None)
    return validate_data(Spec, data, locs, str(path))
