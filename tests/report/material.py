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
