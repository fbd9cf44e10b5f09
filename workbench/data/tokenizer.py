"""Tokenizers and their on-disk cache.

Every kind is a Hugging Face `tokenizers.Tokenizer` built from the spec's `tokenizer` section and
resolved through `KINDS`, which also holds each kind's vocabulary rules. All kinds are lossless
on any Unicode text: byte, bpe, wordpiece and unigram work on the 256 byte-level symbols; char
falls back to UTF-8 byte tokens.

Documents are separated by one special token, `<|endoftext|>`. Encoding never produces it (nor
`<unk>`): special tokens are not matched in input text, so a document that contains the literal
string `<|endoftext|>` is encoded as ordinary characters and round-trips. `decode` renders the
end-of-text id as that same string, so decoded streams read naturally.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from workbench.data.corpus import Corpus, take_bytes
from workbench.plumbing.files import write_atomic

EOS = "<|endoftext|>"
UNK = "<unk>"
_FORMAT = 1  # bump when a builder changes, so cached tokenizers are rebuilt


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
        write_atomic(Path(path), json.dumps(blob))

    @classmethod
    def load(cls, path: Path) -> TextTokenizer:
        """Read a tokenizer written by `save`."""
        blob = json.loads(Path(path).read_text())
        return cls(blob["kind"], Tokenizer.from_str(json.dumps(blob["tokenizer"])))


def get_tokenizer(spec, corpus: Corpus) -> TextTokenizer:
    """The tokenizer a spec's tokenizer section names. byte needs no training; the other kinds
    train on the corpus's training split (at most spec.train_bytes of it) once, then load from
    the disk cache."""
    if spec.kind == "byte":
        return TextTokenizer("byte", _byte([], KINDS["byte"].fixed_size))
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
    TextTokenizer(spec.kind, KINDS[spec.kind].build(docs, spec.size)).save(path)
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


@dataclass(frozen=True)
class Kind:
    """One tokenizer kind: how it is built and the rules of its vocabulary."""

    build: Callable[[list[str], int], Tokenizer]
    """(training documents, vocabulary size) to a Hugging Face tokenizer."""
    doc: str
    fixed_size: int | None = None
    """The vocabulary size when it cannot be chosen."""
    default_size: int | None = None
    """The vocabulary size when vocab_size is left out (None: vocab_size is required)."""


KINDS: dict[str, Kind] = {
    "byte": Kind(_byte, "UTF-8 bytes", fixed_size=257),
    "char": Kind(_char, "the most frequent characters with byte fallback", default_size=512),
    "bpe": Kind(_bpe, "byte-level BPE"),
    "wordpiece": Kind(_wordpiece, "greedy longest-match subwords over byte-level pieces"),
    "unigram": Kind(_unigram, "unigram LM subwords over byte-level pieces"),
}
"""Every tokenizer kind by name: the spec's tokenizer.kind accepts exactly these."""
MIN_LEARNED_VOCAB = 512  # 256 byte pieces, special tokens and learned pieces


def vocabulary(spec) -> int:
    """The vocabulary size a tokenizer section builds the model for."""
    kind = KINDS[spec.kind]
    return kind.fixed_size or spec.vocab_size or kind.default_size or MIN_LEARNED_VOCAB


def problems(spec) -> list[tuple[tuple[str, ...], str]]:
    """The vocabulary rules of a tokenizer section, as (field path, message) pairs."""
    kind, where = KINDS[spec.kind], ("tokenizer", "vocab_size")
    if kind.fixed_size is not None:
        if spec.vocab_size not in (None, kind.fixed_size):
            return [(where, f"{spec.kind} tokenizer has a fixed vocabulary of {kind.fixed_size}; "
                     "leave vocab_size out")]
        return []
    out = []
    if kind.default_size is None and spec.vocab_size is None:
        out.append((where, f"{spec.kind} needs a vocab_size"))
    if vocabulary(spec) < MIN_LEARNED_VOCAB:
        out.append((where, f"{spec.kind} needs vocab_size >= {MIN_LEARNED_VOCAB} "
                    "(256 byte pieces, special tokens and learned pieces)"))
    return out
