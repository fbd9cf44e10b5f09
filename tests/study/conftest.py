from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from support import write_study
from workbench.study.file import load_study
from workbench.study.schema import StudyFile
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise


@dataclass
class Finished:
    """A study run to the end: its file, storage, summary, trials and folder."""

    study: StudyFile
    url: str
    result: dict
    ostudy: optuna.Study
    folder: Path


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Finished:
    """Two workers over one journal: 4 searched trials, 2 baselines (one diverges), a ladder of
    2 sizes x 2 token budgets, and a parameter constraint; run once for the checks of supervisor,
    storage and table alike."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_study(folder, trials=4, search={"model.width": {"choice": [32, 64]}, "train.lr": {"float": [2e-3, 4e-3]}},
                       enqueue=[{"model.width": 32}, {"model.init_std": 1e30}],
                       ladder={"tokens": [256, 512], "sizes": [{"model.depth": 1}, {"model.depth": 2}]},
                       constraints=["params <= 200000"])
    study = load_study(path)
    url = str(folder / "s.journal")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)                                  # run folders land under folder/runs
        result = supervise(study, url, workers=2, poll=0.2)
    return Finished(study, url, result, load_existing(study, url), folder)
