"""A corpus: the held-out split, byte budgets, fingerprints and the held-out evaluation text."""

from __future__ import annotations

import shutil

import pytest

from support import files_corpus as files, write_docs
from workbench.data.corpus import Corpus, eval_documents, take_bytes
from workbench.plumbing.errors import DataError


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


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        files(tmp_path / "empty.txt")


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


def test_pairs_cut_each_document_at_its_prompt_length():
    c = Corpus(train=[], val=[], fingerprint="x")
    assert c.pairs(["hello world", "hi", ""], [6, 10, 0]) == [("hello ", "world"), ("hi", ""), ("", "")]
    assert c.pairs(["plain", "text"], None) == [("", "plain"), ("", "text")]
