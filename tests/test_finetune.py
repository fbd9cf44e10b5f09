"""Pretrain then fine-tune: the second phase starts from the pretrained weights, prompts are
never trained on, and studies and fits can judge the fine-tuned model."""

import json
from contextlib import nullcontext

import pytest
import torch
import yaml
from optuna.trial import TrialState
from safetensors.torch import load_model

from support import ROOT, tiny_spec, two_phase
from workbench.data.corpus import load_corpus
from workbench.scaling.runs import load_runs
from workbench.model import build_model, lm_loss
from workbench.study.file import load_study
from workbench.plumbing.errors import SpecError
from workbench.specfile import load_spec
from workbench.study.storage import load_existing
from workbench.study.supervisor import supervise
from workbench.data.streams import pair_stream
from workbench.data.batches import Batches
from workbench.data.prepared import prepare
from workbench.evaluate.heldout import heldout_metrics as evaluate
from workbench.train.loop import train
from workbench.train.step import masked_loss

def test_fine_tuning_starts_from_the_pretrained_weights(tmp_path):
    spec = two_phase()
    pre = spec.model_copy(update={"finetune": None})
    train(pre, tmp_path / "pre")
    record = train(spec, tmp_path / "both")
    model = build_model(pre)
    load_model(model, str(tmp_path / "pre" / "model.safetensors"))
    text = prepare(spec).texts["finetune"]

    # Its first evaluation is the pretrained model's on the fine-tuning corpus...
    before = evaluate(model, text, torch.device("cpu"), nullcontext, 8)
    assert record.finetune_curve[0].step == 0
    assert record.finetune_curve[0].val_loss == pytest.approx(before.loss, rel=1e-6)
    assert record.phases[0].metrics["finetune"].bpb == pytest.approx(before.bpb, rel=1e-6)
    # ...and its first training loss is the pretrained model's loss on its first batch.
    t = spec.finetune.recipe(spec.train)
    x, y = next(Batches(text.train, t.micro_tokens // 32, 32, t.seed, torch.device("cpu"), text.mask))
    with torch.no_grad():
        first = masked_loss(model(x), y).item()
    rows = [json.loads(line) for line in (tmp_path / "both" / "metrics.jsonl").read_text().splitlines()]
    step1 = next(r for r in rows if r["kind"] == "train" and r["phase"] == "finetune" and r["step"] == 1)
    assert step1["loss"] == pytest.approx(first, rel=1e-5)

    assert [p.name for p in record.phases] == ["pretrain", "finetune"]
    after = record.phases[1].metrics
    assert record.finetune_val_bpb == after["finetune"].bpb < before.bpb
    assert record.finetune_gain_bpb == pytest.approx(before.bpb - after["finetune"].bpb)
    assert record.forgetting_bpb == pytest.approx(after["pretrain"].bpb - record.phases[0].metrics["pretrain"].bpb)
    assert record.val_bpb == record.phases[0].metrics["pretrain"].bpb      # pretraining's own result
    assert len(text.eval_pairs) > 8
    assert record.suite.corpus == "finetune" and record.suite.completion.tasks == 8
    assert record.suite.samples and all(s["prompt"].endswith('"""') for s in record.suite.samples)


def test_the_loss_counts_responses_only():
    spec = two_phase()
    corpus = load_corpus(spec.finetune.data)
    pairs = corpus.pairs(corpus.train, corpus.train_prompts)[:50]
    assert all(p.lstrip().startswith(("def ", "async def ")) and p.endswith('"""') for p, _ in pairs)
    prep = prepare(spec)
    tok = prep.tokenizer
    ids, mask = pair_stream(tok, pairs)
    # Target positions are exactly the response bytes and the end-of-text after each response.
    assert mask.sum() == sum(len(tok.encode(r)) + 1 for _, r in pairs)
    assert tok.decode(ids[mask][:len(tok.encode(pairs[0][1]))]) == pairs[0][1]
    stream, m = torch.from_numpy(ids.astype("int32")), torch.from_numpy(mask)
    x, y = next(Batches(stream, 4, 32, 0, torch.device("cpu"), m))
    logits = torch.randn(4, 32, 300)
    keep = y >= 0
    assert 0 < keep.sum() < keep.numel()
    manual = torch.nn.functional.cross_entropy(logits[keep], y[keep])
    assert masked_loss(logits, y) == pytest.approx(manual.item(), rel=1e-6)
    # Prompt targets do not move the loss at all.
    shuffled = logits.clone()
    shuffled[~keep] = torch.randn_like(shuffled[~keep])
    assert masked_loss(shuffled, y) == pytest.approx(masked_loss(logits, y).item(), rel=1e-6)
    text = prep.texts["finetune"]
    assert text.eval_bytes == sum(len(r.encode()) for _, r in text.eval_pairs)
    assert int((text.eval_y >= 0).sum()) == sum(len(tok.encode(r)) + 1 for _, r in text.eval_pairs)
    assert lm_loss(torch.zeros(1, 2, 300), torch.tensor([[-1, -1]]), "sum") == 0


def test_the_example_spec_and_study_run_at_tiny_scale(tmp_path, monkeypatch):
    """specs/finetune-docstrings.yaml and studies/finetune.yaml, shrunk only in budget."""
    monkeypatch.chdir(tmp_path)
    small = {"train": {"budget": {"tokens": 8192}, "eval_bytes": 4096, "completions": 4},
             "finetune": {"budget": {"tokens": 4096}, "eval_bytes": 2048},
             "data": {"source": "python-stdlib", "max_bytes": 200_000}}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"extends": str(ROOT / "specs" / "finetune-docstrings.yaml"),
                                         "name": "tiny-finetune", **small}))
    spec = load_spec(spec_path)
    assert spec.finetune.data.source == "python-docstrings" and spec.model.width == 128
    study_data = yaml.safe_load((ROOT / "studies" / "finetune.yaml").read_text())
    assert study_data["objectives"] == ["finetune_val_bpb"]
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump({**study_data, "base": str(spec_path), "trials": 2}))
    study = load_study(study_path)
    url = str(tmp_path / "s.journal")
    supervise(study, url, workers=1, poll=0.2)
    trials = load_existing(study, url).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.values == [t.user_attrs["record"]["finetune_val_bpb"]]
    runs, prov = load_runs(study_path, storage=url)            # scaling.loss: finetune_val_bpb
    assert prov["conventions"]["loss"] == "finetune_val_bpb"
    assert sorted(runs["loss"].to_list()) == sorted(t.values[0] for t in trials)
    assert sorted(runs["flops"].to_list()) == pytest.approx(
        sorted(t.user_attrs["record"]["compute"]["6N+attn"] for t in trials))


def test_finetune_objectives_need_a_finetune_phase(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec().model_dump(mode="json")))
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump({"name": "s", "base": str(spec_path), "objectives": ["finetune_val_bpb"],
                                          "sampler": {"kind": "random"}}))
    with pytest.raises(SpecError, match="need a finetune: phase"):
        load_study(study_path)


def test_describe_shows_the_fine_tuning_budget():
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "workbench", "describe", str(ROOT / "specs" / "finetune-docstrings.yaml")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "fine-tuning tokens" in run.stdout and "100,352" in run.stdout     # 1e5 rounded to whole steps
