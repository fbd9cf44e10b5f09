"""Every tokenizer kind: lossless round trips, end-of-text separation, stats, caches."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from workbench.data.corpus import Corpus, eval_documents, load_corpus
from workbench.data.sources import StdlibData
from workbench.spec import TokenizerSpec
from workbench.data.streams import cached_stream, stream_key, token_stream, tokenizer_stats
from workbench.data.tokenizer import EOS, TextTokenizer, cache_dir, get_tokenizer

KINDS = ["byte", "char", "bpe", "wordpiece", "unigram"]

VARIED = [
    "héllo  wörld, naïve café",
    "tabs\t\tand\nnewlines\n\n\nend",
    "CRLF line\r\nnext\r\n",
    "emoji 😀🎉 family 👩‍👩‍👧 flag 🇫🇷",
    "日本語のテキストと한국어 and Ελληνικά",
    "   leading and trailing   ",
    "x" * 500,
    " " * 300 + "y",
    "\x00\x01\x7f control and \u200b zero width",
    "a literal <|endoftext|> inside a document",
    "<unk> [UNK] <0x41> ▁ Ġ ##suffix",
    "a",
    "",
]


def spec_for(kind: str, size: int = 1024, **kw) -> TokenizerSpec:
    return TokenizerSpec(kind=kind, vocab_size=None if kind == "byte" else size, **kw)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus(StdlibData(max_bytes=400_000, val_fraction=0.25))


@pytest.fixture(scope="module")
def toks(corpus, tmp_path_factory) -> dict[str, TextTokenizer]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        return {kind: get_tokenizer(spec_for(kind), corpus) for kind in KINDS}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------- behaviour


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
    assert tok.vocab_size <= spec_for(kind).size
    assert 0 <= tok.eos_id < tok.vocab_size
    ids = [i for t in VARIED for i in tok.encode(t)]
    assert max(ids) < tok.vocab_size
    if kind in ("bpe", "wordpiece", "unigram"):
        assert tok.vocab_size == 1024  # 300 kB of Python fills it


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
    assert tok.decode([tok.eos_id]) == EOS


@pytest.mark.parametrize("kind", KINDS)
def test_stats_on_held_out_documents(toks, corpus, kind):
    docs = eval_documents(corpus, 20_000)
    stats = tokenizer_stats(toks[kind], docs)
    assert stats["bytes"] == sum(len(d.encode()) for d in docs) == 20_000
    assert stats["roundtrip_rate"] == 1.0 and stats["unk_rate"] == 0.0
    assert stats["bytes_per_token"] == pytest.approx(stats["bytes"] / stats["tokens"])
    if kind in ("bpe", "wordpiece", "unigram"):
        assert stats["bytes_per_token"] > 2.0


def test_bits_per_byte_denominator_does_not_depend_on_the_tokenizer(toks, corpus):
    docs = eval_documents(corpus, 30_000) + VARIED
    stats = {kind: tokenizer_stats(toks[kind], docs) for kind in KINDS}
    assert len({s["bytes"] for s in stats.values()}) == 1
    assert stats["byte"]["tokens"] == stats["byte"]["bytes"]  # byte: one token per byte
    assert stats["bpe"]["tokens"] < stats["byte"]["tokens"] / 2


def test_byte_tokens_are_the_utf8_bytes(toks):
    text = "é😀\x00 <|endoftext|>"
    assert toks["byte"].encode(text) == list(text.encode())
    assert toks["byte"].vocab_size == 257 and toks["byte"].eos_id == 256


def test_char_spells_rare_characters_as_bytes(toks):
    tok = toks["char"]
    assert len(tok.encode("def")) == 3  # frequent characters are single tokens
    assert len(tok.encode("😀")) == 4  # never seen in the stdlib sample: its four UTF-8 bytes


def test_unk_rate_counts_unknown_tokens(toks):
    tok = toks["unigram"]
    stats = tokenizer_stats(tok, ["plain text"])
    assert tok.unk_id is not None and stats["unk_rate"] == 0.0


# ---------------------------------------------------------------------------------- caching


def test_cache_dir_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "workbench" and cache_dir().is_dir()
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere" and cache_dir().is_dir()


@pytest.mark.parametrize("kind", ["char", "bpe", "wordpiece", "unigram"])
def test_trained_tokenizer_is_cached_and_reloaded_without_training(cache, corpus, kind):
    spec = spec_for(kind, 600, train_bytes=100_000)
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
    get_tokenizer(spec_for("bpe", 600, train_bytes=50_000), corpus)
    get_tokenizer(spec_for("bpe", 700, train_bytes=50_000), corpus)
    get_tokenizer(spec_for("bpe", 600, train_bytes=60_000), corpus)
    other = Corpus(train=corpus.train[:3], val=corpus.val, fingerprint="0" * 64)
    get_tokenizer(spec_for("bpe", 600, train_bytes=50_000), other)
    assert len(list((cache / "tokenizers").glob("*.json"))) == 4


def test_damaged_cache_entry_is_rebuilt(cache, corpus):
    spec = spec_for("bpe", 600, train_bytes=50_000)
    expected = get_tokenizer(spec, corpus).encode(VARIED[0])
    [path] = (cache / "tokenizers").glob("*.json")
    path.write_text('{"kind": "bpe", "tokenizer": {"trunc')
    assert get_tokenizer(spec, corpus).encode(VARIED[0]) == expected


def test_byte_tokenizer_needs_no_cache(cache, corpus):
    get_tokenizer(spec_for("byte"), corpus)
    assert not (cache / "tokenizers").exists()


def test_save_and_load_round_trip(toks, tmp_path):
    for kind, tok in toks.items():
        tok.save(tmp_path / f"{kind}.json")
        back = TextTokenizer.load(tmp_path / f"{kind}.json")
        assert (back.kind, back.vocab_size, back.eos_id, back.unk_id) == \
            (tok.kind, tok.vocab_size, tok.eos_id, tok.unk_id)
        assert back.digest == tok.digest
        assert back.encode_batch(VARIED) == tok.encode_batch(VARIED)


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
        assert np.array_equal(cached_stream(toks[kind], corpus.val, key),
                              token_stream(toks[kind], corpus.val))
    assert len(list((cache / "tokens").iterdir())) == len(KINDS)
