"""Data-parallel runs on CPU over gloo: the same optimisation as one process, pruned on every
rank at the judged step, and a failing rank reported as its own error."""

import pytest

from support import tiny_spec, two_phase
from workbench.plumbing.errors import DataError, LaunchError
from workbench.record import Pruned, read_record
from workbench.train.loop import train
from workbench.train.parallel import launch


def _dp(spec, devices=2, **train_fields):
    return spec.model_copy(update={"train": spec.train.model_copy(update={"devices": devices, **train_fields})})


def test_two_process_run_matches_one_process(tmp_path):
    """The same global batches split over two gloo processes: the same optimisation, in
    pretraining and in fine-tuning on responses only (ranks hold unequal numbers of targets)."""
    one = two_phase(**{"train.budget": {"steps": 12}, "train.batch_tokens": 512, "train.eval_every": 4})
    a = train(one, tmp_path / "one")
    b = train(_dp(one), tmp_path / "two")
    assert b.status == "completed" and b.devices == 2 and b.device.endswith("x2")
    assert [p.step for p in b.curve] == [p.step for p in a.curve] == [4, 8, 12]
    assert [p.step for p in b.finetune_curve] == [p.step for p in a.finetune_curve] == list(range(7))
    for p, q in zip(a.curve + a.finetune_curve, b.curve + b.finetune_curve):
        assert q.val_loss == pytest.approx(p.val_loss, rel=1e-5)
        assert q.train_loss == pytest.approx(p.train_loss, rel=1e-4)
    assert b.forgetting_bpb == pytest.approx(a.forgetting_bpb, rel=1e-4)
    assert b.suite.int8_bpb == pytest.approx(a.suite.int8_bpb, rel=1e-5)
    assert read_record(tmp_path / "two") == b and (tmp_path / "two" / "model.safetensors").is_file()


def test_pruning_a_data_parallel_run_stops_every_rank_at_the_judged_step(tmp_path):
    seen = []

    def judge(point):
        seen.append(point.step)
        if point.step >= 4:
            raise Pruned(f"judged at step {point.step}")

    spec = _dp(tiny_spec(**{"train.budget": {"steps": 12}, "train.batch_tokens": 512}), eval_every=2)
    record = train(spec, tmp_path / "run", on_eval=judge)
    assert seen == [2, 4]
    assert record.status == "pruned" and record.reason == "judged at step 4" and record.steps == 4


def test_a_failing_rank_is_one_clear_error_naming_the_cause(tmp_path):
    spec = _dp(tiny_spec(**{"data": {"source": "files", "paths": [str(tmp_path / "missing.txt")]}}))
    with pytest.raises(DataError, match="missing.txt: no such file"):
        train(spec, tmp_path / "run")         # found by the caller, before any process starts
    with pytest.raises(LaunchError, match=r"exited with 1 .*DataError: data.paths\[0\]: .*missing.txt: no such file"):
        launch(spec, tmp_path / "run")        # found by a rank: its error, not the others' aftermath
