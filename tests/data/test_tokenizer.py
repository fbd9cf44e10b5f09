"""Every tokenizer kind in KINDS: lossless round trips, its vocabulary rules, the disk cache."""

from __future__ import annotations

import time

import pytest

from support import VARIED, tokenizer_spec
from workbench.data.corpus import Corpus
from workbench.data.tokenizer import (EOS, KINDS, MIN_LEARNED_VOCAB, TextTokenizer, cache_dir, get_tokenizer, problems,
                                      vocabulary)

BUILT = [kind for kind, k in KINDS.items() if k.build is not None]      # the file kind reads one instead
TRAINED = [kind for kind in BUILT if KINDS[kind].fixed_size is None]
"""Kinds trained on the corpus (and so cached)."""
SUBWORD = [kind for kind in TRAINED if KINDS[kind].default_size is None]
"""Kinds whose vocabulary must be given: learned subwords, which 300 kB of Python fills."""


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_exact_on_varied_text(toks, kind):
    tok = toks[kind]
    for text in VARIED:
        assert tok.decode(tok.encode(text)) == text, repr(text)
    assert tok.encode_batch(VARIED) == [tok.encode(t) for t in VARIED]


@pytest.mark.parametrize("kind", KINDS)
def test_vocabulary_fits_the_spec(toks, kind):
    tok = toks[kind]
    assert tok.kind == kind
    assert tok.vocab_size <= tokenizer_spec(kind).size
    assert 0 <= tok.eos_id < tok.vocab_size
    ids = [i for t in VARIED for i in tok.encode(t)]
    assert max(ids) < tok.vocab_size
    assert tok.decode([tok.eos_id]) == EOS
    if kind in SUBWORD:
        assert tok.vocab_size == 1024


@pytest.mark.parametrize("kind", BUILT)
def test_vocabulary_rules_of_every_kind(kind):
    rules = KINDS[kind]
    spec = tokenizer_spec(kind, MIN_LEARNED_VOCAB)
    assert problems(spec) == []
    if rules.fixed_size is not None:
        assert vocabulary(spec) == rules.fixed_size
        [(where, message)] = problems(spec.model_copy(update={"vocab_size": rules.fixed_size + 1}))
        assert where == ("tokenizer", "vocab_size") and "fixed vocabulary" in message
        return
    assert vocabulary(spec) == MIN_LEARNED_VOCAB
    [(where, message)] = problems(spec.model_copy(update={"vocab_size": MIN_LEARNED_VOCAB - 1}))
    assert where == ("tokenizer", "vocab_size") and f">= {MIN_LEARNED_VOCAB}" in message
    left_out = spec.model_copy(update={"vocab_size": None})
    if rules.default_size is None:
        assert any("needs a vocab_size" in m for _, m in problems(left_out))
    else:
        assert problems(left_out) == [] and vocabulary(left_out) == rules.default_size


def test_byte_tokens_are_the_utf8_bytes(toks):
    text = "é😀\x00 <|endoftext|>"
    assert toks["byte"].encode(text) == list(text.encode())
    assert toks["byte"].vocab_size == 257 and toks["byte"].eos_id == 256


def test_char_spells_rare_characters_as_bytes(toks):
    tok = toks["char"]
    assert len(tok.encode("def")) == 3  # frequent characters are single tokens
    assert len(tok.encode("😀")) == 4  # never seen in the stdlib sample: its four UTF-8 bytes


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(toks, tmp_path, kind):
    tok = toks[kind]
    tok.save(tmp_path / f"{kind}.json")
    back = TextTokenizer.load(tmp_path / f"{kind}.json")
    assert (back.kind, back.vocab_size, back.eos_id, back.unk_id) == (tok.kind, tok.vocab_size, tok.eos_id, tok.unk_id)
    assert back.digest == tok.digest
    assert back.encode_batch(VARIED) == tok.encode_batch(VARIED)


# ---------------------------------------------------------------------------------- caching


def test_cache_dir_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "workbench" and cache_dir().is_dir()
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere" and cache_dir().is_dir()


@pytest.mark.parametrize("kind", TRAINED)
def test_trained_tokenizer_is_cached_and_reloaded_without_training(cache, corpus, kind):
    spec = tokenizer_spec(kind, 600, train_bytes=100_000)
    first = get_tokenizer(spec, corpus)
    [path] = (cache / "tokenizers").glob("*.json")
    mtime = path.stat().st_mtime_ns
    start = time.perf_counter()
    again = get_tokenizer(spec, corpus)
    assert time.perf_counter() - start < 1.0
    assert path.stat().st_mtime_ns == mtime  # read, not rewritten
    assert again.digest == first.digest
    assert again.encode_batch(VARIED) == first.encode_batch(VARIED)
    assert not [p for p in (cache / "tokenizers").iterdir() if p.suffix != ".json"]


def test_cache_key_follows_spec_and_corpus(cache, corpus):
    get_tokenizer(tokenizer_spec("bpe", 600, train_bytes=50_000), corpus)
    get_tokenizer(tokenizer_spec("bpe", 700, train_bytes=50_000), corpus)
    get_tokenizer(tokenizer_spec("bpe", 600, train_bytes=60_000), corpus)
    other = Corpus(train=corpus.train[:3], val=corpus.val, fingerprint="0" * 64)
    get_tokenizer(tokenizer_spec("bpe", 600, train_bytes=50_000), other)
    assert len(list((cache / "tokenizers").glob("*.json"))) == 4


def test_damaged_cache_entry_is_rebuilt(cache, corpus):
    spec = tokenizer_spec("bpe", 600, train_bytes=50_000)
    expected = get_tokenizer(spec, corpus).encode(VARIED[0])
    [path] = (cache / "tokenizers").glob("*.json")
    path.write_text('{"kind": "bpe", "tokenizer": {"trunc')
    assert get_tokenizer(spec, corpus).encode(VARIED[0]) == expected


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind not in TRAINED])
def test_fixed_tokenizers_need_no_cache(cache, corpus, kind):
    get_tokenizer(tokenizer_spec(kind), corpus)
    assert not (cache / "tokenizers").exists()
