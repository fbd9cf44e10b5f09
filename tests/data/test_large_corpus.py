"""Corpora larger than memory: files are listed from an index without reading them again, the
token stream is written to disk a batch at a time as uint16 or uint32 and memory-mapped, a huge
document is encoded in parts with the same tokens, training batches come from the memory map,
the tokenizer trains on a sample spread through the corpus, and a progress bar shows on a
terminal. The benchmark behind the quoted figures runs at a tiny size."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers

from support import ROOT
from workbench.data import streams, texts
from workbench.data.batches import Batches
from workbench.data.corpus import load_corpus
from workbench.data.sources import FilesData
from workbench.data.streams import cached_stream, stream_key, token_stream
from workbench.data.texts import Texts
from workbench.data.tokenizer import EOS, TextTokenizer, get_tokenizer
from workbench.spec import TokenizerSpec

SOURCE = Path(sysconfig.get_paths()["stdlib"])


def write_files(folder: Path, n: int, size: int = 4_000) -> list[str]:
    names = sorted(p.name for p in SOURCE.glob("*.py"))[:n]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        text = (SOURCE / name).read_text(errors="replace")[:size]
        (folder / f"{name}.txt").write_text(text)
        out.append(text)
    return out


def expected_stream(tok: TextTokenizer, docs: list[str]) -> np.ndarray:
    ids = [tok.eos_id]
    for d in docs:
        ids += tok.encode(d) + [tok.eos_id]
    return np.array(ids)


@pytest.fixture
def corpus(tmp_path):
    write_files(tmp_path / "c", 30)
    return load_corpus(FilesData(source="files", paths=[str(tmp_path / "c")]))


@pytest.fixture
def bpe(corpus):
    return get_tokenizer(TokenizerSpec(kind="bpe", vocab_size=600), corpus)


def test_the_stream_is_written_a_batch_at_a_time_and_memory_mapped(corpus, bpe, monkeypatch):
    monkeypatch.setattr(streams, "_BATCH_DOCS", 3)
    monkeypatch.setattr(streams, "_BATCH_BYTES", 5_000)
    stream = cached_stream(bpe, corpus.train, stream_key(corpus, "train"))
    assert isinstance(stream, np.memmap) and stream.dtype == np.uint16 and not stream.flags.writeable
    assert np.array_equal(stream, expected_stream(bpe, list(corpus.train)))


def test_a_vocabulary_beyond_uint16_streams_as_uint32(tmp_path, corpus):
    vocab = {EOS: 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(70_000)}}
    hf = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.add_special_tokens([EOS])
    tok = TextTokenizer("file", hf)
    docs = ["w1 w65535 w69999", "w70001 w3"]
    stream = cached_stream(tok, docs, "wide")
    assert stream.dtype == np.uint32 and tok.vocab_size == 70_002
    assert stream.tolist() == [0, 3, 65537, 70001, 0, 1, 5, 0]


def test_a_document_larger_than_a_part_is_encoded_in_parts_with_the_same_tokens(tmp_path, bpe, monkeypatch):
    big = "".join((SOURCE / name).read_text() for name in ("argparse.py", "inspect.py"))
    (tmp_path / "big.txt").write_text(big)
    c = load_corpus(FilesData(source="files", paths=[str(tmp_path / "big.txt")]))
    monkeypatch.setattr(streams, "_PART_BYTES", 3_000)
    parts = c.train.pieces[0].parts(3_000)
    assert len(parts) > 20 and "".join(p.text() for p in parts) == c.train[0]
    byte = get_tokenizer(TokenizerSpec(kind="byte"), c)
    for tok in (bpe, byte):
        assert np.array_equal(token_stream(tok, c.train), expected_stream(tok, list(c.train)))


def test_batches_from_the_memory_map_are_the_batches_from_memory(corpus, bpe):
    stream = cached_stream(bpe, corpus.train, stream_key(corpus, "train"))
    in_memory = torch.from_numpy(np.asarray(stream).astype(np.int32))
    a = Batches(stream, 4, 32, seed=3, device=torch.device("cpu"))
    b = Batches(in_memory, 4, 32, seed=3, device=torch.device("cpu"))
    for _ in range(5):
        (xa, ya), (xb, yb) = next(a), next(b)
        assert xa.dtype == torch.int64 and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_listing_a_corpus_again_reads_no_file_until_one_changes(tmp_path, monkeypatch):
    write_files(tmp_path / "c", 12)
    data = FilesData(source="files", paths=[str(tmp_path / "c")])
    first = load_corpus(data)
    read = []
    real = texts._facts
    monkeypatch.setattr(texts, "_facts", lambda path: read.append(os.path.basename(path)) or real(path))
    again = load_corpus(data)
    assert read == [] and again.fingerprint == first.fingerprint and list(again.val) == list(first.val)
    edited = sorted((tmp_path / "c").iterdir())[4]
    edited.write_text(edited.read_text() + "# one more line\n")
    changed = load_corpus(data)
    assert read == [edited.name] and changed.fingerprint != first.fingerprint


def test_the_tokenizer_trains_on_a_sample_spread_through_the_corpus(tmp_path):
    """Twenty files, the last ten full of one word. A prefix of half the corpus (the old way)
    never sees the word; a sample spread through it learns it as a single token."""
    folder = tmp_path / "c"
    folder.mkdir()
    plain = (SOURCE / "argparse.py").read_text()
    for i in range(20):
        text = plain[i * 3_000:(i + 1) * 3_000] if i < 10 else "zyzzyva " * 375
        (folder / f"f{i:02d}.txt").write_text(text)
    c = load_corpus(FilesData(source="files", paths=[str(folder)], val_fraction=0.05))
    half = Texts.of(c.train).bytes // 2
    sample = c.train.sample(half)
    assert 0.9 * half < sample.bytes <= half
    names = [Path(p.doc.name).name for p in sample.pieces]
    assert any(n < "f10" for n in names) and any(n >= "f10" for n in names)
    tok = get_tokenizer(TokenizerSpec(kind="bpe", vocab_size=600, train_bytes=half), c)
    assert len(tok.encode(" zyzzyva")) == 1


def test_without_train_bytes_a_large_split_is_sampled(tmp_path, monkeypatch):
    write_files(tmp_path / "c", 30)
    c = load_corpus(FilesData(source="files", paths=[str(tmp_path / "c")]))
    from workbench.data import tokenizer
    seen = []
    real = tokenizer.KINDS["char"]
    monkeypatch.setitem(tokenizer.KINDS, "char", real.__class__(
        lambda docs, size: seen.append(Texts.of(docs).bytes) or real.build(docs, size), real.doc,
        default_size=real.default_size))
    monkeypatch.setattr(tokenizer, "SAMPLE_BYTES", 20_000)
    get_tokenizer(TokenizerSpec(kind="char"), c)
    monkeypatch.setattr(tokenizer, "SAMPLE_BYTES", 10**9)
    get_tokenizer(TokenizerSpec(kind="char"), c)       # another cache entry: trained on all of it
    assert seen[0] <= 20_000 < seen[1] == c.train.bytes


def test_a_progress_bar_shows_while_tokenizing_on_a_terminal(tmp_path):
    write_files(tmp_path / "c", 20)
    spec = {"name": "bar", "model": {"depth": 1, "width": 32, "heads": 2, "context": 32},
            "data": {"source": "files", "paths": ["c"]},
            "train": {"budget": {"steps": 2}, "batch_tokens": 64, "eval_bytes": 1024, "completions": 0, "samples": 0}}
    (tmp_path / "bar.yaml").write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "workbench", "train", "bar.yaml", "--out", "run"]

    def output(terminal: bool) -> str:
        if not terminal:
            return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300).stderr
        main, sub = pty.openpty()
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=sub, stdout=sub, stderr=sub,
                                env={**os.environ, "COLUMNS": "120"})
        os.close(sub)
        out = b""
        while True:
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:        # the terminal closes when the process ends
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=300) == 0, out[-2000:]
        return out.decode(errors="replace")

    assert "tokenizing" in output(terminal=True)
    # A new corpus (so the stream is not cached), without a terminal: no bar.
    (tmp_path / "c" / "extra.txt").write_text("one more document\n" * 50)
    assert "tokenizing" not in output(terminal=False)


def test_the_corpus_benchmark_runs_at_a_tiny_size():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "corpus_scale.py"), "--mb", "0.5",
                          "--file-kb", "64", "--vocab", "600", "--steps", "2", "--rounds", "1"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {line.split("  ")[0]: line for line in run.stdout.splitlines()}
    for row in ("ratio ours/direct", "reuse cached stream", "peak RSS: ours", "stream", "train from it"):
        assert row in rows, run.stdout
    assert "memory-mapped: True" in rows["stream"] and "completed" in rows["train from it"]
