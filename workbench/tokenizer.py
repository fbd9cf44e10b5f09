"""Tokenizers, their on-disk cache, statistics and token streams.

Every kind is a Hugging Face `tokenizers.Tokenizer` built from the spec's `tokenizer` section and
resolved through `_BUILDERS`. All kinds are lossless on any Unicode text: byte, bpe, wordpiece and
unigram work on the 256 byte-level symbols; char falls back to UTF-8 byte tokens.

Documents are separated by one special token, `<|endoftext|>`. Encoding never produces it (nor
`<unk>`): special tokens are not matched in input text, so a document that contains the literal
string `<|endoftext|>` is encoded as ordinary characters and round-trips. `decode` renders the
end-of-text id as that same string, so decoded streams read naturally.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from functools import cached_property
from pathlib import Path
from typing import IO, Callable, Iterable

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from workbench.data import Corpus, take_bytes
from workbench.spec import TokenizerSpec

EOS = "<|endoftext|>"
UNK = "<unk>"
_FORMAT = 1  # bump when a builder changes, so cached tokenizers are rebuilt
_BATCH = 256  # documents per encode_batch call: bounds memory on large corpora


def cache_dir() -> Path:
    """Root of the on-disk caches: $WORKBENCH_CACHE if set, else ~/.cache/workbench."""
    root = Path(os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "workbench")
    root.mkdir(parents=True, exist_ok=True)
    return root


class TextTokenizer:
    """A Hugging Face tokenizer with the workbench's conventions: no special tokens added on
    encode, special tokens rendered on decode, one end-of-text id between documents."""

    def __init__(self, kind: str, hf: Tokenizer):
        self.kind = kind
        self._hf = hf
        # Treat "<|endoftext|>" in input text as text: only token_stream places end-of-text ids.
        hf.encode_special_tokens = True
        self.vocab_size: int = hf.get_vocab_size(with_added_tokens=True)
        eos = hf.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"{kind} tokenizer has no {EOS} token")
        self.eos_id: int = eos
        self.unk_id: int | None = hf.token_to_id(UNK)

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the tokenizer's full serialised form: equal digests encode alike."""
        return hashlib.sha256(f"{self.kind}\n{self._hf.to_str()}".encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (no end-of-text added)."""
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel without offsets."""
        return [e.ids for e in self._hf.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of token ids; end-of-text ids appear as "<|endoftext|>"."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        return self._hf.decode(ids, skip_special_tokens=False)

    def decode_batch(self, batch: list[list[int]]) -> list[str]:
        """Texts of many id lists, decoded in parallel."""
        return self._hf.decode_batch(batch, skip_special_tokens=False)

    def save(self, path: Path) -> None:
        """Write the tokenizer to one JSON file, atomically."""
        blob = {"format": _FORMAT, "kind": self.kind, "tokenizer": json.loads(self._hf.to_str())}
        _write_atomic(Path(path), lambda f: f.write(json.dumps(blob).encode()))

    @classmethod
    def load(cls, path: Path) -> TextTokenizer:
        """Read a tokenizer written by `save`."""
        blob = json.loads(Path(path).read_text())
        return cls(blob["kind"], Tokenizer.from_str(json.dumps(blob["tokenizer"])))


def get_tokenizer(spec: TokenizerSpec, corpus: Corpus) -> TextTokenizer:
    """The tokenizer a spec names. byte needs no training; the other kinds train on the corpus's
    training split (at most spec.train_bytes of it) once, then load from the disk cache."""
    if spec.kind == "byte":
        return TextTokenizer("byte", _byte([], 257))
    key = json.dumps({"kind": spec.kind, "size": spec.size, "train_bytes": spec.train_bytes,
                      "corpus": corpus.fingerprint, "format": _FORMAT,
                      "tokenizers": tokenizers.__version__}, sort_keys=True)
    path = cache_dir() / "tokenizers" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    if path.exists():
        try:
            return TextTokenizer.load(path)
        except Exception:  # a damaged or foreign cache entry is rebuilt, never trusted
            pass
    docs = corpus.train if spec.train_bytes is None else take_bytes(corpus.train, spec.train_bytes)
    TextTokenizer(spec.kind, _BUILDERS[spec.kind](docs, spec.size)).save(path)
    # Return what later runs will load: serialisation rounds some unigram scores by one ulp, and
    # every process should encode (and hash, for stream caches) the same tokenizer.
    return TextTokenizer.load(path)


# ---------------------------------------------------------------------------------- builders


def _byte_chars() -> list[str]:
    """The printable character ByteLevel uses for each byte 0..255 (GPT-2's table)."""
    direct = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
              *range(ord("®"), ord("ÿ") + 1)]
    chars, shifted = {}, 0
    for b in range(256):
        if b in direct:
            chars[b] = chr(b)
        else:  # bytes without a printable Latin-1 form move past 255, in order
            chars[b] = chr(256 + shifted)
            shifted += 1
    return [chars[b] for b in range(256)]


def _byte_level(hf: Tokenizer, regex: bool = True) -> Tokenizer:
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=regex)
    hf.decoder = decoders.ByteLevel()
    return hf


