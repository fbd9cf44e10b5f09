"""Tokenizers and their on-disk cache.

Every kind is a Hugging Face `tokenizers.Tokenizer` built from the spec's `tokenizer` section and
resolved through `KINDS`, which also holds each kind's vocabulary rules. All kinds are lossless
on any Unicode text: byte, bpe, wordpiece and unigram work on the 256 byte-level symbols; char
falls back to UTF-8 byte tokens.

Documents are separated by one special token, `<|endoftext|>`. Encoding never produces it (nor
`<unk>`): special tokens are not matched in input text, so a document that contains the literal
string `<|endoftext|>` is encoded as ordinary characters and round-trips. `decode` renders the
end-of-text id as that same string, so decoded streams read naturally.

The file kind reads a tokenizer one already has: a Hugging Face `tokenizers` JSON file, or a run
folder's tokenizer.json (which wraps one), whose end-of-text token may have another common name.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from workbench.data.corpus import Corpus
from workbench.data.texts import Texts, cache_dir
from workbench.plumbing.errors import DataError
from workbench.plumbing.files import write_atomic

__all__ = ["EOS", "KINDS", "TextTokenizer", "cache_dir", "get_tokenizer", "problems", "vocabulary"]

EOS = "<|endoftext|>"
UNK = "<unk>"
_FORMAT = 1  # bump when a builder changes, so cached tokenizers are rebuilt
SAMPLE_BYTES = 64 << 20
"""Without tokenizer.train_bytes, a training split larger than this trains the tokenizer on a
sample of this many bytes spread through it: enough for a vocabulary, and bounded in time and
memory however large the corpus."""


class TextTokenizer:
    """A Hugging Face tokenizer with the workbench's conventions: no special tokens added on
    encode, special tokens rendered on decode, one end-of-text id between documents."""

    def __init__(self, kind: str, hf: Tokenizer, eos: str = EOS):
        self.kind, self.eos = kind, eos
        self._hf = hf
        # Treat "<|endoftext|>" in input text as text: only token_stream places end-of-text ids.
        hf.encode_special_tokens = True
        # Ids of a tokenizer from elsewhere need not be dense: the table must hold the largest.
        self.vocab_size: int = max(hf.get_vocab_size(with_added_tokens=True),
                                   max(hf.get_vocab(with_added_tokens=True).values(), default=-1) + 1)
        eos_id = hf.token_to_id(eos)
        if eos_id is None:
            raise ValueError(f"{kind} tokenizer has no {eos} token")
        self.eos_id: int = eos_id
        self.unk_id: int | None = hf.token_to_id(UNK)

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the tokenizer's full serialised form: equal digests encode alike."""
        eos = "" if self.eos == EOS else f"{self.eos}\n"
        return hashlib.sha256(f"{self.kind}\n{eos}{self._hf.to_str()}".encode()).hexdigest()

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
        if self.eos != EOS:
            blob["eos"] = self.eos
        write_atomic(Path(path), json.dumps(blob))

    @classmethod
    def load(cls, path: Path) -> TextTokenizer:
        """Read a tokenizer written by `save`."""
        blob = json.loads(Path(path).read_text())
        return cls(blob["kind"], Tokenizer.from_str(json.dumps(blob["tokenizer"])), blob.get("eos", EOS))


def get_tokenizer(spec, corpus: Corpus) -> TextTokenizer:
    """The tokenizer a spec's tokenizer section names. byte and file need no training; the other
    kinds train on the corpus's training split once (on at most spec.train_bytes of it, or
    SAMPLE_BYTES, sampled evenly through it), then load from the disk cache."""
    kind = KINDS[spec.kind]
    if kind.open is not None:
        return kind.open(spec)
    train = Texts.of(corpus.train)
    budget = spec.train_bytes or SAMPLE_BYTES
    fields = {"kind": spec.kind, "size": spec.size, "train_bytes": spec.train_bytes,
              "corpus": corpus.fingerprint, "format": _FORMAT, "tokenizers": tokenizers.__version__}
    if train.bytes > budget:
        fields["sample"] = f"spread {budget}"
    key = json.dumps(fields, sort_keys=True)
    path = cache_dir() / "tokenizers" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    if path.exists():
        try:
            return TextTokenizer.load(path)
        except Exception:  # a damaged or foreign cache entry is rebuilt, never trusted
            pass
    TextTokenizer(spec.kind, kind.build(train.sample(budget), spec.size)).save(path)
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


# ------------------------------------------------------------------------------ from a file


EOS_NAMES = (EOS, "</s>", "<|end_of_text|>", "<eos>", "<|eos|>")
"""End-of-text tokens a tokenizer file may have, in order of preference: the first that is one of
its special tokens separates documents."""


