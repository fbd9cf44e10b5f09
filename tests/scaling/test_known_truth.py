"""Known truth end to end: a ladder of tiny models trained for real on the synthetic corpus,
whose entropy rate is computed exactly, fitted by the workbench. The fitted floor E must land on
that entropy rate, in the same units (bits per byte)."""

import pytest
import torch

from scaling.planted import fit_source
from support import write_study
from workbench.study.file import load_study
from workbench.study.storage import create_or_resume, default_storage
from workbench.study.table import load_trials
from workbench.study.worker import work

# A source small models can learn to its floor in a few hundred steps: 4 symbols, each
# depending on the one before (one byte per symbol, so bits per symbol are bits per byte).
SOURCE = {"source": "synthetic", "alphabet": 4, "order": 1, "concentration": 0.5, "documents": 100,
          "doc_bytes": 2000, "seed": 0}
BASE = {"name": "markov", "model": {"depth": 1, "width": 32, "heads": 2, "context": 32, "tie_embeddings": False},
        "tokenizer": {"kind": "byte"}, "data": SOURCE,
        "train": {"budget": {"tokens": 1000}, "batch_tokens": 256, "lr": 1e-2, "eval_bytes": 32768,
                  "eval_every": 10 ** 6, "completions": 0, "samples": 0}}
LADDER = {"tokens": [5e3, 1e4, 2e4, 4e4, 8e4],
          "sizes": [{"model.width": 16, "model.heads": 1}, {"model.width": 32, "model.heads": 2}]}


@pytest.fixture
def one_thread():
    """Tiny models train several times faster on one CPU thread (no threads to wake per op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_ladder_on_the_synthetic_corpus_fits_its_entropy_rate(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, trials=0, base=BASE, ladder=LADDER)
    study = load_study(path)
    create_or_resume(study, default_storage(study))
    assert work(study, default_storage(study)) == 10
    _, _, table = load_trials(path)
    entropy = table["entropy_bpb"].unique().to_list()
    assert len(entropy) == 1 and 1.0 < entropy[0] < 2.0               # one corpus, its exact entropy rate
    assert (table["epochs"] - table["tokens"] / table["unique_tokens"]).abs().max() < 1e-9
    assert table["val_bpb"].min() > entropy[0]                          # no model beats the floor

    result = fit_source(path, bootstrap=60)
    chosen = result.forms[result.selection.chosen]
    assert chosen.supported and "E" in chosen.params
    assert chosen.params["E"].estimate == pytest.approx(entropy[0], rel=0.05)
    assert result.conventions.loss == "val_bpb"                         # bits per byte, as the entropy rate
