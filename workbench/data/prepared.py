"""A spec's corpora as the model sees them: the tokenizer, each corpus's training stream and
its held-out evaluation windows, built once per run (streams cached on disk)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from workbench.data.corpus import Corpus, eval_documents, load_corpus
from workbench.data.streams import (TokenizerStats, cached_stream, pair_stream, stream_key, token_stream,
                                    tokenizer_stats)
from workbench.data.tokenizer import TextTokenizer, get_tokenizer


@dataclass
class Text:
    """One corpus as the model sees it: its training stream and its held-out windows."""

    train: torch.Tensor          # (n,) int32 token stream of the training documents
    mask: torch.Tensor | None    # (n,) bool: stream positions that are targets (responses); None: all
    eval_x: torch.Tensor         # (W, T) evaluation windows, int64
    eval_y: torch.Tensor         # (W, T) targets; -1 marks padding and prompt tokens
    eval_bytes: int              # UTF-8 bytes of the scored text: the bpb denominator
    eval_pairs: list[tuple[str, str]]   # held-out (prompt, response); prompt "" for plain text


@dataclass
class Prepared:
    """Everything a run needs from its corpora, built once (and cached on disk) per spec."""

    tokenizer: TextTokenizer
    stats: TokenizerStats
    entropy_bpb: float | None
    texts: dict[str, Text]       # "pretrain", and "finetune" when the spec has that phase

    @property
    def pretrain(self) -> Text:
        return self.texts["pretrain"]

    @property
    def unique_tokens(self) -> int:
        """Tokens in the pretraining stream: the unique training tokens batches are drawn from."""
        return len(self.pretrain.train)


def prepare(spec) -> Prepared:
    """The tokenizer and every corpus of a whole spec (its data, tokenizer, model.context, train
    and finetune sections), with the tokenizer's statistics on the held-out text."""
    corpus = load_corpus(spec.data)
    tok = get_tokenizer(spec.tokenizer, corpus)
    T = spec.model.context
    texts = {"pretrain": _text(tok, corpus, spec.train.eval_bytes, T)}
    if spec.finetune is not None:
        ft = spec.finetune.recipe(spec.train)
        texts["finetune"] = _text(tok, load_corpus(spec.finetune.data), ft.eval_bytes, T)
    stats = tokenizer_stats(tok, [p + r for p, r in texts["pretrain"].eval_pairs])
    return Prepared(tok, TokenizerStats.of(tok, stats), corpus.entropy_bits_per_byte, texts)


def warm_caches(spec) -> None:
    """Train (or load) the tokenizer and cache the plain-text training streams on disk: the
    costly part of `prepare`, done once before a data-parallel job's ranks each prepare."""
    corpus = load_corpus(spec.data)
    tok = get_tokenizer(spec.tokenizer, corpus)
    for c in [corpus] + ([load_corpus(spec.finetune.data)] if spec.finetune is not None else []):
        if c.train_prompts is None:
            cached_stream(tok, c.train, stream_key(c, "train"))


def _text(tok: TextTokenizer, corpus: Corpus, eval_bytes: int, T: int) -> Text:
    docs = eval_documents(corpus, eval_bytes)
    pairs = corpus.pairs(docs, corpus.val_prompts)
    if corpus.train_prompts is None:
        train = cached_stream(tok, corpus.train, stream_key(corpus, "train"))
        x, y = eval_windows(token_stream(tok, docs), T)
        return Text(torch.from_numpy(train.astype(np.int32)), None, x, y,
                    sum(len(d.encode()) for d in docs), pairs)
    train, mask = pair_stream(tok, corpus.pairs(corpus.train, corpus.train_prompts))
    stream, eval_mask = pair_stream(tok, pairs)
    x, y = eval_windows(stream, T, eval_mask)
    return Text(torch.from_numpy(train.astype(np.int32)), torch.from_numpy(mask), x, y,
                sum(len(r.encode()) for _, r in pairs), pairs)


def eval_windows(stream: np.ndarray, T: int, mask: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut [eos, doc, eos, doc, ..., eos] into non-overlapping windows so every token after the
    first is predicted exactly once; the last window is padded with ignored targets, and so are
    targets outside `mask` (prompts)."""
    s = torch.from_numpy(stream.astype(np.int64))
    n = len(s) - 1
    W = -(-n // T)
    x = torch.zeros(W * T, dtype=torch.int64)
    y = torch.full((W * T,), -1, dtype=torch.int64)
    x[:n], y[:n] = s[:-1], s[1:]
    if mask is not None:
        y[:n][~torch.from_numpy(mask[1:])] = -1
    return x.view(W, T), y.view(W, T)
