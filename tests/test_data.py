"""Corpus sources, the held-out split, byte budgets and the synthetic chain's exact entropy."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench.data.corpus import Corpus, eval_documents, load_corpus, take_bytes


from workbench.plumbing.errors import DataError
from workbench.data.sources import FilesData, JsonlData, ParquetData, StdlibData
from workbench.data.synthetic import SyntheticData


def write_docs(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / f"doc{i:03d}.txt").write_text(f"document {i}\n" * 3)


def files(*paths: Path | str, **kw) -> Corpus:
    return load_corpus(FilesData(source="files", paths=[str(p) for p in paths], **kw))


# -------------------------------------------------------------------------------------- files


def test_files_folder_reads_text_recursively_and_skips_hidden_and_binary(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.py").write_text("print('béta')\r\n")
    (root / ".hidden").write_text("secret")
    (root / "image.bin").write_bytes(b"\x89PNG\0\0\x01")
    (root / "empty.txt").write_text("")
    c = files(root, val_fraction=0.5)
    assert sorted(c.train + c.val) == ["alpha\n", "print('béta')\r\n"]  # CRLF kept as written
    assert c.entropy_bits_per_byte is None and c.replaced_chars == 0


def test_files_glob_and_single_file(tmp_path):
    write_docs(tmp_path / "a", 3)
    (tmp_path / "a" / "notes.md").write_text("# notes\n")
    (tmp_path / "single.txt").write_text("just me\n")
    c = files(tmp_path / "a" / "*.txt", tmp_path / "single.txt")
    docs = sorted(c.train + c.val)
    assert len(docs) == 4 and "just me\n" in docs and "# notes\n" not in docs


def test_files_same_file_twice_is_one_document(tmp_path):
    (tmp_path / "x.txt").write_text("once\n")
    (tmp_path / "y.txt").write_text("other\n")
    c = files(tmp_path / "x.txt", tmp_path / "*.txt")
    assert sorted(c.train + c.val) == ["once\n", "other\n"]


def test_files_invalid_utf8_is_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe end")
    (tmp_path / "good.txt").write_text("fine")
    c = files(tmp_path)
    assert c.replaced_chars == 2
    assert "ok \ufffd\ufffd end" in c.train + c.val


@pytest.mark.parametrize("entry, message", [
    ("missing.txt", "no such file or folder"),
    ("*.nothing", "matches no files"),
    ("empty_dir", "holds no files"),
])
def test_files_errors_name_the_path(tmp_path, entry, message):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=message) as err:
        files(tmp_path / entry)
    assert entry in str(err.value) and "data.paths[0]" in str(err.value)
    assert "\n" not in str(err.value)


def test_files_binary_file_named_explicitly_is_an_error(tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    with pytest.raises(DataError, match="not a text file"):
        files(tmp_path / "blob.bin")


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        files(tmp_path / "empty.txt")


# ------------------------------------------------------------------------------ jsonl, parquet


def test_jsonl_one_document_per_line(tmp_path):
    rows = [{"text": f"row {i} ünïcode", "id": i} for i in range(20)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "*.jsonl")]))
    assert sorted(c.train + c.val) == sorted(r["text"] for r in rows)


def test_jsonl_other_column(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "one"}\n{"body": "two"}\n')
    c = load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "a.jsonl")], column="body"))
    assert sorted(c.train + c.val) == ["one", "two"]


@pytest.mark.parametrize("content, message", [
    ('{"body": "x"}\n', "no column 'text'.*'body'"),
    ('{"text": 1}\n{"text": 2}\n', "holds Int64, not strings"),
    ('{"text": "a"}\n{"other": 1}\n', "row 1 has no string"),
    ('{"text": "a"}\n{"text": \n', "not readable as JSON Lines"),
])
def test_jsonl_errors(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path / "bad.jsonl")]))
    assert "bad.jsonl" in str(err.value) and "\n" not in str(err.value)


def test_jsonl_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_corpus(JsonlData(source="jsonl", paths=[str(tmp_path)]))


def test_parquet_one_document_per_row(tmp_path):
    texts = [f"parquet row {i} — ✓" for i in range(30)]
    pl.DataFrame({"id": range(30), "content": texts}).write_parquet(tmp_path / "a.parquet")
    c = load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "a.parquet")],
                                column="content"))
    assert sorted(c.train + c.val) == sorted(texts)


def test_parquet_missing_and_non_string_columns(tmp_path):
    pl.DataFrame({"id": [1, 2], "text": ["a", "b"]}).write_parquet(tmp_path / "a.parquet")
    with pytest.raises(DataError, match="no column 'body'.*'id', 'text'"):
        load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "a.parquet")],
                                column="body"))
    with pytest.raises(DataError, match="holds Int64"):
        load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "a.parquet")], column="id"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not readable as Parquet"):
        load_corpus(ParquetData(source="parquet", paths=[str(tmp_path / "junk.parquet")]))


# --------------------------------------------------------------------------- split, budgets


def test_split_is_deterministic_disjoint_and_stable_when_documents_are_added(tmp_path):
    write_docs(tmp_path / "c", 60)
    a = files(tmp_path / "c", val_fraction=0.2)
    assert a == files(tmp_path / "c", val_fraction=0.2)
    assert not set(a.train) & set(a.val)
    assert 3 <= len(a.val) <= 25 and len(a.train) + len(a.val) == 60
    write_docs(tmp_path / "c", 10, start=60)
    b = files(tmp_path / "c", val_fraction=0.2)
    assert set(a.train) <= set(b.train) and set(a.val) <= set(b.val)
    assert a.fingerprint != b.fingerprint


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_split_keeps_a_document_on_each_side(tmp_path, fraction):
    write_docs(tmp_path, 2)
    c = files(tmp_path, val_fraction=fraction)
    assert len(c.train) == 1 and len(c.val) == 1


def test_fingerprint_follows_content_not_location(tmp_path):
    write_docs(tmp_path / "c", 5)
    a = files(tmp_path / "c")
    shutil.copytree(tmp_path / "c", tmp_path / "moved" / "c")
    assert files(tmp_path / "moved" / "c").fingerprint == a.fingerprint
    (tmp_path / "c" / "doc002.txt").write_text("document 2 edited\n")
    assert files(tmp_path / "c").fingerprint != a.fingerprint
    assert files(tmp_path / "c", val_fraction=0.3).fingerprint != files(tmp_path / "c").fingerprint


def test_max_bytes_keeps_a_prefix_of_exactly_that_many_bytes(tmp_path):
    write_docs(tmp_path, 10)  # 33 bytes each, in name order
    full = files(tmp_path)
    cut = files(tmp_path, max_bytes=100)
    docs = cut.train + cut.val
    assert sum(len(d.encode()) for d in docs) == 100
    assert sorted(docs) == ["d"] + sorted(full.train + full.val)[:3]  # the fourth cut to 1 byte


def test_take_bytes_cuts_at_a_character_boundary():
    texts = ["ab", "€€€", "never"]  # € is 3 bytes
    assert take_bytes(texts, 2) == ["ab"]
    assert take_bytes(texts, 5) == ["ab", "€"]
    assert take_bytes(texts, 7) == ["ab", "€"]  # 8 would split the second €
    assert take_bytes(texts, 8) == ["ab", "€€"]
    assert take_bytes(texts, 100) == texts


def test_eval_documents_has_an_exact_byte_budget():
    val = ["first doc\n", "😀 emoji and é\n", "third\n" * 50]
    corpus = Corpus(train=["t"], val=val, fingerprint="x")
    for n in range(1, 329):  # 328 bytes in all
        docs = eval_documents(corpus, n)
        total = sum(len(d.encode()) for d in docs)
        assert n - 4 < total <= n  # short by less than one (at most 4-byte) character
        assert docs[:-1] == val[:len(docs) - 1] and val[len(docs) - 1].startswith(docs[-1])
    assert eval_documents(corpus, 13) == ["first doc\n"]  # 3 bytes cannot hold the 4-byte emoji
    assert eval_documents(corpus, 14) == ["first doc\n", "😀"]
    assert eval_documents(corpus, 10**6) == val


# ------------------------------------------------------------------------------------- stdlib


def test_stdlib_corpus_is_the_standard_library_without_tests():
    names = [name for name, _ in StdlibData().read().docs]
    assert len(names) > 500 and names == sorted(names)
    assert "os.py" in names and "json/decoder.py" in names
    for name in names:
        folders = name.split("/")[:-1]
        assert not {"test", "tests", "idle_test", "site-packages"} & set(folders), name
    c = load_corpus(StdlibData())
    total = sum(len(d.encode()) for d in c.train + c.val)
    assert total > 5_000_000 and len(c.train) > len(c.val) > 0
    assert c.replaced_chars == 0


# ---------------------------------------------------------------------------------- synthetic


def conditional_entropy(docs: list[str], alphabet: int, order: int) -> float:
    """Plug-in H(next symbol | previous `order` symbols) in bits, Miller-Madow corrected."""
    length = len(docs[0])
    raw = np.frombuffer("".join(docs).encode(), dtype=np.uint8).reshape(len(docs), length)
    _, idx = np.unique(raw, return_inverse=True)
    idx = idx.reshape(raw.shape)
    ctx = np.zeros((len(docs), length - order), dtype=np.int64)
    for j in range(order):
        ctx = ctx * alphabet + idx[:, j:length - order + j]
    cells = np.bincount((ctx * alphabet + idx[:, order:]).ravel(),
                        minlength=alphabet ** (order + 1)).reshape(-1, alphabet)
    n = cells.sum()
    per_ctx = cells.sum(axis=1, keepdims=True)
    nz = cells > 0
    h = -(cells[nz] * np.log2(cells[nz] / np.broadcast_to(per_ctx, cells.shape)[nz])).sum() / n
    return h + (nz.sum() - (per_ctx > 0).sum()) / (2 * n * math.log(2))


@pytest.mark.parametrize("alphabet, order, concentration", [(8, 0, 0.5), (8, 2, 0.5), (4, 3, 0.2)])
def test_synthetic_entropy_rate_matches_the_generated_text(alphabet, order, concentration):
    spec = SyntheticData(source="synthetic", alphabet=alphabet, order=order,
                         concentration=concentration, documents=400, doc_bytes=2500, seed=3)
    c = load_corpus(spec)
    docs = c.train + c.val
    assert len(docs) == 400 and all(len(d) == len(d.encode()) == 2500 for d in docs)
    assert len(set("".join(docs))) <= alphabet
    exact = c.entropy_bits_per_byte
    assert 0 < exact < math.log2(alphabet)
    assert conditional_entropy(docs, alphabet, order) == pytest.approx(exact, abs=0.01)


def test_synthetic_is_deterministic_in_its_seed():
    spec = SyntheticData(source="synthetic", documents=50, doc_bytes=300, seed=7)
    a, b = load_corpus(spec), load_corpus(spec)
    assert a == b and a.train == b.train
    other = load_corpus(spec.model_copy(update={"seed": 8}))
    assert other.train != a.train and other.entropy_bits_per_byte != a.entropy_bits_per_byte


def test_synthetic_lower_concentration_is_more_predictable():
    rates = [load_corpus(SyntheticData(source="synthetic", concentration=c, documents=4,
                                       doc_bytes=10)).entropy_bits_per_byte
             for c in (0.05, 0.3, 5.0)]
    assert rates[0] < rates[1] < rates[2] < 4.0


def test_synthetic_too_many_transitions_is_an_error():
    with pytest.raises(DataError, match="alphabet.*order"):
        load_corpus(SyntheticData(source="synthetic", alphabet=64, order=4))
