"""Helpers of the report tests: reading a page's tables back, grouping run records, and studies
rebuilt in memory from changed records."""


def cells(page, table: str) -> list[list[str]]:
    """The text of every row of `table` (a CSS selector) after its heading row."""
    return page.evaluate(f"[...document.querySelectorAll('{table} tr')].slice(1)"
                         ".map(r => [...r.cells].map(c => c.textContent))")


def by_group(records: dict[int, dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records.values():
        out.setdefault(r["group"], []).append(r)
    return out


def rebuilt(ostudy, change) -> object:
    """An in-memory copy of a study whose run records went through `change(number, record)`."""
    import optuna
    copy = optuna.create_study()
    for t in ostudy.get_trials():
        if "record" not in t.user_attrs:                  # a repeat the worker skipped: nothing trained
            continue
        record = change(t.number, dict(t.user_attrs["record"]))
        copy.add_trial(optuna.trial.create_trial(state=t.state, values=t.values, params=t.params,
                                                 distributions=t.distributions,
                                                 user_attrs={**t.user_attrs, "record": record}))
    return copy


def planted_study(tmp_path, runs: list[tuple[float, float, float, float | None]], ladder: bool = False):
    """A study (over the tests' BASE spec) whose completed trials are planted, not trained: one
    per (N, D, loss, epochs); ladder trials carry their nominal budget C = 6·N·D. Returns the
    study and its in-memory Optuna study."""
    import optuna
    from optuna.distributions import FloatDistribution

    from support import write_study
    from workbench.data.streams import TokenizerStats
    from workbench.record import EvalPoint, RunRecord
    from workbench.study.file import load_study
    study = load_study(write_study(tmp_path, trials=0))
    ostudy = optuna.create_study()
    base = study.base.model_dump(mode="json")
    for i, (N, D, loss, epochs) in enumerate(runs):
        C = 6.0 * N * D
        curve = [EvalPoint(step=1, tokens=int(D), elapsed_s=1.0, lr=1e-3, train_loss=loss, val_loss=loss, val_bpb=loss)]
        record = RunRecord(
            name=f"planted-{i}", spec_digest="0" * 12, status="completed", started_at="2026-01-01T00:00:00",
            device="cpu", precision="no", params={"total": int(N), "embedding": 0, "nonembedding": int(N),
                                                  "matmul": int(N)},
            flops_per_token={"6N": 6.0 * N, "6N+attn": 6.0 * N}, tokens=int(D), steps=10,
            unique_tokens=int(D / epochs) if epochs else None, epochs=epochs, compute={"6N": C, "6N+attn": C},
            train_loss=loss, val_loss=loss, val_ppl=2.0 ** loss, val_bpb=loss, best_val_bpb=loss, eval_bytes=1000,
            eval_tokens=1000, tokens_per_s=1e4, mfu=0.1, peak_flops=1e11, peak_memory_bytes=2 ** 20,
            peak_memory_kind="process_max_rss", wall_s=1.0, setup_s=0.1, train_s=0.8, eval_s=0.1,
            tokenizer=TokenizerStats(kind="byte", vocab_size=257, bytes_per_token=1.0, roundtrip_rate=1.0,
                                     unk_rate=0.0), curve=curve)
        spec = {**base, "train": {**base["train"], "budget": {"flops": C, "flops_convention": "6N"}}}
        ostudy.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[loss], params={"x": float(i)},
            distributions={"x": FloatDistribution(0, len(runs))},
            user_attrs={"status": "completed", "origin": "ladder" if ladder else "search", "spec": spec,
                        "record": record.model_dump(mode="json")}))
    return study, ostudy
