"""A spec's corpora as the model sees them: the tokenizer, each corpus's training stream and
its held-out evaluation windows, built once per run (streams cached on disk). A corpus whose
sides are too small to train on or to evaluate is refused here, before any training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from workbench.data.corpus import Corpus, CorpusStats, eval_documents, load_corpus
from workbench.data.streams import (TokenizerStats, cached_stream, pair_stream, stream_key, token_stream,
                                    tokenizer_stats)
from workbench.data.tokenizer import TextTokenizer, get_tokenizer
from workbench.plumbing.errors import DataError


@dataclass
class Text:
    """One corpus as the model sees it: its training stream and its held-out windows."""

    train: np.ndarray            # (n,) token stream of the training text; memory-mapped when plain text
    mask: np.ndarray | None      # (n,) bool: stream positions that are targets (responses); None: all
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
    corpora: dict[str, CorpusStats]   # the same keys: how each corpus was split

    @property
    def pretrain(self) -> Text:
        return self.texts["pretrain"]

    @property
    def unique_tokens(self) -> int:
        """Tokens in the pretraining stream: the unique training tokens batches are drawn from."""
        return len(self.pretrain.train)


def prepare(spec, progress: bool = False) -> Prepared:
    """The tokenizer and every corpus of a whole spec (its data, tokenizer, model.context, train
    and finetune sections), with the tokenizer's statistics on the held-out text. Raises
    DataError when a corpus's training or held-out side is too small for model.context. With
    `progress`, encoding a new training stream shows a progress bar on a terminal."""
    corpora = {"pretrain": load_corpus(spec.data)}
    if spec.finetune is not None:    # both read (and checked) before the tokenizer is trained
        corpora["finetune"] = load_corpus(spec.finetune.data, "finetune.data")
    tok = get_tokenizer(spec.tokenizer, corpora["pretrain"])
    T = spec.model.context
    texts = {"pretrain": _text(tok, corpora["pretrain"], spec.train.eval_bytes, T, "data", progress)}
    if spec.finetune is not None:
        ft = spec.finetune.recipe(spec.train)
        texts["finetune"] = _text(tok, corpora["finetune"], ft.eval_bytes, T, "finetune.data", progress)
    stats = tokenizer_stats(tok, [p + r for p, r in texts["pretrain"].eval_pairs])
    file = spec.tokenizer.path if spec.tokenizer.kind == "file" else None
    return Prepared(tok, TokenizerStats.of(tok, stats, file), corpora["pretrain"].entropy_bits_per_byte, texts,
                    {name: c.stats for name, c in corpora.items()})


def warm_caches(spec) -> None:
    """Train (or load) the tokenizer and cache the plain-text training streams on disk: the
    costly part of `prepare`, done once before a data-parallel job's ranks each prepare."""
    corpus = load_corpus(spec.data)
    tok = get_tokenizer(spec.tokenizer, corpus)
    for c in [corpus] + ([load_corpus(spec.finetune.data, "finetune.data")] if spec.finetune is not None else []):
        if c.train_prompts is None:
            cached_stream(tok, c.train, stream_key(c, "train"))


def _text(tok: TextTokenizer, corpus: Corpus, eval_bytes: int, T: int, where: str, progress: bool) -> Text:
    docs = eval_documents(corpus, eval_bytes)
    pairs = corpus.pairs(docs, corpus.val_prompts)
    if corpus.train_prompts is None:
        train = cached_stream(tok, corpus.train, stream_key(corpus, "train"), progress)
        x, y = eval_windows(token_stream(tok, docs), T)
        text = Text(train, None, x, y, sum(len(d.encode()) for d in docs), pairs)
    else:
        train, mask = pair_stream(tok, corpus.pairs(corpus.train, corpus.train_prompts))
        stream, eval_mask = pair_stream(tok, pairs)
        x, y = eval_windows(stream, T, eval_mask)
        text = Text(train.astype(np.int32), mask, x, y, sum(len(r.encode()) for _, r in pairs), pairs)
    _check_sizes(text, corpus, T, where)
    return text


def _check_sizes(text: Text, corpus: Corpus, T: int, where: str) -> None:
    """One clear error when a side is too small: training needs more than one window of
    model.context tokens, and evaluation at least one window's worth of scored tokens."""
    s = corpus.stats
    sides = (f"split by {s.split}: {s.train_bytes:,} bytes to train on, {s.val_bytes:,} held out"
             if s is not None else "")
    if len(text.train) <= T + 1:
        raise DataError(f"{where}: the training side is {len(text.train):,} tokens ({sides}); "
                        f"model.context {T} needs at least {T + 2}: add text, shorten model.context"
                        + (f" or lower {where}.val_fraction" if s and s.split != "val_paths" else ""))
    scored = int((text.eval_y >= 0).sum())
    if scored < T:
        if text.eval_bytes < (s.val_bytes if s else 0) * 0.9:
            fix = f"raise {'train' if where == 'data' else 'finetune'}.eval_bytes"
        elif s and s.split == "val_paths":
            fix = "add text to the held-out files"
        else:
            fix = f"raise {where}.val_fraction, name held-out files with {where}.split.val_paths"
        raise DataError(f"{where}.split: the held-out side gives {scored:,} tokens to score ({sides}), "
                        f"fewer than one evaluation window of model.context {T}: {fix}, or shorten "
                        "model.context")


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
