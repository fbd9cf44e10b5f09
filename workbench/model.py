"""A decoder-only transformer LM built from a ModelSpec.

Shapes: B batch, T time, C width, H query heads, K key/value heads, D head dim, V vocabulary.
Norm and MLP variants are names resolved through the tables below; positional schemes live in
positional.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.positional import NoPosition, build_positional
from workbench.spec import ModelSpec, Spec


def padded_vocab(m: ModelSpec, vocab_size: int) -> int:
    return math.ceil(vocab_size / m.vocab_multiple) * m.vocab_multiple


def _layernorm(m: ModelSpec) -> nn.Module:
    return nn.LayerNorm(m.width, bias=m.bias)


def _rmsnorm(m: ModelSpec) -> nn.Module:
    return nn.RMSNorm(m.width, eps=1e-6)


NORMS = {"layernorm": _layernorm, "rmsnorm": _rmsnorm}


class GeluMLP(nn.Module):
    def __init__(self, m: ModelSpec):
        super().__init__()
        self.up = nn.Linear(m.width, m.mlp_hidden, bias=m.bias)
        self.down = nn.Linear(m.mlp_hidden, m.width, bias=m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Relu2MLP(GeluMLP):
    """Squared ReLU (So et al., Primer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())


class SwiGLU(nn.Module):
    """Gated SiLU (Shazeer): down(silu(gate(x)) * up(x)); gate and up share one matmul."""

    def __init__(self, m: ModelSpec):
        super().__init__()
        self.gate_up = nn.Linear(m.width, 2 * m.mlp_hidden, bias=m.bias)
        self.down = nn.Linear(m.mlp_hidden, m.width, bias=m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


MLPS = {"gelu": GeluMLP, "relu2": Relu2MLP, "swiglu": SwiGLU}


class Attention(nn.Module):
    def __init__(self, m: ModelSpec):
        super().__init__()
        self.H, self.K, self.D = m.heads, m.n_kv_heads, m.head_dim
        self.qkv = nn.Linear(m.width, (self.H + 2 * self.K) * self.D, bias=m.bias)
        self.proj = nn.Linear(self.H * self.D, m.width, bias=m.bias)
        self.dropout = m.dropout

    def forward(self, x: torch.Tensor, pos: NoPosition) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split([self.H * self.D, self.K * self.D, self.K * self.D], dim=-1)
        q = q.view(B, T, self.H, self.D).transpose(1, 2)                           # (B, H, T, D)
        k = k.view(B, T, self.K, self.D).transpose(1, 2)                           # (B, K, T, D)
        v = v.view(B, T, self.K, self.D).transpose(1, 2)
        q, k = pos.rotate(q, k)
        bias = pos.bias(T)
        if bias is not None:
            bias = bias.to(q.dtype)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, is_causal=bias is None,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.K != self.H)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.H * self.D))


class Block(nn.Module):
    def __init__(self, m: ModelSpec):
        super().__init__()
        self.norm1, self.norm2 = NORMS[m.norm](m), NORMS[m.norm](m)
        self.attn = Attention(m)
        self.mlp = MLPS[m.mlp.kind](m)
        self.pre = m.norm_placement == "pre"
        self.drop = nn.Dropout(m.dropout) if m.dropout else nn.Identity()

    def forward(self, x: torch.Tensor, pos: NoPosition) -> torch.Tensor:
        if self.pre:
            x = x + self.drop(self.attn(self.norm1(x), pos))
            return x + self.drop(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, pos)))
        return self.norm2(x + self.drop(self.mlp(x)))


class GPT(nn.Module):
    """Token embedding, positional scheme, `depth` blocks, final norm (pre-norm only), LM head."""

    def __init__(self, m: ModelSpec, vocab_size: int):
        super().__init__()
        self.spec = m
        self.vocab_size = vocab_size                      # real tokens; the table may be padded
        V = padded_vocab(m, vocab_size)
        self.embed = nn.Embedding(V, m.width)
        self.pos = build_positional(m)
        self.drop = nn.Dropout(m.dropout) if m.dropout else nn.Identity()
        self.blocks = nn.ModuleList(Block(m) for _ in range(m.depth))
        self.norm = NORMS[m.norm](m) if m.norm_placement == "pre" else nn.Identity()
        self.head = nn.Linear(m.width, V, bias=False)
        if m.tie_embeddings:
            self.head.weight = self.embed.weight
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.spec.init_std
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                # GPT-2: residual output projections shrink with depth so the stream's variance
                # does not grow with the number of blocks.
                scale = 1 / math.sqrt(2 * self.spec.depth) if name.endswith(("proj.weight", "down.weight")) else 1
                nn.init.normal_(p, mean=0.0, std=std * scale)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) to logits (B, T, V) over the padded vocabulary."""
        x = self.drop(self.pos.add(self.embed(idx)))          # (B, T, C)
        for block in self.blocks:
            x = block(x, self.pos)
        return self.head(self.norm(x))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats, computed in fp32; targets of -1 are ignored (padding)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1,
                           reduction=reduction)


def build_model(spec: Spec) -> GPT:
    return GPT(spec.model, spec.tokenizer.size)
