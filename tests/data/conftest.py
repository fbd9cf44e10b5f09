from pathlib import Path

import pytest

from support import tokenizer_spec
from workbench.data.corpus import Corpus, load_corpus
from workbench.data.sources import StdlibData
from workbench.data.tokenizer import KINDS, TextTokenizer, get_tokenizer


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    """400 kB of the standard library, a quarter of it held out."""
    return load_corpus(StdlibData(max_bytes=400_000, val_fraction=0.25))


@pytest.fixture(scope="session")
def toks(corpus, tmp_path_factory) -> dict[str, TextTokenizer]:
    """One tokenizer of every kind in KINDS (vocabulary 1024 where it can be chosen), trained
    afresh on `corpus`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        return {kind: get_tokenizer(tokenizer_spec(kind), corpus) for kind in KINDS}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder for one test."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
