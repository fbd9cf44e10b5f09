"""A spec's corpora as tensors: evaluation windows that predict every token once, and a
fine-tuning corpus whose targets are its responses only."""

from __future__ import annotations

import numpy as np
import torch

from support import tiny_spec, two_phase
from workbench.data.corpus import eval_documents, load_corpus
from workbench.data.prepared import eval_windows, prepare
from workbench.data.streams import pair_stream


def test_eval_windows_predict_every_token_once():
    stream = np.arange(10, dtype=np.uint16)
    x, y = eval_windows(stream, 4)
    assert x.shape == (3, 4)
    assert y[y >= 0].tolist() == list(range(1, 10))
    assert (x.flatten()[: 9] == torch.arange(9)).all()


def test_eval_windows_leave_targets_outside_the_mask_out():
    stream = np.arange(10, dtype=np.int64)
    mask = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    x, y = eval_windows(stream, 4, mask)
    assert y[y >= 0].tolist() == [2, 3, 5, 6, 7, 9]
    assert x.flatten()[:9].tolist() == list(range(9))


def test_pretraining_text_is_the_held_out_bytes_for_the_model_context():
    spec = tiny_spec()
    text = prepare(spec).pretrain
    docs = eval_documents(load_corpus(spec.data), spec.train.eval_bytes)
    assert 0 < text.eval_bytes == sum(len(d.encode()) for d in docs) <= spec.train.eval_bytes
    assert text.eval_x.shape[1] == spec.model.context and text.mask is None
    assert int((text.eval_y >= 0).sum()) == text.eval_bytes + len(docs)      # byte tokens and eos
    assert text.eval_pairs == [("", d) for d in docs]


def test_fine_tuning_pairs_are_signatures_to_docstrings_and_only_responses_are_targets():
    spec = two_phase()
    corpus = load_corpus(spec.finetune.data)
    pairs = corpus.pairs(corpus.train, corpus.train_prompts)[:50]
    assert all(p.lstrip().startswith(("def ", "async def ")) and p.endswith('"""') for p, _ in pairs)
    prep = prepare(spec)
    tok = prep.tokenizer
    ids, mask = pair_stream(tok, pairs)
    # Target positions are exactly the response bytes and the end-of-text after each response.
    assert mask.sum() == sum(len(tok.encode(r)) + 1 for _, r in pairs)
    assert tok.decode(ids[mask][:len(tok.encode(pairs[0][1]))]) == pairs[0][1]
    text = prep.texts["finetune"]
    assert text.eval_bytes == sum(len(r.encode()) for _, r in text.eval_pairs)
    assert int((text.eval_y >= 0).sum()) == sum(len(tok.encode(r)) + 1 for _, r in text.eval_pairs)
    assert len(text.train) == len(text.mask) and 0 < int(text.mask.sum()) < len(text.mask)
