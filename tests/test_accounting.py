"""Accounting from the spec alone: parameter counts equal the built model's over every variant
in the tables, FLOPs per token under each convention, budgets in tokens, memory."""

import itertools

import pytest

from support import model_spec, tiny_spec
from workbench.accounting import budget_tokens, compute, count_params, describe, flops_per_token, memory_estimate
from workbench.model import build_model, padded_vocab
from workbench.model.layers import MLPS, NORMS
from workbench.model.parametrization import PARAMETRIZATIONS
from workbench.model.positional import SCHEMES


@pytest.mark.parametrize("mlp,norm,tie,bias,kind",
                         list(itertools.product(MLPS, NORMS, [True, False], [True, False], SCHEMES)))
def test_analytic_parameter_count_is_exact(mlp, norm, tie, bias, kind):
    spec = model_spec(mlp={"kind": mlp, "ratio": 3}, norm=norm, tie_embeddings=tie, bias=bias,
                      positional={"kind": kind}, kv_heads=2)
    model = build_model(spec)
    counted = count_params(spec)
    assert sum(p.numel() for p in model.parameters()) == counted.total
    matrices = sum(p.numel() for n, p in model.named_parameters()
                   if p.dim() == 2 and not n.startswith(("embed", "pos")))
    assert counted.matmul == matrices + (padded_vocab(spec.model, 257) * 64 if tie else 0)


@pytest.mark.parametrize("tie", [True, False])
def test_parametrizations_change_no_count(tie):
    specs = [model_spec(parametrization=name, base_width=16, tie_embeddings=tie) for name in PARAMETRIZATIONS]
    assert len({str(count_params(s)) for s in specs}) == 1
    assert len({str(flops_per_token(s)) for s in specs}) == 1
    assert all(sum(p.numel() for p in build_model(s).parameters()) == count_params(s).total for s in specs)


def test_embedding_parameters_are_the_tables_and_the_untied_head():
    tied = model_spec(positional={"kind": "learned"})
    untied = model_spec(positional={"kind": "learned"}, tie_embeddings=False)
    assert count_params(tied).embedding == 257 * 64 + 24 * 64
    assert count_params(untied).embedding == 2 * 257 * 64 + 24 * 64
    assert count_params(untied).nonembedding == count_params(tied).nonembedding
    wide = model_spec(positional={"kind": "learned", "max_positions": 100})
    assert count_params(wide).embedding - count_params(tied).embedding == (100 - 24) * 64


def test_vocab_multiple_pads_the_counted_tables():
    spec = model_spec(vocab_multiple=64)
    assert padded_vocab(spec.model, 257) == 320
    assert count_params(spec).embedding == 320 * 64
    assert sum(p.numel() for p in build_model(spec).parameters()) == count_params(spec).total


def test_flops_per_token_conventions():
    spec = model_spec()
    p = count_params(spec)
    f = flops_per_token(spec)
    assert f["6N"] == 6 * p.nonembedding
    assert f["6N+attn"] == 6 * p.matmul + 12 * 2 * 64 * 24
    assert compute(spec, 1000) == {k: 1000 * v for k, v in f.items()}


@pytest.mark.parametrize("budget,tokens", [
    ({"tokens": 1000}, 1024),          # rounded up to whole batches of 256
    ({"tokens": 1024}, 1024),
    ({"steps": 3}, 768),
    ({"seconds": 2.0}, None),          # unknown until the run knows its speed
])
def test_budget_tokens(budget, tokens):
    assert budget_tokens(tiny_spec(**{"train.budget": budget})) == tokens


def test_flops_and_seconds_budgets_become_whole_batches():
    spec = tiny_spec(**{"train.budget": {"flops": 5e8}})
    per_token = flops_per_token(spec)["6N+attn"]
    assert budget_tokens(spec) == round(5e8 / per_token / 256) * 256
    kaplan = tiny_spec(**{"train.budget": {"flops": 5e8, "flops_convention": "6N"}})
    assert budget_tokens(kaplan) == round(5e8 / flops_per_token(spec)["6N"] / 256) * 256
    tiny_budget = tiny_spec(**{"train.budget": {"flops": 1.0}})
    assert budget_tokens(tiny_budget) == 256                            # never less than one step
    timed = tiny_spec(**{"train.budget": {"seconds": 2.0}})
    assert budget_tokens(timed, tokens_per_second=1000) == round(2000 / 256) * 256


def test_memory_estimate_adds_up_and_halves_activations_in_16_bit():
    spec = model_spec()
    p = count_params(spec)
    mem = memory_estimate(spec)
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    assert (mem["weights"], mem["gradients"], mem["optimizer"]) == (4 * p.total, 4 * p.total, 8 * p.total)
    logits = 24 * 257 * 4 * 2                                  # micro-batch tokens x vocab, and grads
    assert mem["activations"] == 24 * 2 * 64 * 34 * 4 // 2 + logits
    bf16 = memory_estimate(spec.model_copy(update={"train": spec.train.model_copy(update={"precision": "bf16"})}))
    assert bf16["activations"] - logits == (mem["activations"] - logits) // 2
    micro = tiny_spec(**{"train.micro_batch_tokens": 64})
    assert memory_estimate(micro)["activations"] < memory_estimate(tiny_spec())["activations"]


def test_describe_counts_the_fine_tuning_phase_on_its_own_budget():
    from support import two_phase
    spec = two_phase()
    info = describe(spec)
    assert info["params"]["total"] == count_params(spec).total and info["tokens"] == 20 * 256
    tuned = spec.model_copy(update={"train": spec.finetune.recipe(spec.train)})
    assert info["finetune"]["tokens"] == budget_tokens(tuned)
    assert info["finetune"]["compute"]["6N"] == flops_per_token(spec)["6N"] * info["finetune"]["tokens"]
    assert describe(tiny_spec())["finetune"] is None
