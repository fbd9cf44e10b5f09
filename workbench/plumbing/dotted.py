"""Dotted field paths (`model.positional.kind`) over nested mappings: how specs are
overridden, searched and flattened into table columns."""

from __future__ import annotations

from typing import Any


def get(data: Any, dotted: str) -> Any:
    """The value at a dotted path, or None where the path does not exist."""
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def exists(data: Any, dotted: str) -> bool:
    """Whether every key of the dotted path is present."""
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def replace(data: dict, dotted: str, value: Any) -> dict:
    """A copy of nested `data` with the dotted path set to value (missing levels are made)."""
    head, _, rest = dotted.partition(".")
    out = dict(data)
    if rest:
        child = out.get(head)
        out[head] = replace(child if isinstance(child, dict) else {}, rest, value)
    else:
        out[head] = value
    return out


def apply(data: dict, overrides: dict[str, Any]) -> dict:
    """A copy of `data` with every dotted override set, in order."""
    for dotted, value in overrides.items():
        data = replace(data, dotted, value)
    return data


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 2}} -> {'model.depth': 2}; lists and empty mappings are kept whole."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