def _byte(docs: list[str], size: int) -> Tokenizer:
    # Token id = byte value; the whole text is one pre-token and there are no merges.
    hf = Tokenizer(models.BPE({c: b for b, c in enumerate(_byte_chars())}, []))
    hf.add_special_tokens([AddedToken(EOS, special=True)])
    return _byte_level(hf, regex=False)


def _bpe(docs: list[str], size: int) -> Tokenizer:
    hf = _byte_level(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(docs, trainer, length=len(docs))
    return hf


def _unigram(docs: list[str], size: int) -> Tokenizer:
    hf = _byte_level(Tokenizer(models.Unigram()))
    # The full byte alphabet stays in the vocabulary, so <unk> is never needed in practice.
    trainer = trainers.UnigramTrainer(vocab_size=size, special_tokens=[EOS, UNK], unk_token=UNK,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    hf.train_from_iterator(docs, trainer, length=len(docs))
    return hf


# WordPiece marks continuation pieces with a prefix. "\u2581" is not a ByteLevel character, so
# stripping it and joining the pieces restores the byte-level text exactly; the stock WordPiece
# decoder would instead insert spaces between words and lose whitespace.
_PREFIX = "\u2581"
# Greedy longest-match is worse than quadratic in word length (10k characters: half a minute),
# and longer words would become <unk>; so byte-level words are cut into pieces of at most this.
_MAX_WORD = 100
# A cut can fall inside a UTF-8 character, so every byte that occurs in UTF-8 can start or
# continue a word; C0, C1 and F5..FF never occur and need no piece.
_UTF8_BYTES = [*range(0xC0), *range(0xC2, 0xF5)]


def _wordpiece(docs: list[str], size: int) -> Tokenizer:
    def build(vocab: dict[str, int] | None) -> Tokenizer:
        hf = Tokenizer(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=_PREFIX,
                                        max_input_chars_per_word=_MAX_WORD))
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.ByteLevel(add_prefix_space=False),
            # ByteLevel characters are never "\n", so "." matches any of them.
            pre_tokenizers.Split(Regex(f".{{1,{_MAX_WORD}}}"), behavior="isolated"),
        ])
        hf.decoder = decoders.Sequence([decoders.Replace(_PREFIX, ""), decoders.ByteLevel()])
        hf.add_special_tokens([AddedToken(EOS, special=True), AddedToken(UNK, special=True)])
        return hf

    hf = build(None)
    trainer = trainers.WordPieceTrainer(vocab_size=size, special_tokens=[EOS, UNK],
                                        continuing_subword_prefix=_PREFIX, show_progress=False,
                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(docs, trainer, length=len(docs))
    # The trainer only adds a continuation piece for bytes it saw mid-word, and WordPiece turns a
    # whole word with any unknown byte into <unk>. Put every single-byte piece first (486 of
    # them), then the learned pieces in the order they were learned, up to `size`.
    byte_chars = _byte_chars()
    chars = [byte_chars[b] for b in _UTF8_BYTES]
    singles = chars + [_PREFIX + c for c in chars]
    learned = sorted(hf.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
    pieces = [t for t, _ in learned if len(t.removeprefix(_PREFIX)) > 1 and t not in (EOS, UNK)]
    tokens = ([EOS, UNK] + singles + pieces)[:size]
    return build({t: i for i, t in enumerate(tokens)})


def _char(docs: list[str], size: int) -> Tokenizer:
    # The most frequent characters are single tokens; any other character is spelled as its
    # UTF-8 bytes by byte fallback. No merges, so no multi-character token can ever form.
    counts = np.bincount(np.frombuffer("".join(docs).encode("utf-32-le"), dtype=np.uint32))
    n_chars = size - 256 - 1
    seen = np.flatnonzero(counts)
    top = seen[np.lexsort((seen, -counts[seen]))][:n_chars]  # by count, ties by code point
    tokens = [f"<0x{b:02X}>" for b in range(256)] + [chr(c) for c in top]
    hf = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [], byte_fallback=True))
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    hf.add_special_tokens([AddedToken(EOS, special=True)])
    return hf


