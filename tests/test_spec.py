"""The spec schema: every variant choice is pinned to the table of its implementations, shape
rules are gathered at once, digests are stable, and a fine-tuning phase inherits its recipe."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from support import ROOT, model_spec, tiny_spec, tokenizer_file
from workbench.data.sources import SOURCES
from workbench.data.tokenizer import KINDS
from workbench.model.layers import MLPS, NORMS
from workbench.model.parametrization import PARAMETRIZATIONS
from workbench.model.positional import SCHEMES
from workbench.plumbing import dotted
from workbench.plumbing.errors import SpecError
from workbench.plumbing.schema import one_of
from workbench.spec import FinetuneSpec, Spec
from workbench.specfile import load_spec

CHOICES = {
    "model.positional.kind": ("PositionalSpec", SCHEMES),
    "model.mlp.kind": ("MLPSpec", MLPS),
    "model.norm": ("ModelSpec", NORMS),
    "model.parametrization": ("ModelSpec", PARAMETRIZATIONS),
    "tokenizer.kind": ("TokenizerSpec", KINDS),
}
"""Every named choice of a spec: its dotted path, the schema section holding it, its table."""

BASE = {"name": "pins", "model": {"depth": 1, "width": 64, "heads": 4, "context": 16},
        "tokenizer": {"kind": "byte"}, "train": {"budget": {"steps": 1}, "batch_tokens": 32}}


def _load(tmp_path, **over) -> Spec:
    """BASE with dotted overrides, written as YAML and loaded as a user's file would be."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(dotted.apply(BASE, over), sort_keys=False))
    return load_spec(path)


