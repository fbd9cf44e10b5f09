"""The layers of a block, built from the spec's model section `m`: the norm and MLP variants
(names resolved through `NORMS` and `MLPS`), attention and the block itself.

Shapes: B batch, T time, C width, H query heads, K key/value heads, D head dim. Each variant
also says how many parameters it has, from the spec alone (`params(m)`), so accounting never
repeats an implementation's arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.model.parametrization import build_parametrization
from workbench.model.positional import NoPosition


class LayerNorm(nn.LayerNorm):
    """LayerNorm: centre and scale each vector; a bias too when model.bias."""

    def __init__(self, m):
        super().__init__(m.width, bias=m.bias)

    @staticmethod
    def params(m) -> int:
        return m.width * (2 if m.bias else 1)


class RMSNorm(nn.RMSNorm):
    """RMSNorm: scale each vector by its root mean square (no centring, no bias)."""

    def __init__(self, m):
        super().__init__(m.width, eps=1e-6)

    @staticmethod
    def params(m) -> int:
        return m.width


NORMS: dict[str, type[nn.Module]] = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


class GeluMLP(nn.Module):
    """Linear-GELU-Linear."""

    def __init__(self, m):
        super().__init__()
        self.up = nn.Linear(m.width, m.mlp_hidden, bias=m.bias)
        self.down = nn.Linear(m.mlp_hidden, m.width, bias=m.bias)

    @staticmethod
    def params(m) -> tuple[int, int]:
        """(matrix weights, biases)."""
        return 2 * m.width * m.mlp_hidden, int(m.bias) * (m.mlp_hidden + m.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Relu2MLP(GeluMLP):
    """Linear-ReLU²-Linear (So et al., Primer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())


class SwiGLU(nn.Module):
    """Gated SiLU (Shazeer) with a third matrix: down(silu(gate(x)) * up(x)); use ratio about 8/3
    to match a 4x GELU block's parameters."""

    def __init__(self, m):
        super().__init__()
        self.gate_up = nn.Linear(m.width, 2 * m.mlp_hidden, bias=m.bias)     # gate and up: one matmul
        self.down = nn.Linear(m.mlp_hidden, m.width, bias=m.bias)

    @staticmethod
    def params(m) -> tuple[int, int]:
        """(matrix weights, biases)."""
        return 3 * m.width * m.mlp_hidden, int(m.bias) * (2 * m.mlp_hidden + m.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


MLPS: dict[str, type[nn.Module]] = {"gelu": GeluMLP, "relu2": Relu2MLP, "swiglu": SwiGLU}


class Attention(nn.Module):
    """Causal self-attention; kv_heads below heads shares keys and values (grouped-query)."""

    def __init__(self, m):
        super().__init__()
        self.H, self.K, self.D = m.heads, m.n_kv_heads, m.head_dim
        self.qkv = nn.Linear(m.width, (self.H + 2 * self.K) * self.D, bias=m.bias)
        self.proj = nn.Linear(self.H * self.D, m.width, bias=m.bias)
        self.dropout = m.dropout
        self.scale = build_parametrization(m).attention_scale()             # None: 1/sqrt(D)

    @staticmethod
    def params(m) -> tuple[int, int]:
        """(matrix weights, biases)."""
        H, K, D, d = m.heads, m.n_kv_heads, m.head_dim, m.width
        return d * (H + 2 * K) * D + H * D * d, int(m.bias) * ((H + 2 * K) * D + d)

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
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale, enable_gqa=self.K != self.H)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.H * self.D))


class Block(nn.Module):
    """Attention then MLP, each a residual branch, normalised before (pre) or after (post)."""

    def __init__(self, m):
        super().__init__()
        self.norm1, self.norm2 = NORMS[m.norm](m), NORMS[m.norm](m)
        self.attn = Attention(m)
        self.mlp = MLPS[m.mlp.kind](m)
        self.pre = m.norm_placement == "pre"
        self.drop = nn.Dropout(m.dropout) if m.dropout else nn.Identity()

    @staticmethod
    def params(m) -> tuple[int, int]:
        """(matrix weights, other parameters) of one block."""
        (aw, ab), (mw, mb) = Attention.params(m), MLPS[m.mlp.kind].params(m)
        return aw + mw, ab + mb + 2 * NORMS[m.norm].params(m)

    def forward(self, x: torch.Tensor, pos: NoPosition) -> torch.Tensor:
        if self.pre:
            x = x + self.drop(self.attn(self.norm1(x), pos))
            return x + self.drop(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, pos)))
        return self.norm2(x + self.drop(self.mlp(x)))