_BUILDERS: dict[str, Callable[[list[str], int], Tokenizer]] = {
    "byte": _byte,
    "bpe": _bpe,
    "wordpiece": _wordpiece,
    "unigram": _unigram,
    "char": _char,
}


# ------------------------------------------------------------------------ streams and stats


def token_stream(tok: TextTokenizer, docs: list[str]) -> np.ndarray:
    """[eos, doc1 tokens..., eos, doc2 tokens..., eos]: uint16 when the vocabulary fits, else
    uint32."""
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    eos = np.array([tok.eos_id], dtype=dtype)
    pieces = [eos]
    for start in range(0, len(docs), _BATCH):
        for ids in tok.encode_batch(docs[start:start + _BATCH]):
            pieces += [np.array(ids, dtype=dtype), eos]
    return np.concatenate(pieces)


def pair_stream(tok: TextTokenizer, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """[eos, prompt1, response1, eos, prompt2, ...] and a mask of the tokens that are targets:
    responses and the eos closing each (the model learns to stop), not prompts. Prompt and
    response are encoded apart, so no token spans the boundary."""
    ids, mask = [np.array([tok.eos_id])], [np.zeros(1, bool)]
    prompts = tok.encode_batch([p for p, _ in pairs]) if pairs else []
    responses = tok.encode_batch([r for _, r in pairs]) if pairs else []
    for p, r in zip(prompts, responses):
        ids += [np.array(p, dtype=np.int64), np.array(r + [tok.eos_id], dtype=np.int64)]
        mask += [np.zeros(len(p), bool), np.ones(len(r) + 1, bool)]
    return np.concatenate(ids), np.concatenate(mask)


def stream_key(corpus: Corpus, split: str) -> str:
    """A `cached_stream` key for some documents of a corpus: its fingerprint and which split
    (e.g. "train", or "eval-65536" for the first 65536 held-out bytes)."""
    return f"{corpus.fingerprint[:20]}-{split}"


def cached_stream(tok: TextTokenizer, docs: list[str], key: str) -> np.ndarray:
    """`token_stream(tok, docs)`, cached on disk. `key` names the documents (see `stream_key`);
    the file is cache_dir()/tokens/<key>-<tokenizer digest>.npy, so a stream is never read back
    for a different tokenizer whatever key a caller picks. The array is read-only; a cache hit
    is memory-mapped."""
    if not re.fullmatch(r"[\w.-]+", key):
        raise ValueError(f"stream cache key {key!r} must be letters, digits, '.', '-' or '_'")
    path = cache_dir() / "tokens" / f"{key}-{tok.digest[:16]}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    stream = token_stream(tok, docs)
    _write_atomic(path, lambda f: np.save(f, stream))
    stream.flags.writeable = False
    return stream


def tokenizer_stats(tok: TextTokenizer, docs: list[str]) -> dict:
    """How a tokenizer does on documents: bytes_per_token (raw UTF-8 bytes of the documents over
    their tokens, end-of-text excluded), roundtrip_rate (fraction of documents that decode to
    exactly themselves), unk_rate (fraction of tokens that are <unk>), and the raw counts."""
    encoded = tok.encode_batch(docs)
    n_tokens = sum(map(len, encoded))
    n_bytes = sum(len(d.encode()) for d in docs)  # the raw text, never the tokens' lengths
    exact = sum(d == back for d, back in zip(docs, tok.decode_batch(encoded)))
    unk = 0 if tok.unk_id is None else sum(ids.count(tok.unk_id) for ids in encoded)
    return {
        "documents": len(docs),
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else 0.0,
        "roundtrip_rate": exact / len(docs) if docs else 1.0,
        "unk_rate": unk / n_tokens if n_tokens else 0.0,
    }


def _write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same folder and rename it into place, so a reader
    in another process sees the old file, no file, or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
