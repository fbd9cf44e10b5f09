"""Worker placement on GPUs, computed without GPUs."""

import pytest

from workbench.study.devices import plan_workers


def test_auto_is_one_worker_per_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plans = plan_workers("auto", gpus=4, cpus=16)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "1", "2", "3"]
    assert all(p.threads == 4 for p in plans)


def test_trials_per_gpu_packs_workers_onto_each_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plans = plan_workers("auto", gpus=2, trials_per_gpu=3, cpus=12)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "0", "0", "1", "1", "1"]
    assert plans[0].device == "cuda:0 (3 trials share it)" and plans[0].threads == 2


def test_visible_devices_are_respected_and_extra_workers_wrap(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    plans = plan_workers(3, gpus=2, cpus=6)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["5", "7", "5"]


def test_cpu_only_machines_split_cores_and_hide_gpus():
    plans = plan_workers("auto", gpus=0, cpus=2)
    assert len(plans) == 1 and plans[0].threads == 2 and plans[0].env == {"CUDA_VISIBLE_DEVICES": ""}
    plans = plan_workers(2, gpus=0, cpus=2)
    assert [p.threads for p in plans] == [1, 1]


def test_bad_counts_are_clear_errors():
    with pytest.raises(ValueError, match="at least 1"):
        plan_workers(0, gpus=0)
    with pytest.raises(ValueError, match="trials-per-gpu"):
        plan_workers("auto", gpus=1, trials_per_gpu=0)


def test_gpus_per_trial_gives_each_worker_a_group_of_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plans = plan_workers("auto", gpus=4, gpus_per_trial=2, cpus=16)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0,1", "2,3"]
    assert all(p.devices == 2 and p.threads == 8 for p in plans)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    plans = plan_workers("auto", gpus=3, gpus_per_trial=2)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["3,5"]          # the odd GPU idles
    cpu = plan_workers(1, gpus=0, gpus_per_trial=2, cpus=2)
    assert cpu[0].devices == 2 and cpu[0].env == {"CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(ValueError, match="needs that many visible GPUs"):
        plan_workers("auto", gpus=1, gpus_per_trial=2)
    with pytest.raises(ValueError, match="cannot both"):
        plan_workers("auto", gpus=4, gpus_per_trial=2, trials_per_gpu=2)
