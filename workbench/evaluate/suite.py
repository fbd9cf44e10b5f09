"""Evaluation beyond loss: held-out line completion scored by BLEU and exact match, and the cost
of storing weights in int8.

Bits per byte says how well a model predicts text; these say what people notice. A completion
task is a line of held-out text cut in half: the model continues the first half greedily up to
the end of the line and the continuation is compared with the real second half. Everything here
is deterministic: the same documents, seed and weights give the same tasks, completions and
scores.
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter

import numpy as np
import torch

from workbench.data.prepared import Text
from workbench.data.tokenizer import TextTokenizer
from workbench.evaluate.generate import generate
from workbench.model.gpt import GPT
from workbench.record import Completion

_WORD = re.compile(r"\w+|[^\w\s]")
_COMMENT = ("#", "//", "/*")
MIN_LINE, MAX_LINE = 16, 160  # stripped characters of a line worth completing


# ------------------------------------------------------------------------------- metrics


def words(text: str) -> list[str]:
    """BLEU's tokens: runs of word characters and single punctuation marks, whitespace dropped.
    `f(x, y)` is `f ( x , y )`, so code and prose are both scored on meaningful units, and the
    score does not depend on any model's tokenizer."""
    return _WORD.findall(text)


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(candidates: list[str], references: list[str], max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002) with one reference per candidate, in [0, 1].

    For each n in 1..max_n, n-gram matches (each clipped at the reference's count) and candidate
    n-grams are summed over the whole corpus before dividing; the score is the geometric mean of
    those precisions times the brevity penalty exp(1 - r/c) when the total candidate length c is
    below the total reference length r. No smoothing: 0.0 when any precision is 0 or c is 0."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for cand, ref in zip(candidates, references):
        cw, rw = words(cand), words(ref)
        c, r = c + len(cw), r + len(rw)
        for n in range(1, max_n + 1):
            got, want = _ngrams(cw, n), _ngrams(rw, n)
            matches[n - 1] += sum(min(k, want[g]) for g, k in got.items())
            totals[n - 1] += sum(got.values())
    if c == 0 or 0 in matches:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 0.0 if c >= r else 1 - r / c
    return min(1.0, math.exp(log_precision + brevity))


def exact_match(candidates: list[str], references: list[str]) -> float:
    """Fraction of candidates equal to their reference after stripping surrounding whitespace;
    0.0 for no candidates."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    if not candidates:
        return 0.0
    return sum(c.strip() == r.strip() for c, r in zip(candidates, references)) / len(candidates)


# ------------------------------------------------------------------------------ the task


def _worth_completing(line: str) -> bool:
    s = line.strip()
    return MIN_LINE <= len(s) <= MAX_LINE and not s.startswith(_COMMENT)


def completion_tasks(docs: list[str], n: int, seed: int = 0,
                     context_bytes: int = 256) -> list[tuple[str, str]]:
    """Up to n (prompt, reference) pairs cut from lines of `docs` (held-out text).

    A line qualifies when its stripped length is 16..160 characters and it is not a comment.
    The reference is the second half of the line (split at the middle of its stripped text, by
    characters, without the newline); the prompt is at most `context_bytes` UTF-8 bytes of the
    text before the line (cut at a character boundary) followed by the line's indentation and
    first half, so prompt + reference ends with the whole line. Lines are drawn round-robin over
    the documents in a seeded order, so they spread over documents rather than crowd into the
    first; the pairs come back in document order, and a larger n keeps every pair of a smaller
    one."""
    rng = np.random.default_rng(seed)
    per_doc: list[list[tuple[int, int]]] = []            # (start, end) of qualifying lines
    for text in docs:
        spans, start = [], 0
        for raw in text.split("\n"):
            line = raw.removesuffix("\r")
            if _worth_completing(line):
                spans.append((start, start + len(line)))
            start += len(raw) + 1
        per_doc.append([spans[i] for i in rng.permutation(len(spans))])
    order = [d for d in rng.permutation(len(docs)) if per_doc[d]]
    picked: list[tuple[int, int, int]] = []
    for rank in range(max((len(per_doc[d]) for d in order), default=0)):
        for d in order:
            if rank < len(per_doc[d]) and len(picked) < n:
                picked.append((d, *per_doc[d][rank]))
    tasks = []
    for d, start, end in sorted(picked):
        text, line = docs[d], docs[d][start:end]
        indent = len(line) - len(line.lstrip())
        cut = start + indent + len(line.strip()) // 2
        before = text[:start].encode()
        before = before[max(0, len(before) - context_bytes):].decode("utf-8", errors="ignore")
        tasks.append((before + text[start:cut], text[cut:end]))
    return tasks


# ------------------------------------------------------------------------------- decoding


@torch.no_grad()
def greedy_complete(model: GPT, tok: TextTokenizer, prompts: list[str], max_new_tokens: int = 48,
                    batch: int = 32) -> list[str]:
    """The greedy (argmax) continuation of each prompt up to its first newline or end-of-text, at
    most `max_new_tokens` tokens, without the newline.

    Each prompt is encoded as [eos] + its tokens. Prompts are batched by encoded length, and
    every row of a batch is cropped to its last L tokens, L = min(shortest row, context - 1), so
    rows have equal length and need no padding or attention mask. The price is that a row longer
    than L loses its oldest tokens (sorting by length keeps such cuts small); a prompt of at most
    L tokens, [eos] included, is seen whole, as `sample.generate` would see it. Each step
    recomputes the whole window (no KV cache) on the last `context` tokens, so the window slides
    once the continuation grows; a batch stops once every row has ended. The model runs in eval mode on its own
    device, and its mode is restored after."""
    if not prompts:
        return []
    device = next(model.parameters()).device
    T, V = model.spec.context, model.vocab_size
    encoded = [[tok.eos_id] + ids for ids in tok.encode_batch(prompts)]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    ends = torch.tensor(["\n" in s for s in tok.decode_batch([[i] for i in range(V)])], device=device)
    ends[tok.eos_id] = True
    out = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for first in range(0, len(order), batch):
            rows = order[first:first + batch]
            L = max(1, min(min(len(encoded[i]) for i in rows), T - 1))
            x = torch.tensor([encoded[i][-L:] for i in rows], dtype=torch.long, device=device)
            done = torch.zeros(len(rows), dtype=torch.bool, device=device)
            for _ in range(max_new_tokens):
                nxt = model(x[:, -T:])[:, -1, :V].argmax(dim=-1)
                x = torch.cat([x, nxt[:, None]], dim=1)
                done |= ends[nxt]
                if done.all():
                    break
            for i, ids in zip(rows, x[:, L:].tolist()):
                if tok.eos_id in ids:
                    ids = ids[:ids.index(tok.eos_id)]
                out[i] = tok.decode(ids).split("\n", 1)[0]
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------------- int8


def _int8_round_trip(w: torch.Tensor) -> torch.Tensor:
    """w through symmetric per-row int8: each row (output unit of a linear layer, token of an
    embedding table) scaled so its largest magnitude is 127, rounded, and scaled back."""
    rows = w.detach().float().reshape(w.shape[0], -1)
    scale = rows.abs().amax(dim=1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(rows / scale).clamp(-127, 127)
    return (q * scale).reshape(w.shape).to(w.dtype)


def _matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Weight matrices and embedding tables, each tied tensor once."""
    return [p for p in model.parameters() if p.dim() >= 2]


@torch.no_grad()
def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `model` with every weight matrix (dim >= 2: linear weights, embedding
    tables; a tied tensor once) replaced by its int8 round trip (`_int8_round_trip`), in the
    original dtype. Biases and norm gains are kept. This measures what weight-only int8 storage
    costs in quality, the part that compresses a checkpoint four-fold, not the speed of int8
    kernels: the copy still computes in the original dtype."""
    quantized = copy.deepcopy(model)
    for p in _matrices(quantized):
        p.copy_(_int8_round_trip(p))
    return quantized


@torch.no_grad()
def int8_error(model: torch.nn.Module) -> float:
    """The largest relative Frobenius error ||W - int8(W)|| / ||W|| over the weight matrices
    `quantize_int8` would change; 0.0 for a model without any."""
    worst = 0.0
    for p in _matrices(model):
        w = p.detach().float()
        norm = torch.linalg.norm(w).item()
        if norm > 0:
            worst = max(worst, torch.linalg.norm(w - _int8_round_trip(p).float()).item() / norm)
    return worst


# ----------------------------------------------------------------------------- the suite


def completions_and_samples(net: GPT, tok: TextTokenizer, text: Text, completions: int, samples: int,
                            seed: int) -> tuple[Completion | None, list[dict[str, str]]]:
    """The finished model on a corpus's held-out text: `completions` completion tasks scored by
    exact match and BLEU (None when there is no task), and `samples` continuations to read.
    Plain text is cut into line-completion tasks; prompt/response pairs ask for the response's
    first line."""
    if text.mask is None:
        tasks = completion_tasks([r for _, r in text.eval_pairs], completions, seed=seed)
    else:
        pairs = [(p, r.split("\n", 1)[0]) for p, r in text.eval_pairs if r.strip()]
        tasks = pairs[::max(1, len(pairs) // completions)][:completions] if completions else []
    completion = None
    if tasks:
        outputs = greedy_complete(net, tok, [p for p, _ in tasks])
        refs = [r for _, r in tasks]
        completion = Completion(
            tasks=len(tasks), exact_match=exact_match(outputs, refs), bleu=bleu(outputs, refs),
            examples=[{"prompt": p[-120:], "reference": r, "output": o}
                      for (p, r), o in list(zip(tasks, outputs))[:5]])
    prompts = [p if p else r.split("\n", 1)[0][:40] for p, r in text.eval_pairs[:samples]]
    return completion, [{"prompt": p, "text": generate(net, tok, p, 64, seed=seed + i)} for i, p in enumerate(prompts)]
