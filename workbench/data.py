"""Corpus sources: the spec's `data` section to training and held-out documents.

Every source yields named documents in a fixed order. `max_bytes` keeps a prefix of that order;
the held-out split is chosen by a hash of each document's name, so it is deterministic and a
document keeps its side when others are added. Nothing here knows about tokenizers: the held-out
text (`eval_documents`) is raw text, the same for every tokenizer, which is what makes bits per
byte comparable across them.
"""

from __future__ import annotations

import ast
import functools
import glob
import hashlib
import json
import os
import string
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from workbench.spec import DocstringData, FilesData, JsonlData, ParquetData, StdlibData, SyntheticData

DataSource = StdlibData | DocstringData | FilesData | JsonlData | ParquetData | SyntheticData
Doc = tuple[str, str]  # (name, text)


class DataError(Exception):
    """A corpus that cannot be read; str() is one line naming the path or field at fault."""


@dataclass(frozen=True)
class Corpus:
    """Training and held-out documents of one data spec."""

    train: list[str] = field(repr=False)
    """Training documents, in the source's fixed order."""
    val: list[str] = field(repr=False)
    """Held-out documents, in the source's fixed order."""
    fingerprint: str
    """sha256 hex of the source settings and the names, split and text of every document."""
    entropy_bits_per_byte: float | None = None
    """Exact entropy rate of the source (synthetic data only): the loss no model can beat."""
    replaced_chars: int = 0
    """Characters replaced by U+FFFD because a file was not valid UTF-8."""
    train_prompts: list[int] | None = field(default=None, repr=False)
    """For prompt/response corpora: how many leading characters of each training document are
    prompt (not trained on); None for plain text."""
    val_prompts: list[int] | None = field(default=None, repr=False)
    """The same for the held-out documents."""

    def pairs(self, docs: list[str], prompts: list[int] | None) -> list[tuple[str, str]]:
        """Documents as (prompt, response); plain text has empty prompts."""
        if prompts is None:
            return [("", d) for d in docs]
        return [(d[:min(p, len(d))], d[min(p, len(d)):]) for d, p in zip(docs, prompts)]


def load_corpus(data: DataSource) -> Corpus:
    """Read the corpus a data spec names and split it into training and held-out documents."""
    read = _SOURCES[data.source](data)
    prompts = read.prompts or [0] * len(read.docs)
    kept = [(doc, n) for doc, n in zip(read.docs, prompts) if doc[1]]
    docs, prompts = [doc for doc, _ in kept], [n for _, n in kept]
    if not docs:
        raise DataError(f"data: the {data.source} corpus is empty (no document has any text)")
    if data.max_bytes is not None:
        kept = take_bytes([text for _, text in docs], data.max_bytes)
        docs = [(name, text) for (name, _), text in zip(docs, kept)]
    in_val = _split([name for name, _ in docs], data.val_fraction)
    prompts = None if read.prompts is None else prompts[:len(docs)]
    return Corpus(
        train=[text for (_, text), v in zip(docs, in_val) if not v],
        val=[text for (_, text), v in zip(docs, in_val) if v],
        fingerprint=_fingerprint(data, docs, in_val),
        entropy_bits_per_byte=read.entropy,
        replaced_chars=read.replaced,
        train_prompts=None if prompts is None else [n for n, v in zip(prompts, in_val) if not v],
        val_prompts=None if prompts is None else [n for n, v in zip(prompts, in_val) if v],
    )


def take_bytes(texts: list[str], n_bytes: int) -> list[str]:
    """The leading texts, whole, until n_bytes UTF-8 bytes; the last one is cut at a character
    boundary so the total is at most n_bytes and short of it by less than one character."""
    out: list[str] = []
    left = n_bytes
    for text in texts:
        if left <= 0:
            break
        raw = text.encode()
        if len(raw) > left:
            # A cut inside a multi-byte character leaves an incomplete tail, which "ignore" drops.
            cut = raw[:left].decode("utf-8", errors="ignore")
            if cut:
                out.append(cut)
            break
        out.append(text)
        left -= len(raw)
    return out


def eval_documents(corpus: Corpus, n_bytes: int) -> list[str]:
    """The held-out evaluation text: held-out documents in their fixed order until n_bytes UTF-8
    bytes (the last one cut at a character boundary). Independent of any tokenizer, so every
    tokenizer is scored on the same raw text."""
    return take_bytes(corpus.val, n_bytes)


