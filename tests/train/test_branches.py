"""Branched warmup-stable-decay runs: each branch is exactly the separate WSD run of its token
count (same warmup tokens), is charged only its decay, and a run stopped after a branch resumes
from the saved fork without training that branch again."""

import json

import pytest
from pydantic import ValidationError

from support import tiny_spec
from workbench.accounting import compute
from workbench.spec import ScheduleSpec
from workbench.train.branches import plan
from workbench.train.loop import train
from workbench.train.step import lr_factor

QUIET = {"train.completions": 0, "train.samples": 0}
WSD = {"kind": "wsd", "warmup": 0.05, "decay": 0.2}


def branched(steps=40, fractions=(0.25, 0.5, 1.0), **over):
    return tiny_spec(**{"train.budget": {"steps": steps}, "train.schedule": {**WSD, "branches": list(fractions)},
                        **QUIET, **over})


def test_every_branch_is_the_separate_wsd_run_of_its_token_count():
    got = []
    last = train(branched(), on_branch=got.append)
    assert [r.branch.index for r in got] == [0, 1] and last.branch.index == 2
    for fraction, record in zip((0.25, 0.5, 1.0), got + [last]):
        steps = round(40 * fraction)
        alone = train(tiny_spec(**{"train.budget": {"steps": steps}, **QUIET,
                                   "train.schedule": {**WSD, "warmup": 0.05 * 40 / steps}}))
        assert record.steps == steps and record.tokens == alone.tokens
        assert record.val_loss == pytest.approx(alone.val_loss, abs=1e-6)     # the same run, step for step
        assert record.compute == alone.compute                                 # fits see its own (N, D)


def test_each_branch_is_charged_its_decay_and_the_shared_part_once():
    spec = branched()
    got = []
    last = train(spec, on_branch=got.append)
    records = got + [last]
    batch = spec.train.batch_tokens
    assert [(r.branch.fork_tokens // batch, r.tokens // batch) for r in records] == [(8, 10), (16, 20), (32, 40)]
    assert all(r.branch.shared_tokens == 32 * batch for r in records)
    charged = sum(r.branch.charged_compute["6N"] for r in records)
    assert charged == pytest.approx(compute(spec, 40 * batch)["6N"] + compute(spec, (2 + 4) * batch)["6N"])
    separate = sum(r.compute["6N"] for r in records)
    assert separate / charged == pytest.approx((10 + 20 + 40) / (40 + 6))


def test_five_even_branches_cost_about_two_times_less_than_separate_runs():
    """The arithmetic of the issue: 0.2, 0.4, ..., 1.0 with 20% decays."""
    branches = plan(ScheduleSpec(**WSD, branches=[0.2, 0.4, 0.6, 0.8, 1.0]), 1000)
    separate = sum(b.end for b in branches)
    shared_once = branches[-1].fork + sum(b.end - b.fork for b in branches)
    assert separate / shared_once == pytest.approx(3000 / 1400)


def test_branch_forks_are_where_the_schedule_leaves_its_constant_rate():
    schedule = ScheduleSpec(**WSD, shape="1-sqrt", branches=[0.3, 0.7, 1.0])
    for b in plan(schedule, 97):
        rates = [lr_factor(schedule, step / b.end, warmup=b.warmup) for step in range(1, b.end + 1)]
        assert all(r == 1.0 for r in rates[int(b.warmup * b.end) + 1:b.fork]) and rates[b.fork] < 1.0
        assert rates[-1] == pytest.approx(schedule.min_lr_ratio)
    # 1-sqrt falls faster than linear at first
    assert lr_factor(schedule, 0.85) < lr_factor(ScheduleSpec(**WSD), 0.85)


def test_a_stopped_run_resumes_from_its_last_finished_branch(tmp_path):
    spec = branched(steps=60, fractions=(0.25, 0.5, 1.0))
    whole = train(spec, tmp_path / "whole")

    class Killed(Exception):
        pass

    def stop_after_first(record):
        raise Killed

    with pytest.raises(Killed):
        train(spec, tmp_path / "run", on_branch=stop_after_first)
    saved = json.loads((tmp_path / "run" / "branches" / "latest.json").read_text())
    assert saved["fork"] == 12 and (tmp_path / "run" / "branches" / "branch-0.json").is_file()

    got = []
    resumed = train(spec, tmp_path / "run", on_branch=got.append)
    assert [r.branch.index for r in got] == [0, 1]                 # the finished branch handed on again, not retrained
    assert got[0].started_at == json.loads((tmp_path / "run" / "branches" / "branch-0.json").read_text())["started_at"]
    trained = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trunk = [row["step"] for row in trained if row["kind"] == "train" and "branch" not in row]
    assert trunk.count(1) == trunk.count(10) == 1 and 20 in trunk   # the steps before the fork did not run again
    assert resumed.val_loss == pytest.approx(whole.val_loss, abs=1e-6)
    assert not list((tmp_path / "run" / "branches").glob("fork-*"))   # a finished run keeps no forks


@pytest.mark.parametrize("schedule, says", [
    ({"kind": "cosine", "branches": [0.5, 1.0]}, "need kind: wsd"),
    ({**WSD, "branches": [0.5, 0.4, 1.0]}, "must increase and end at 1.0"),
    ({**WSD, "branches": [0.5, 0.9]}, "must increase and end at 1.0"),
    ({**WSD, "warmup": 0.2, "branches": [0.2, 1.0]}, "inside the warmup"),
])
def test_impossible_branches_are_refused_saying_why(schedule, says):
    with pytest.raises(ValidationError, match=says):
        tiny_spec(**{"train.schedule": schedule})


def test_branches_need_a_budget_that_says_where_they_end():
    with pytest.raises(ValidationError, match="seconds budget"):
        tiny_spec(**{"train.budget": {"seconds": 5}, "train.schedule": {**WSD, "branches": [0.5, 1.0]}})


def test_the_digest_of_specs_without_branches_is_unchanged():
    assert tiny_spec().digest() == tiny_spec(**{"train.schedule": {"kind": "cosine"}}).digest()
    assert branched().digest() != branched(fractions=(0.5, 1.0)).digest()


def test_a_fresh_run_never_meets_the_fork_another_spec_left_behind(tmp_path):
    """A run stopped between renaming its fork into place and naming it leaves a fork without a
    pointer; a changed spec started in the same folder must neither resume from it nor go back
    to it after a branch."""
    def stop(record):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        train(branched(steps=40), tmp_path / "run", on_branch=stop)
    (tmp_path / "run" / "branches" / "latest.json").unlink()
    other = branched(steps=40, **{"train.lr": 1e-3})
    got = []
    last = train(other, tmp_path / "run", on_branch=got.append)
    alone = []
    alone_last = train(other, tmp_path / "alone", on_branch=alone.append)
    assert [r.val_loss for r in got + [last]] == pytest.approx([r.val_loss for r in alone + [alone_last]], abs=1e-6)


def test_one_run_folder_is_held_by_one_run_at_a_time(tmp_path):
    from workbench.train.branches import Checkpoints
    first, second = Checkpoints(tmp_path, "a"), Checkpoints(tmp_path, "a")
    first.acquire()
    with pytest.raises(RuntimeError, match="another process is training this branched run"):
        second.acquire()
    first.close(done=False)
    second.acquire()                       # let go: the next run may take it
    second.close()
