"""Time and size of the HTML report for a large study: N synthetic trials whose losses follow a
planted scaling law, written to a journal storage, then one report built from it.

    python benchmarks/report_speed.py --trials 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from workbench.data.streams import TokenizerStats

from workbench.record import EvalPoint, RunRecord
from workbench.report.page import build
from workbench.study.file import load_study
from workbench.study.storage import create_or_resume
from workbench.study.table import trials_table

STUDY = {"name": "synthetic-1000", "base": "../specs/quickstart.yaml", "trials": 0,
         "search": {"model.depth": {"int": [1, 8]}, "model.width": {"choice": [64, 128, 256, 512]},
                    "model.positional.kind": {"choice": ["rope", "learned", "alibi", "none"]},
                    "train.lr": {"float": [1e-4, 1e-2], "log": True}},
         "scaling": {"x": "flops", "group_by": "model.positional.kind"}}


def synthetic_trials(study, n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    rng = np.random.default_rng(seed)
    dists = {"model.depth": IntDistribution(1, 8), "model.width": CategoricalDistribution([64, 128, 256, 512]),
             "model.positional.kind": CategoricalDistribution(["rope", "learned", "alibi", "none"]),
             "train.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    base = study.base.model_dump(mode="json")
    out = []
    for i in range(n):
        depth, width = int(rng.integers(1, 9)), int(rng.choice([64, 128, 256, 512]))
        kind, lr = str(rng.choice(["rope", "learned", "alibi", "none"])), float(10 ** rng.uniform(-4, -2))
        N = 12 * depth * width ** 2 + 257 * width
        D = float(10 ** rng.uniform(5, 7))
        loss = (1.0 + 400 / N ** 0.34 + 400 / D ** 0.28) * np.exp(rng.normal(0, 0.01))
        curve = [EvalPoint(step=s, tokens=int(D * s / 5), elapsed_s=s, lr=lr, train_loss=loss + 1 / s,
                           val_loss=loss + 1 / s, val_bpb=loss + 1 / s) for s in range(1, 6)]
        record = RunRecord(
            name=f"synthetic-{i}", spec_digest="0" * 12, status="completed", started_at="2026-01-01T00:00:00",
            device="cpu", precision="no", params={"total": N, "embedding": 257 * width, "nonembedding": N - 257 * width,
                                                  "matmul": N}, flops_per_token={"6N": 6.0 * N, "6N+attn": 6.0 * N},
            tokens=int(D), steps=100, compute={"6N": 6 * N * D, "6N+attn": 6 * N * D}, train_loss=loss,
            val_loss=loss, val_ppl=float(np.exp(loss)), val_bpb=loss, best_val_bpb=loss, eval_bytes=65536,
            eval_tokens=65536, tokens_per_s=1e4, mfu=0.3, peak_flops=1e11, peak_memory_bytes=2**28,
            peak_memory_kind="process_max_rss", wall_s=10.0, setup_s=0.1, train_s=9.0, eval_s=0.9,
            tokenizer=TokenizerStats(kind="byte", vocab_size=257, bytes_per_token=1.0, roundtrip_rate=1.0, unk_rate=0.0),
            curve=curve)
        params = {"model.depth": depth, "model.width": width, "model.positional.kind": kind, "train.lr": lr}
        spec = {**base, "model": {**base["model"], "depth": depth, "width": width,
                                  "positional": {**base["model"]["positional"], "kind": kind}}}
        out.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[loss], params=params, distributions=dists,
            user_attrs={"status": "completed", "origin": "search", "fields": params, "spec": spec,
                        "record": record.model_dump(mode="json")}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    a = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        path = root / "studies" / f".bench-{Path(tmp).name}.yaml"
        path.write_text(yaml.safe_dump(STUDY))
        try:
            study = load_study(path)
            ostudy = create_or_resume(study, str(Path(tmp) / "s.journal"))
            ostudy.add_trials(synthetic_trials(study, a.trials))
            start = time.perf_counter()
            html, figures = build(study, ostudy, trials_table(ostudy), samples=False)
            elapsed = time.perf_counter() - start
        finally:
            path.unlink()
    print(f"{a.trials} trials: report built in {elapsed:.2f} s, {len(html.encode()) / 2**20:.2f} MiB, "
          f"{figures} figures (fit not included)")


if __name__ == "__main__":
    main()
