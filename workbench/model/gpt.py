"""A decoder-only transformer LM built from a spec: token embedding, positional scheme, `depth`
blocks, final norm (pre-norm only), LM head.

Shapes: B batch, T time, C width, V vocabulary. The model receives the spec's model section `m`
whole; its variants are names resolved next to their implementations (positional.py, layers.py,
parametrization.py: how initialisation, learning rates and the output scale follow the width).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.model.layers import NORMS, Block
from workbench.model.parametrization import build_parametrization
from workbench.model.positional import build_positional


def padded_vocab(m, vocab_size: int) -> int:
    """The embedding table's rows: the vocabulary rounded up to model.vocab_multiple."""
    return math.ceil(vocab_size / m.vocab_multiple) * m.vocab_multiple


class GPT(nn.Module):
    """Token embedding, positional scheme, `depth` blocks, final norm (pre-norm only), LM head."""

    def __init__(self, m, vocab_size: int):
        super().__init__()
        self.spec = m
        self.parametrization = build_parametrization(m)
        self.output_scale = self.parametrization.output_scale()
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
        for name, p in self.named_parameters():          # a tied head once, as the embedding
            self.parametrization.init(name, p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) to logits (B, T, V) over the padded vocabulary."""
        x = self.drop(self.pos.add(self.embed(idx)))          # (B, T, C)
        for block in self.blocks:
            x = block(x, self.pos)
        logits = self.head(self.norm(x))
        return logits if self.output_scale == 1 else logits * self.output_scale


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats, computed in fp32; targets of -1 are ignored (padding)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1,
                           reduction=reduction)


def build_model(spec) -> GPT:
    """The model a whole spec describes (its model section, its tokenizer's vocabulary)."""
    return GPT(spec.model, spec.tokenizer.size)
