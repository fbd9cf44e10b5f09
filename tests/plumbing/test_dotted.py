"""Dotted field paths over nested mappings: read, test, set without touching the original,
and flatten into table columns."""

from workbench.plumbing import dotted

DATA = {"model": {"depth": 2, "positional": {"kind": "rope"}, "kv_heads": None}, "name": "x"}


def test_get_and_exists_tell_a_missing_path_from_a_null_value():
    assert dotted.get(DATA, "model.positional.kind") == "rope"
    assert dotted.get(DATA, "model.kv_heads") is None and dotted.exists(DATA, "model.kv_heads")
    assert dotted.get(DATA, "model.width") is None and not dotted.exists(DATA, "model.width")
    assert dotted.get(DATA, "name.first") is None and not dotted.exists(DATA, "name.first")  # through a leaf
    assert dotted.get(DATA, "model") is DATA["model"]


def test_replace_copies_and_makes_missing_levels():
    out = dotted.replace(DATA, "model.positional.theta", 500.0)
    assert out["model"]["positional"] == {"kind": "rope", "theta": 500.0}
    assert DATA["model"]["positional"] == {"kind": "rope"}                     # the original is untouched
    assert out["model"]["depth"] == 2 and out["name"] == "x"
    assert dotted.replace(DATA, "train.budget.steps", 3)["train"] == {"budget": {"steps": 3}}
    assert dotted.replace(DATA, "name.first", "a")["name"] == {"first": "a"}    # a leaf becomes a level


def test_apply_sets_overrides_in_order():
    out = dotted.apply(DATA, {"model.positional": {"kind": "alibi"}, "model.positional.theta": 1.0, "model.depth": 4})
    assert out["model"] == {"depth": 4, "positional": {"kind": "alibi", "theta": 1.0}, "kv_heads": None}
    assert dotted.apply(DATA, {}) == DATA


def test_flatten_keeps_lists_and_empty_mappings_whole():
    data = {"model": {"depth": 2, "mlp": {"kind": "gelu"}}, "betas": [0.9, 0.95], "extra": {}, "none": None}
    assert dotted.flatten(data) == {"model.depth": 2, "model.mlp.kind": "gelu", "betas": [0.9, 0.95],
                                    "extra": {}, "none": None}
    assert dotted.flatten(data, "spec.")["spec.model.depth"] == 2
    flat = dotted.flatten(DATA)
    assert dotted.apply({}, flat) == DATA                                       # flatten and apply invert