# ------------------------------------------------------------------------- split, fingerprint


def _unit_hash(name: str) -> float:
    """A name's position in [0, 1), uniform over names and fixed forever."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def _split(names: list[str], val_fraction: float) -> list[bool]:
    """Which documents are held out. With two or more documents both sides get at least one."""
    h = [_unit_hash(n) for n in names]
    in_val = [x < val_fraction for x in h]
    if len(names) >= 2:
        if not any(in_val):
            in_val[h.index(min(h))] = True
        if all(in_val):
            in_val[h.index(max(h))] = False
    return in_val


def _fingerprint(data: DataSource, docs: list[Doc], in_val: list[bool]) -> str:
    # Paths are left out: names and text identify the corpus, so moving a folder keeps the
    # caches keyed on it, and editing one character anywhere invalidates them.
    settings = data.model_dump(mode="json", exclude={"paths"})
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for (name, text), v in zip(docs, in_val):
        name_b, text_b = name.encode(), text.encode()
        h.update(f"{len(name_b)}:{len(text_b)}:{int(v)}:".encode())
        h.update(name_b)
        h.update(text_b)
    return h.hexdigest()


# ------------------------------------------------------------------------------------ sources


@dataclass
class _Read:
    docs: list[Doc]
    replaced: int = 0
    entropy: float | None = None
    prompts: list[int] | None = None   # per document: characters of prompt it starts with


def _decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 text and how many characters had to be replaced."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd")


_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__"}


def _stdlib(data: StdlibData) -> _Read:
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for folder, subfolders, files in os.walk(root):
        # Prune while walking: site-packages alone can hold ten times the stdlib's files.
        subfolders[:] = [d for d in subfolders if d not in _SKIP_DIRS and not d.startswith("test_")
                         and not (folder == root and d in ("site-packages", "dist-packages"))]
        found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    docs, replaced = [], 0
    for rel in sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in found):
        with open(os.path.join(root, rel), "rb") as f:
            text, bad = _decode(f.read())
        docs.append((rel, text))
        replaced += bad
    if not docs:
        raise DataError(f"data.source: no standard-library .py files found under {root}")
    return _Read(docs, replaced)


def _docstrings(data: DocstringData) -> _Read:
    docs, prompts = [], []
    for rel, header, summary in _docstring_pairs(sysconfig.get_paths()["stdlib"]):
        docs.append((rel, header + summary))
        prompts.append(len(header))
    return _Read(docs, prompts=prompts)


@functools.lru_cache(maxsize=2)
def _docstring_pairs(root: str) -> list[tuple[str, str, str]]:
    """(file, prompt, response) for every documented function of the standard library: the
    prompt is the `def` line(s) and the opening quotes, the response the docstring's first line
    (then a newline; no closing quotes, which every model would get right for free). Named by file, so a pair is held out exactly when its file is held
    out of the python-stdlib corpus (at the same val_fraction): no answer leaks from pretraining."""
    out = []
    for rel, text in _stdlib(StdlibData()).docs:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            summary = doc.strip().split("\n", 1)[0].strip() if doc else ""
            if not summary:
                continue
            first = node.body[0]
            header = "".join(lines[node.lineno - 1:first.lineno - 1])
            indent = lines[first.lineno - 1][:first.col_offset]
            out.append((rel, f'{header}{indent}"""', f"{summary}\n"))
    return out


