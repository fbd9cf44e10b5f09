"""Token streams: documents joined by end-of-text, tokenizer statistics on raw bytes, the disk
cache of streams, and prompt/response streams that mark only responses as targets."""

from __future__ import annotations

import numpy as np
import pytest

from support import VARIED
from workbench.data.corpus import eval_documents
from workbench.data.streams import cached_stream, pair_stream, stream_key, token_stream, tokenizer_stats
from workbench.data.tokenizer import KINDS

SUBWORD = [kind for kind, k in KINDS.items() if k.fixed_size is None and k.default_size is None]


@pytest.mark.parametrize("kind", KINDS)
def test_end_of_text_separates_documents_and_never_comes_from_text(toks, kind):
    tok = toks[kind]
    docs = VARIED[:-1]  # an empty document would leave two eos side by side; fine, but not here
    stream = token_stream(tok, docs)
    assert stream.dtype == np.uint16
    assert stream[0] == stream[-1] == tok.eos_id
    assert (stream == tok.eos_id).sum() == len(docs) + 1
    cuts = np.flatnonzero(stream == tok.eos_id)
    assert [tok.decode(stream[a + 1:b]) for a, b in zip(cuts, cuts[1:])] == docs


@pytest.mark.parametrize("kind", KINDS)
def test_stats_on_held_out_documents(toks, corpus, kind):
    docs = eval_documents(corpus, 20_000)
    stats = tokenizer_stats(toks[kind], docs)
    assert stats["bytes"] == sum(len(d.encode()) for d in docs) == 20_000
    assert stats["roundtrip_rate"] == 1.0 and stats["unk_rate"] == 0.0
    assert stats["bytes_per_token"] == pytest.approx(stats["bytes"] / stats["tokens"])
    if kind in SUBWORD:
        assert stats["bytes_per_token"] > 2.0


def test_bits_per_byte_denominator_does_not_depend_on_the_tokenizer(toks, corpus):
    docs = eval_documents(corpus, 30_000) + VARIED
    stats = {kind: tokenizer_stats(toks[kind], docs) for kind in KINDS}
    assert len({s["bytes"] for s in stats.values()}) == 1
    assert stats["byte"]["tokens"] == stats["byte"]["bytes"]  # byte: one token per byte
    assert stats["bpe"]["tokens"] < stats["byte"]["tokens"] / 2


def test_unk_rate_counts_unknown_tokens(toks):
    tok = toks["unigram"]
    stats = tokenizer_stats(tok, ["plain text"])
    assert tok.unk_id is not None and stats["unk_rate"] == 0.0


def test_cached_stream_writes_once_and_memory_maps(cache, toks, corpus):
    tok = toks["bpe"]
    key = stream_key(corpus, "train")
    first = cached_stream(tok, corpus.train, key)
    [path] = (cache / "tokens").iterdir()  # no temporary files left behind
    assert path.name.startswith(key) and path.suffix == ".npy" and not first.flags.writeable
    again = cached_stream(tok, corpus.train, key)
    assert isinstance(again, np.memmap) and np.array_equal(first, again)
    assert np.array_equal(again, token_stream(tok, corpus.train))
    with pytest.raises(ValueError, match="key"):
        cached_stream(tok, corpus.train, "../escape")


def test_cached_streams_of_different_tokenizers_never_collide(cache, toks, corpus):
    key = stream_key(corpus, "val")  # the same key on purpose
    for kind in KINDS:
        assert np.array_equal(cached_stream(toks[kind], corpus.val, key), token_stream(toks[kind], corpus.val))
    assert len(list((cache / "tokens").iterdir())) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_pair_stream_marks_responses_and_their_end_of_text_as_targets(toks, kind):
    tok = toks[kind]
    pairs = [("def f(x):\n    \"\"\"", "Return x.\n"), ("prompt é", "réponse 😀"), ("", "no prompt")]
    ids, mask = pair_stream(tok, pairs)
    assert len(ids) == len(mask) and ids[0] == tok.eos_id and not mask[0]
    assert mask.sum() == sum(len(tok.encode(r)) + 1 for _, r in pairs)
    cuts = np.flatnonzero(ids == tok.eos_id)
    assert len(cuts) == len(pairs) + 1 and mask[cuts[1:]].all()
    for (prompt, response), a, b in zip(pairs, cuts, cuts[1:]):
        body, targets = ids[a + 1:b], mask[a + 1:b]
        assert tok.decode(body[~targets]) == prompt and tok.decode(body[targets]) == response
