"""A plain nanoGPT-style GPT and training step, as the throughput baseline for `workbench bench`.

Written for comparison only: the GPT-2 recipe (learned positions, GELU, LayerNorm, tied
embeddings, fused causal SDPA) with the usual straightforward training step: batches stacked
from random slices of the token stream, AdamW (fused on CUDA, foreach elsewhere), gradient
clipping, bf16 autocast on GPU.

    python benchmarks/nanogpt_style.py --depth 4 --width 256 --heads 4 --context 256 --json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(width, 3 * width, bias=bias)
        self.c_proj = nn.Linear(width, width, bias=bias)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=bias)
        self.c_proj = nn.Linear(4 * width, width, bias=bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, bias=bias)
        self.attn = SelfAttention(width, heads, bias)
        self.ln_2 = nn.LayerNorm(width, bias=bias)
        self.mlp = MLP(width, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, depth: int, width: int, heads: int, context: int, vocab: int, bias: bool = True):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width, heads, bias) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width, bias=bias)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            else:
                nn.init.zeros_(p) if name.endswith("bias") else None

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def run(depth=4, width=256, heads=4, context=256, vocab=257, batch_tokens=8192, steps=20,
        warmup=3, bias=True, seed=0) -> dict:
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GPT(depth, width, heads, context, vocab, bias).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), fused=device == "cuda")
    data = np.random.default_rng(seed).integers(0, vocab, 1 << 20).astype(np.uint16)
    B = batch_tokens // context
    ctx = torch.autocast(device, dtype=torch.bfloat16) if device == "cuda" else nullcontext()

    def get_batch():
        ix = torch.randint(len(data) - context - 1, (B,))
        x = torch.stack([torch.from_numpy(data[i:i + context].astype(np.int64)) for i in ix.tolist()])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + context].astype(np.int64)) for i in ix.tolist()])
        return x.to(device), y.to(device)

    def step():
        x, y = get_batch()
        with ctx:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    sync()
    elapsed = time.perf_counter() - start
    return {"tokens_per_s": steps * batch_tokens / elapsed, "step_time_s": elapsed / steps,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("depth", 4), ("width", 256), ("heads", 4), ("context", 256), ("vocab", 257),
                          ("batch-tokens", 8192), ("steps", 20), ("warmup", 3)]:
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = run(a.depth, a.width, a.heads, a.context, a.vocab, a.batch_tokens, a.steps, a.warmup)
    print(json.dumps(result) if a.json else f"{result['tokens_per_s']:,.0f} tokens/s")


if __name__ == "__main__":
    main()