def read_file(path: str) -> tuple[str, str, int]:
    """A tokenizer file's Hugging Face JSON, its end-of-text token and its vocabulary size. Reads
    a `tokenizers` JSON file or a run folder's tokenizer.json (ours wraps one). Raises DataError
    naming the file and what is wrong."""
    try:
        st = Path(path).stat()
    except OSError as e:
        raise DataError(f"{path}: {e.strerror.lower() if e.strerror else 'cannot be read'}") from None
    return _read_file(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read_file(path: str, mtime_ns: int, size: int) -> tuple[str, str, int]:
    # Keyed on the file's time and size: a spec is validated once per trial of a study.
    try:
        text = Path(path).read_text()
        blob = json.loads(text)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    except ValueError as e:
        raise DataError(f"{path}: not a tokenizers JSON file ({str(e).splitlines()[0]})") from None
    wrapped = isinstance(blob, dict) and isinstance(blob.get("tokenizer"), dict) and "kind" in blob
    hf_blob = blob["tokenizer"] if wrapped else blob
    inner = json.dumps(hf_blob) if wrapped else text
    if not isinstance(hf_blob, dict) or "model" not in hf_blob:
        raise DataError(f"{path}: not a tokenizers JSON file (it has no \"model\")")
    try:
        hf = Tokenizer.from_str(inner)
    except Exception as e:  # the library raises a bare Exception with the serde message
        raise DataError(f"{path}: not a tokenizers JSON file ({str(e).splitlines()[0][:200]})") from None
    special = {t.content for t in hf.get_added_tokens_decoder().values() if t.special}
    names = ([blob["eos"]] if wrapped and "eos" in blob else []) + list(EOS_NAMES)
    eos = next((name for name in names if name in special), None)
    if eos is None:
        found = ", ".join(sorted(special)[:8]) or "none"
        raise DataError(f"{path}: no end-of-text token to separate documents: expected a special token "
                        f"{' or '.join(EOS_NAMES)} (its special tokens: {found})")
    return inner, eos, TextTokenizer("file", hf, eos).vocab_size


def _open_file(spec) -> TextTokenizer:
    inner, eos, size = read_file(spec.path)
    if spec.vocab_size is not None and spec.vocab_size != size:
        raise DataError(f"tokenizer.path: {spec.path} has {size} tokens, but tokenizer.vocab_size is "
                        f"{spec.vocab_size}; leave vocab_size out to take the file's")
    return TextTokenizer("file", Tokenizer.from_str(inner), eos)


def file_vocabulary(path: Any) -> int | None:
    """The vocabulary of a tokenizer file, or None when it cannot be used (`problems` says why)."""
    try:
        return read_file(path)[2] if isinstance(path, str) else None
    except DataError:
        return None


# ------------------------------------------------------------------------------------ kinds


@dataclass(frozen=True)
class Kind:
    """One tokenizer kind: how it is built and the rules of its vocabulary."""

    build: Callable[[Iterable[str], int], Tokenizer] | None
    """(training documents, vocabulary size) to a Hugging Face tokenizer."""
    doc: str
    fixed_size: int | None = None
    """The vocabulary size when it cannot be chosen."""
    default_size: int | None = None
    """The vocabulary size when vocab_size is left out (None: vocab_size is required)."""
    open: Callable[[Any], TextTokenizer] | None = None
    """For kinds that are not trained: the tokenizer section to the tokenizer."""


KINDS: dict[str, Kind] = {
    "byte": Kind(_byte, "UTF-8 bytes", fixed_size=257,
                 open=lambda spec: TextTokenizer("byte", _byte([], 257))),
    "char": Kind(_char, "the most frequent characters with byte fallback", default_size=512),
    "bpe": Kind(_bpe, "byte-level BPE"),
    "wordpiece": Kind(_wordpiece, "greedy longest-match subwords over byte-level pieces"),
    "unigram": Kind(_unigram, "unigram LM subwords over byte-level pieces"),
    "file": Kind(None, "a tokenizer one already has: a Hugging Face tokenizers JSON file (or a run "
                 "folder's tokenizer.json) at tokenizer.path, its vocabulary as it is", open=_open_file),
}
"""Every tokenizer kind by name: the spec's tokenizer.kind accepts exactly these."""
MIN_LEARNED_VOCAB = 512  # 256 byte pieces, special tokens and learned pieces


def vocabulary(spec) -> int:
    """The vocabulary size a tokenizer section builds the model for."""
    kind = KINDS[spec.kind]
    if kind.build is None:     # read from the file when the spec was validated
        return spec.vocab_size or 2
    return kind.fixed_size or spec.vocab_size or kind.default_size or MIN_LEARNED_VOCAB


def problems(spec) -> list[tuple[tuple[str, ...], str]]:
    """The vocabulary rules of a tokenizer section, as (field path, message) pairs."""
    kind, where = KINDS[spec.kind], ("tokenizer", "vocab_size")
    path = getattr(spec, "path", None)
    if kind.build is None:
        return _file_problems(spec, path)
    if path is not None:
        return [(("tokenizer", "path"), f"is for kind file only (this tokenizer is {spec.kind})")]
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


def _file_problems(spec, path: str | None) -> list[tuple[tuple[str, ...], str]]:
    if path is None:
        return [(("tokenizer", "path"), "kind file needs a path to a tokenizers JSON file")]
    out = []
    if spec.train_bytes is not None:
        out.append((("tokenizer", "train_bytes"), "a tokenizer read from a file is not trained; "
                    "leave train_bytes out"))
    try:
        size = read_file(path)[2]
    except DataError as e:
        if spec.vocab_size is None:   # with a vocab_size (a run's own spec) the file may have moved
            out.append((("tokenizer", "path"), str(e)))
        return out
    if spec.vocab_size is not None and spec.vocab_size != size:
        out.append((("tokenizer", "vocab_size"), f"{path} has {size} tokens, not {spec.vocab_size}; "
                    "leave vocab_size out to take the file's"))
    return out