def _walk(folder: Path, base: Path) -> list[tuple[Path, str]]:
    """Files under a folder, sorted, hidden ones skipped; names relative to base."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append((path, path.relative_to(base).as_posix()))
    return out


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _expand(paths: list[str], folders: bool) -> list[tuple[Path, str, bool]]:
    """Each entry of `paths` as (file, document name, named explicitly). Names are relative to
    the entry (a folder keeps its own name; a glob is relative to its fixed leading folders),
    so they do not change when the corpus is moved."""
    out: list[tuple[Path, str, bool]] = []
    seen: set[Path] = set()
    for i, entry in enumerate(paths):
        where = f"data.paths[{i}]"
        p = Path(entry)
        if _is_glob(entry):
            fixed = p.parts[: next(j for j, part in enumerate(p.parts) if _is_glob(part))]
            base = Path(*fixed) if fixed else Path(".")
            matches = [Path(m) for m in sorted(glob.glob(entry, recursive=True))]
            found: list[tuple[Path, str, bool]] = []
            for m in matches:
                if m.is_file():
                    found.append((m, m.relative_to(base).as_posix(), False))
                elif m.is_dir() and folders:
                    found += [(f, name, False) for f, name in _walk(m, base)]
            if not found:
                raise DataError(f"{where}: the pattern {entry} matches no files")
        elif p.is_dir():
            if not folders:
                raise DataError(f"{where}: {entry} is a folder; name files or a glob such as "
                                f"{entry}/*.*")
            found = [(f, name, False) for f, name in _walk(p, p.parent)]
            if not found:
                raise DataError(f"{where}: the folder {entry} holds no files")
        elif p.is_file():
            found = [(p, p.name, True)]
        else:
            raise DataError(f"{where}: {entry}: no such file or folder")
        for f, name, explicit in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append((f, name, explicit))
    return out


def _files(data: FilesData) -> _Read:
    docs, replaced = [], 0
    for path, name, explicit in _expand(data.paths, folders=True):
        raw = path.read_bytes()
        if b"\0" in raw[:8192]:  # binary: images, archives, bytecode found in folders
            if explicit:
                raise DataError(f"data.paths: {path} is not a text file (it contains NUL bytes)")
            continue
        text, bad = _decode(raw)
        docs.append((name, text))
        replaced += bad
    return _Read(docs, replaced)


def _no_column(path: Path, column: str, columns: list[str], field_name: str = "data.column") -> DataError:
    return DataError(f"{path}: no column {column!r} ({field_name}); it has "
                     f"{', '.join(map(repr, columns)) or 'no columns'}")


def _strings(frame: pl.DataFrame, path: Path, column: str, field_name: str) -> list[str]:
    if column not in frame.columns:
        raise _no_column(path, column, frame.columns, field_name)
    col = frame.get_column(column)
    if isinstance(col.dtype, (pl.Categorical, pl.Enum)):
        col = col.cast(pl.String)
    if col.dtype != pl.String:
        raise DataError(f"{path}: column {column!r} holds {col.dtype}, not strings")
    if col.null_count():
        row = col.is_null().arg_max()
        raise DataError(f"{path}: row {row} has no string in column {column!r}")
    return col.to_list()


def _column(frame_of: Callable[[Path], pl.DataFrame], data: JsonlData | ParquetData,
            what: str) -> _Read:
    """One document per row of the text column of each file; with a prompt column, the
    document is prompt + response and the prompt's length is kept."""
    docs, prompts = [], [] if data.prompt else None
    for path, name, _ in _expand(data.paths, folders=False):
        try:
            frame = frame_of(path)
        except (pl.exceptions.PolarsError, OSError) as e:
            raise DataError(f"{path}: not readable as {what}: {str(e).splitlines()[0]}") from None
        texts = _strings(frame, path, data.column, "data.column")
        if data.prompt:
            for row, (prompt, response) in enumerate(zip(_strings(frame, path, data.prompt, "data.prompt"), texts)):
                prompts.append(len(prompt))
                docs.append((f"{name}:{row}", prompt + response))
        else:
            docs += [(f"{name}:{row}", text) for row, text in enumerate(texts)]
    return _Read(docs, prompts=prompts)


def _jsonl(data: JsonlData) -> _Read:
    # Infer the schema from every line, so a non-string value late in a file is not missed.
    return _column(lambda p: pl.read_ndjson(p, infer_schema_length=None), data, "JSON Lines")


def _parquet(data: ParquetData) -> _Read:
    def frame_of(path: Path) -> pl.DataFrame:
        names = list(pl.read_parquet_schema(path))
        wanted = [c for c in (data.prompt, data.column) if c]
        for column, field_name in zip(wanted, ("data.prompt", "data.column")[-len(wanted):]):
            if column not in names:  # say so before reading any data
                raise _no_column(path, column, names, field_name)
        return pl.read_parquet(path, columns=wanted)
    return _column(frame_of, data, "Parquet")


# ---------------------------------------------------------------------------------- synthetic

# Printable ASCII, one byte each, no whitespace (so no tokenizer treats any symbol specially).
_SYMBOLS = (string.ascii_lowercase + string.ascii_uppercase + string.digits + "+/").encode()
_MAX_TRANSITIONS = 2**24  # alphabet**(order+1) probabilities: 128 MiB of float64
_DENSE_CONTEXTS = 4096  # slow-mixing chains up to this size are solved directly


