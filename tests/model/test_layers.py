"""The layers of a block: every norm and MLP in NORMS and MLPS counts its own parameters
exactly, and grouped-query attention is multi-head attention with shared keys and values."""

import pytest
import torch

from support import model_spec
from workbench.model import build_model
from workbench.model.layers import MLPS, NORMS, Attention, Block


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def split(module: torch.nn.Module) -> tuple[int, int]:
    """(matrix weights, other parameters) of a module."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.dim() == 2), sum(p.numel() for p in params if p.dim() != 2)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", NORMS)
def test_every_norm_counts_its_parameters(kind, bias):
    m = model_spec(norm=kind, bias=bias).model
    norm = NORMS[kind](m)
    assert NORMS[kind].params(m) == numel(norm)
    assert norm(torch.randn(3, m.width)).shape == (3, m.width)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", MLPS)
def test_every_mlp_counts_its_parameters_and_keeps_the_width(kind, bias):
    m = model_spec(mlp={"kind": kind, "ratio": 2.5}, bias=bias).model
    mlp = MLPS[kind](m)
    assert MLPS[kind].params(m) == split(mlp)
    assert mlp(torch.randn(2, 5, m.width)).shape == (2, 5, m.width)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_and_block_count_their_parameters(kv_heads):
    m = model_spec(kv_heads=kv_heads, bias=True).model
    assert Attention.params(m) == split(Attention(m))
    assert Block.params(m) == split(Block(m))


def test_gqa_shares_key_value_heads():
    # Grouped-query attention equals multi-head attention with each K/V head repeated.
    torch.manual_seed(0)
    gqa = build_model(model_spec(kv_heads=2, positional={"kind": "rope"})).eval()
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


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_a_block_is_two_residual_branches_normalised_before_or_after(placement):
    torch.manual_seed(0)
    model = build_model(model_spec(norm_placement=placement))
    block, x = model.blocks[0], torch.randn(2, 24, 64)
    h = x + block.attn(block.norm1(x), model.pos) if placement == "pre" else block.norm1(x + block.attn(x, model.pos))
    out = h + block.mlp(block.norm2(h)) if placement == "pre" else block.norm2(h + block.mlp(h))
    torch.testing.assert_close(block(x, model.pos), out)
