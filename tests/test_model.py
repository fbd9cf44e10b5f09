"""Every example spec builds and trains a step; counts are exact; attention is causal."""

import itertools

import pytest
import torch

from support import SPECS
from workbench.accounting import count_params, flops_per_token, memory_estimate
from workbench.model import build_model, lm_loss, padded_vocab
from workbench.model.positional import SCHEMES, alibi_slopes
from workbench.spec import Spec
from workbench.specfile import load_spec


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_spec_builds_and_steps(path):
    spec = load_spec(path, {"model.context": 32})
    torch.manual_seed(0)
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == count_params(spec).total
    x = torch.randint(0, spec.tokenizer.size, (2, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = lm_loss(model(x[:, :-1]), x[:, 1:])
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert lm_loss(model(x[:, :-1]), x[:, 1:]) < loss  # the step learned something


def tiny(**model) -> Spec:
    base = {"depth": 2, "width": 64, "heads": 4, "context": 24}
    return Spec.model_validate({"name": "t", "model": {**base, **model},
                                "train": {"budget": {"steps": 1}, "batch_tokens": 24}})


VARIANTS = list(itertools.product(SCHEMES, [4, 2, 1], ["pre", "post"]))


@pytest.mark.parametrize("kind,kv_heads,placement", VARIANTS)
def test_changing_future_tokens_never_changes_earlier_logits(kind, kv_heads, placement):
    torch.manual_seed(0)
    model = build_model(tiny(positional={"kind": kind}, kv_heads=kv_heads, norm_placement=placement)).eval()
    x = torch.randint(0, 257, (3, 24))
    for cut in (1, 11, 23):
        y = x.clone()
        y[:, cut:] = torch.randint(0, 257, y[:, cut:].shape)
        a, b = model(x), model(y)
        torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-5)
        assert not torch.allclose(a[:, cut:], b[:, cut:])


@pytest.mark.parametrize("mlp,norm,tie,bias,kind", list(itertools.product(
    ["gelu", "swiglu", "relu2"], ["layernorm", "rmsnorm"], [True, False], [True, False], list(SCHEMES))))
def test_analytic_parameter_count_is_exact(mlp, norm, tie, bias, kind):
    spec = tiny(mlp={"kind": mlp, "ratio": 3}, norm=norm, tie_embeddings=tie, bias=bias,
                positional={"kind": kind}, kv_heads=2)
    model = build_model(spec)
    counted = count_params(spec)
    assert sum(p.numel() for p in model.parameters()) == counted.total
    matrices = sum(p.numel() for n, p in model.named_parameters()
                   if p.dim() == 2 and not n.startswith(("embed", "pos")))
    assert counted.matmul == matrices + (padded_vocab(spec.model, 257) * 64 if tie else 0)


def test_gqa_shares_key_value_heads():
    # Grouped-query attention equals multi-head attention with each K/V head repeated.
    torch.manual_seed(0)
    gqa = build_model(tiny(kv_heads=2, positional={"kind": "rope"})).eval()
    attn = gqa.blocks[0].attn
    x = torch.randn(2, 24, 64)
    q, k, v = attn.qkv(x).split([64, 32, 32], dim=-1)
    q = q.view(2, 24, 4, 16).transpose(1, 2)
    k = k.view(2, 24, 2, 16).transpose(1, 2).repeat_interleave(2, dim=1)
    v = v.view(2, 24, 2, 16).transpose(1, 2).repeat_interleave(2, dim=1)
    q, k = gqa.pos.rotate(q, k)
    expected = attn.proj(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
                         .transpose(1, 2).reshape(2, 24, 64))
    torch.testing.assert_close(attn(x, gqa.pos), expected, rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    model = build_model(tiny(positional={"kind": "rope"}))
    q = torch.randn(1, 1, 1, 16).expand(1, 1, 24, 16)
    k = torch.randn(1, 1, 1, 16).expand(1, 1, 24, 16)
    rq, rk = model.pos.rotate(q, k)
    scores = rq[0, 0] @ rk[0, 0].T                     # (T, T): depends on i - j only
    torch.testing.assert_close(torch.diagonal(scores, -3), torch.full((21,), scores[3, 0].item()),
                               rtol=1e-4, atol=1e-4)


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -(i + 1) for i in range(8)])
    assert len(alibi_slopes(6)) == 6 and alibi_slopes(6)[0] == pytest.approx(2 ** -2)


def test_flops_and_memory_conventions():
    spec = tiny()
    p = count_params(spec)
    f = flops_per_token(spec)
    assert f["6N"] == 6 * p.nonembedding
    assert f["6N+attn"] == 6 * p.matmul + 12 * 2 * 64 * 24
    mem = memory_estimate(spec)
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    assert mem["optimizer"] == 2 * mem["weights"]