def _line(tmp_path, text: str) -> int:
    lines = (tmp_path / "spec.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


# ------------------------------------------------------------------------ one table per choice


@pytest.mark.parametrize("path", CHOICES)
def test_the_schema_lists_exactly_the_table(path):
    section, table = CHOICES[path]
    field = Spec.model_json_schema()["$defs"][section]["properties"][path.rsplit(".", 1)[1]]
    assert field["enum"] == list(table)
    assert all(name in field["description"] for name in table)         # documented from the table


@pytest.mark.parametrize("path", CHOICES)
def test_a_name_outside_the_table_is_an_error_naming_the_field(tmp_path, path):
    with pytest.raises(SpecError) as info:
        _load(tmp_path, **{path: "no-such-variant"})
    [issue] = info.value.issues
    assert (issue.field, issue.line) == (path, _line(tmp_path, "no-such-variant"))
    assert issue.message == f"expected {one_of(list(CHOICES[path][1]))} (got 'no-such-variant')"


@pytest.mark.parametrize("path,name", [(path, name) for path, (_, table) in CHOICES.items() for name in table])
def test_every_name_in_the_table_is_a_valid_spec(tmp_path, path, name):
    over = {path: name}
    if path == "tokenizer.kind" and KINDS[name].build is None:         # the file kind reads one
        over["tokenizer.path"] = str(tokenizer_file(512))
    elif path == "tokenizer.kind" and KINDS[name].fixed_size is None:
        over["tokenizer.vocab_size"] = 512
    elif path == "model.parametrization":
        over["model.base_width"] = 32
    assert dotted.get(_load(tmp_path, **over).model_dump(), path) == name


@pytest.mark.parametrize("field", ["data", "finetune.data"])
def test_the_data_union_is_exactly_the_sources(field):
    schema = Spec.model_json_schema()
    prop = schema["properties"]["data"] if field == "data" else schema["$defs"]["FinetuneSpec"]["properties"]["data"]
    mapping = prop["discriminator"]["mapping"]
    assert prop["discriminator"]["propertyName"] == "source" and set(mapping) == set(SOURCES)
    for name, ref in mapping.items():
        assert schema["$defs"][ref.rsplit("/", 1)[1]]["properties"]["source"]["const"] == name
    assert [r["$ref"] for r in prop["oneOf"]] == [mapping[name] for name in SOURCES]


def test_a_source_outside_the_table_is_an_error_naming_the_field(tmp_path):
    with pytest.raises(SpecError) as info:
        _load(tmp_path, data={"source": "wikipedia"})
    [issue] = info.value.issues
    assert (issue.field, issue.line) == ("data.source", _line(tmp_path, "wikipedia"))
    assert issue.message == f"expected one of {', '.join(map(repr, SOURCES))} (got 'wikipedia')"


# ------------------------------------------------------------------------------- shape rules


def test_shape_rules_are_gathered_at_once_with_their_fields():
    bad = {"name": "x", "model": {"depth": 1, "width": 60, "heads": 8, "kv_heads": 3, "context": 16,
                                  "positional": {"kind": "learned", "max_positions": 8}},
           "tokenizer": {"kind": "bpe"}, "train": {"budget": {"steps": 1}, "batch_tokens": 40}}
    with pytest.raises(ValidationError) as info:
        Spec.model_validate(bad)
    [error] = info.value.errors()
    fields = [".".join(p) for p, _ in error["ctx"]["problems"]]
    assert fields == ["model.heads", "model.kv_heads", "model.context", "tokenizer.vocab_size", "train.batch_tokens"]
    assert tiny_spec().problems() == []


def test_rope_needs_an_even_head_dimension_and_sinusoidal_an_even_width():
    with pytest.raises(ValidationError, match="rope needs an even head dimension; width/heads = 3"):
        model_spec(width=12, heads=4, positional={"kind": "rope"})
    with pytest.raises(ValidationError, match="sinusoidal positions need an even width, got 13"):
        model_spec(width=13, heads=1, positional={"kind": "sinusoidal"})
    assert model_spec(width=12, heads=4, positional={"kind": "alibi"}).model.head_dim == 3


def test_mup_needs_a_base_width_and_names_it(tmp_path):
    with pytest.raises(SpecError) as info:
        _load(tmp_path, **{"model.parametrization": "mup"})
    [issue] = info.value.issues
    assert issue.field == "model.base_width" and "mup needs base_width" in issue.message
    with pytest.raises(SpecError, match="model.base_width"):
        _load(tmp_path, **{"model.parametrization": "mup", "model.base_width": 0})
    assert _load(tmp_path, **{"model.base_width": 32}).model.parametrization == "standard"   # unused there


# ------------------------------------------------------------------------------------ digests


def test_digest_ignores_names_but_not_architecture():
    a = load_spec(ROOT / "specs" / "quickstart.yaml")
    b = a.model_copy(update={"name": "other"})
    c = load_spec(ROOT / "specs" / "quickstart.yaml", {"model.depth": 3})
    assert a.digest() == b.digest() != c.digest()


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
    # base_width trains nothing differently under standard; mup does.
    assert load_spec(ROOT / "specs" / "quickstart.yaml", {"model.base_width": 64}).digest() == spec.digest()
    mup = load_spec(ROOT / "specs" / "quickstart.yaml", {"model.parametrization": "mup", "model.base_width": 64})
    assert mup.digest() != spec.digest()


# ---------------------------------------------------------------------------------- fine-tuning


def test_a_fine_tuning_phase_takes_what_it_leaves_out_from_train():
    train = tiny_spec(**{"train.micro_batch_tokens": 64, "train.weight_decay": 0.3, "train.eval_bytes": 999}).train
    phase = FinetuneSpec.model_validate({"data": {"source": "python-docstrings"}, "budget": {"steps": 2}})
    recipe = phase.recipe(train)
    assert (recipe.batch_tokens, recipe.micro_tokens, recipe.weight_decay, recipe.eval_bytes) == (256, 64, 0.3, 999)
    assert (recipe.lr, recipe.budget.steps, recipe.seed) == (3e-4, 2, train.seed)
    own = FinetuneSpec.model_validate({"data": {"source": "python-docstrings"}, "budget": {"steps": 2},
                                       "batch_tokens": 128, "eval_bytes": 100, "weight_decay": 0.0})
    recipe = own.recipe(train)     # its own batch: train's micro-batch no longer applies
    assert (recipe.batch_tokens, recipe.micro_tokens, recipe.weight_decay, recipe.eval_bytes) == (128, 128, 0.0, 100)