def _transition(pi: np.ndarray, P: np.ndarray, alphabet: int) -> np.ndarray:
    """One step of the context chain: context (x0, mid) emits y with P and becomes (mid, y)."""
    n_ctx = P.shape[0]
    joint = (pi[:, None] * P).reshape(alphabet, n_ctx // alphabet, alphabet)  # (x0, mid, y)
    return joint.sum(axis=0).reshape(n_ctx)


def _stationary(P: np.ndarray, alphabet: int, order: int) -> np.ndarray:
    """A stationary distribution over contexts of the order-k chain with next-symbol table P
    (contexts x alphabet; context index = base-alphabet digits, oldest symbol first)."""
    n_ctx = P.shape[0]
    if order == 0:
        return np.ones(1)
    pi = np.full(n_ctx, 1.0 / n_ctx)
    for _ in range(1_000):
        step = _transition(pi, P, alphabet)
        if np.abs(step - pi).sum() < 1e-13:
            return step / step.sum()
        pi = 0.1 * pi + 0.9 * step  # a little laziness: same fixed points, no periodic orbits
    if n_ctx <= _DENSE_CONTEXTS:
        # Small concentrations make nearly closed cycles that power iteration crawls out of;
        # solve pi T = pi, sum(pi) = 1 directly instead.
        T = np.zeros((n_ctx, n_ctx))
        src = np.repeat(np.arange(n_ctx), alphabet)
        dst = src % (n_ctx // alphabet) * alphabet + np.tile(np.arange(alphabet), n_ctx)
        T[src, dst] = P.reshape(-1)
        M = T.T - np.eye(n_ctx)
        M[-1] = 1.0
        try:
            solved = np.clip(np.linalg.solve(M, np.eye(n_ctx)[-1]), 0.0, None)
            solved /= solved.sum()
            if np.abs(_transition(solved, P, alphabet) - solved).sum() < 1e-10:
                return solved
        except np.linalg.LinAlgError:
            pass  # exactly reducible: no unique answer to solve for
    raise DataError("data: the synthetic chain mixes too slowly to compute its entropy rate "
                    "exactly; raise data.concentration or lower data.alphabet or data.order")


def _synthetic(data: SyntheticData) -> _Read:
    A, k, n, length = data.alphabet, data.order, data.documents, data.doc_bytes
    if A ** (k + 1) > _MAX_TRANSITIONS:
        raise DataError(f"data: alphabet**(order+1) = {A ** (k + 1):,} transition probabilities is "
                        f"more than {_MAX_TRANSITIONS:,}; lower data.alphabet or data.order")
    rng = np.random.default_rng(data.seed)
    P = rng.dirichlet(np.full(A, data.concentration), size=A**k)  # (contexts, A)
    pi = _stationary(P, A, k)
    plogp = np.where(P > 0, P * np.log2(np.where(P > 0, P, 1.0)), 0.0)
    entropy = float(pi @ -plogp.sum(axis=1))

    symbols = np.empty((n, length), dtype=np.uint8)
    ctx = rng.choice(A**k, size=n, p=pi)  # stationary start: the whole text is stationary
    for i in range(min(k, length)):
        symbols[:, i] = ctx // A ** (k - 1 - i) % A
    cdf = np.cumsum(P, axis=1)
    cdf[:, -1] = 1.0  # no draw may fall past the last symbol through rounding
    for t in range(k, length):  # sequential in time, vectorised over documents
        y = (rng.random(n)[:, None] > cdf[ctx]).sum(axis=1)
        symbols[:, t] = y
        if k:
            ctx = ctx % A ** (k - 1) * A + y
    raw = np.frombuffer(_SYMBOLS, dtype=np.uint8)[symbols].tobytes()
    docs = [(f"synthetic/{i}", raw[i * length:(i + 1) * length].decode("ascii")) for i in range(n)]
    return _Read(docs, entropy=entropy)


_SOURCES: dict[str, Callable[..., _Read]] = {
    "python-stdlib": _stdlib,
    "python-docstrings": _docstrings,
    "files": _files,
    "jsonl": _jsonl,
    "parquet": _parquet,
    "synthetic": _synthetic,
}
