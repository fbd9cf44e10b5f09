"""Where trials live: a journal or PostgreSQL, created with baselines and ladder points queued,
resumed only when what is measured has not changed, and errors that say what to do."""

import pytest
from optuna.trial import TrialState

from support import write_study
from workbench.plumbing.errors import StorageError
from workbench.study.file import load_study
from workbench.study.storage import create_or_resume, default_storage, load_existing, open_storage


def test_creating_a_study_queues_its_baselines_and_ladder_points(tmp_path):
    study = load_study(write_study(tmp_path, trials=3, search={"model.width": {"choice": [32, 64]}},
                                   enqueue=[{"model.width": 64, "model.depth": 2}],
                                   ladder={"tokens": [256], "sizes": [{"model.depth": 1}, {"model.depth": 2}]}))
    ostudy = create_or_resume(study, str(tmp_path / "s.journal"))
    waiting = ostudy.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["origin"] for t in waiting] == ["baseline", "ladder", "ladder"]
    assert waiting[0].system_attrs["fixed_params"] == {"model.width": 64}       # searched: a fixed parameter
    assert waiting[0].user_attrs["overrides"] == {"model.depth": 2}
    assert ostudy.user_attrs["planned_trials"] == 3 + 1 + 2 and ostudy.user_attrs["objectives"] == ["val_bpb"]
    again = create_or_resume(study, str(tmp_path / "s.journal"))          # resuming queues nothing twice
    assert len(again.get_trials()) == 3


def test_a_changed_search_space_is_refused_not_mixed(finished_study, tmp_path):
    study = finished_study.study
    changed = write_study(tmp_path, name=study.name, trials=4, search={"model.width": {"choice": [32, 48]}})
    with pytest.raises(StorageError, match="different search space"):
        create_or_resume(load_study(changed), finished_study.url)
    with pytest.raises(StorageError, match="different search space"):
        load_existing(load_study(changed), finished_study.url)


def test_a_missing_study_says_how_to_start_it(tmp_path):
    study = load_study(write_study(tmp_path))
    with pytest.raises(StorageError, match=f"no study '{study.name}' in .*; start it with `workbench study run`"):
        load_existing(study, str(tmp_path / "empty.journal"))
    assert default_storage(study) == f"runs/{study.name}/study.journal"


def test_unreachable_storage_is_one_clear_error_without_the_password():
    with pytest.raises(StorageError, match="cannot reach storage") as info:
        open_storage("postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(info.value) and "***@127.0.0.1:1/none" in str(info.value)
    assert "\n" not in str(info.value)
