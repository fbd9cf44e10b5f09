"""Constraints on a sampled spec: their text, and every quantity in QUANTITIES read from the
spec alone and compared with each operator."""

import pytest

from support import tiny_spec
from workbench.accounting import budget_tokens, count_params, flops_per_token, memory_estimate
from workbench.study.constraints import OPERATORS, QUANTITIES, parse, violated


def test_parse_reads_quantity_operator_and_number():
    assert parse("params <= 5e6") == ("params", "<=", 5e6)
    assert parse("  memory   >  1_000  ") == ("memory", ">", 1000.0)
    with pytest.raises(ValueError, match="QUANTITY OP NUMBER.*params, nonembedding_params"):
        parse("params<=5e6")
    with pytest.raises(ValueError, match="OP one of <=, >=, <, >"):
        parse("params == 5")
    with pytest.raises(ValueError, match="'lots' is not a number"):
        parse("params <= lots")


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_every_quantity_is_read_from_the_spec_and_compared(quantity):
    spec = tiny_spec()
    value = QUANTITIES[quantity].get(spec)
    assert value > 0
    assert violated(spec, [f"{quantity} <= {value}", f"{quantity} >= {value}"]) is None
    assert violated(spec, [f"{quantity} < {value}"]) == \
        f"constraint '{quantity} < {value}' violated: {quantity} = {value:.4g}"
    assert violated(spec, [f"{quantity} > {value}"]) is not None


def test_quantities_are_the_accounting_of_the_spec():
    spec = tiny_spec()
    expected = {"params": count_params(spec).total, "nonembedding_params": count_params(spec).nonembedding,
                "flops_per_token": flops_per_token(spec)["6N+attn"], "memory": memory_estimate(spec)["total"],
                "tokens": budget_tokens(spec)}
    assert {name: q.get(spec) for name, q in QUANTITIES.items()} == expected


def test_the_first_broken_constraint_is_the_reason():
    spec = tiny_spec()
    assert violated(spec, ["params >= 1", "tokens <= 1", "params <= 1"]).startswith("constraint 'tokens <= 1'")
    assert violated(spec, []) is None
    assert set(OPERATORS) == {"<=", ">=", "<", ">"}
