"""Commands on one spec: validate, schema, describe, train, sample, bench."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from workbench.cli.app import SetOption, app, err, out, spec_from, user_errors
from workbench.plumbing.errors import SpecError


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Spec or study files to check.")]) -> None:
    """Check spec and study files; report every problem in every file at once."""
    from workbench.accounting import count_params, memory_problem
    from workbench.specfile import load_spec
    from workbench.specfile import read_yaml
    from workbench.study.file import load_study
    bad = 0
    for path in files:
        try:
            if "base" in read_yaml(path)[0]:
                study = load_study(path)
                out.print(f"ok  {path}  (study {study.name}: {study.spec.trials} searched trials, "
                          f"{len(study.spec.enqueue)} baselines, {_ladder_size(study)})")
                continue
            spec = load_spec(path)
        except SpecError as e:
            bad += 1
            for issue in e.issues:
                err.print(f"[red]error[/red] {issue}", soft_wrap=True)
            continue
        too_big = memory_problem(spec)
        if too_big:
            bad += 1
            err.print(f"[red]error[/red] {path}: model: {too_big}", soft_wrap=True)
            continue
        out.print(f"ok  {path}  ({spec.name}, {count_params(spec).total:,} parameters)")
    if bad:
        err.print(f"{bad} of {len(files)} file(s) invalid")
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of spec files (for YAML editors)."""
    from workbench.spec import Spec
    print(json.dumps(Spec.model_json_schema(), indent=2))


@app.command()
@user_errors
def describe(spec_file: Path, set_: SetOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Parameter counts, FLOPs per token, training compute and a memory estimate."""
    from workbench.accounting import describe as describe_spec
    info = describe_spec(spec_from(spec_file, set_))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table(title=f"{info['name']}", show_header=False, box=None)
    for key, value in info["params"].items():
        table.add_row(f"params.{key}", f"{value:,}")
    for key, value in info["flops_per_token"].items():
        table.add_row(f"flops/token [{key}]", f"{value:,.0f}")
    table.add_row("training tokens (D)", f"{info['tokens']:,}" if info["tokens"] else "set by seconds")
    for key, value in (info["compute"] or {}).items():
        table.add_row(f"training compute [{key}]", f"{value:.3e} FLOPs")
    if info["finetune"]:
        ft = info["finetune"]
        table.add_row("fine-tuning tokens", f"{ft['tokens']:,}" if ft["tokens"] else "set by seconds")
        for key, value in (ft["compute"] or {}).items():
            table.add_row(f"fine-tuning compute [{key}]", f"{value:.3e} FLOPs")
    for key, value in info["memory_bytes"].items():
        table.add_row(f"memory.{key} (estimate)", f"{value / 2**20:,.1f} MiB")
    out.print(table)
    if info["memory_problem"]:
        err.print(f"[yellow]warning[/yellow] {spec_file}: model: {info['memory_problem']}", soft_wrap=True)


@app.command()
@user_errors
def train(spec_file: Path, set_: SetOption = None,
          out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder.")] = None,
          quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False) -> None:
    """Train a spec briefly and write its run folder."""
    from workbench.plumbing.files import writable_folder
    from workbench.train.loop import train as train_spec
    spec = spec_from(spec_file, set_)
    run_dir = out_dir or Path("runs") / f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    writable_folder(run_dir, "run folder", create=False)
    branches = []
    record = train_spec(spec, run_dir, progress=not quiet and sys.stderr.isatty(), on_branch=branches.append)
    table = Table(show_header=False, box=None)
    rows = [("status", record.status + (f" ({record.reason})" if record.reason else "")),
            ("params (total / non-embedding)", f"{record.params['total']:,} / {record.params['nonembedding']:,}"),
            ("tokens (D)", f"{record.tokens:,}"), ("compute (6N+attn)", f"{record.compute['6N+attn']:.3e} FLOPs")]
    if record.val_bpb is not None:
        rows += [("val bits per byte", f"{record.val_bpb:.4f}"), ("val loss / perplexity",
                 f"{record.val_loss:.4f} / {record.val_ppl:.2f}")]
    if record.entropy_bpb is not None:
        rows.append(("corpus entropy (bpb)", f"{record.entropy_bpb:.4f}"))
    if record.finetune_val_bpb is not None:
        rows += [("fine-tuned bpb (its corpus)", f"{record.finetune_val_bpb:.4f}"),
                 ("fine-tuning gain / forgetting", f"{record.finetune_gain_bpb:+.4f} / {record.forgetting_bpb:+.4f} bpb")]
    if record.suite is not None:
        s = record.suite
        rows += [(f"top-1 / int8 bpb ({s.corpus})", f"{s.metrics.top1:.1%} / {s.int8_bpb:.4f}")]
        if s.completion:
            rows.append((f"completions ({s.completion.tasks})",
                         f"exact {s.completion.exact_match:.1%}, BLEU {s.completion.bleu:.3f}"))
    for label, c in (("", record.corpus), ("fine-tuning ", record.finetune_corpus)):
        if c is not None:
            rows.append((f"{label}held out (split by {c.split})",
                         f"{c.val_bytes:,} of {c.train_bytes + c.val_bytes:,} bytes ({c.chosen})"))
            if c.replaced_chars:
                rows.append((f"{label}invalid UTF-8", f"{c.replaced_chars:,} sequences read as U+FFFD"))
    if record.branch:                                 # a branched schedule: each branch is a run
        from workbench.record import records_compute, spent_text
        for b in branches + [record]:
            rows.append((f"branch {b.branch.index + 1}/{b.branch.count} (D = {b.tokens:,})",
                         (f"val bpb {b.val_bpb:.4f}" if b.val_bpb is not None else b.status)
                         + f", charged {b.branch.charged_compute['6N+attn']:.3e} FLOPs"))
        rows.append(("compute", spent_text(records_compute([b.model_dump() for b in branches + [record]]), "this run")))
    rows += [("tokens/s", f"{record.tokens_per_s:,.0f}" if record.tokens_per_s else "-"),
             ("MFU", f"{record.mfu:.1%}" if record.mfu else "-"),
             ("wall time", f"{record.wall_s:.1f} s"), ("run folder", str(run_dir))]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if record.status == "diverged":
        raise typer.Exit(3)


@app.command()
@user_errors
def sample(run_dir: Path, prompt: Annotated[str, typer.Option(help="Text to continue.")] = "",
           tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 200,
           temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> None:
    """Generate text from a trained run."""
    from workbench.evaluate.generate import generate, load_run
    model, tok = load_run(run_dir)
    print(prompt + generate(model, tok, prompt, tokens, temperature, top_k, seed))


@app.command()
@user_errors
def bench(spec_file: Path, set_: SetOption = None,
          steps: Annotated[int, typer.Option(help="Timed steps.")] = 20,
          as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Measure training tokens/s, step time, MFU and peak memory on this device."""
    from workbench.train.bench import bench as bench_spec
    result = bench_spec(spec_from(spec_file, set_), steps=steps)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"bench {result['name']} on {result['device']}", show_header=False, box=None)
    table.add_row("tokens/s", f"{result['tokens_per_s']:,.0f}")
    table.add_row("step time", f"{result['step_time_s'] * 1e3:.1f} ms")
    table.add_row("MFU", f"{result['mfu']:.1%} of {result['peak_flops'] / 1e9:,.0f} GFLOP/s measured")
    table.add_row("peak memory", f"{result['peak_memory_bytes'] / 2**20:,.0f} MiB ({result['peak_memory_kind']})")
    for phase, seconds in result["phase_seconds_per_step"].items():
        table.add_row(f"  {phase}", f"{seconds * 1e3:.2f} ms/step")
    table.add_row("outside fwd/bwd/optimizer", f"{result['outside_model_fraction']:.1%}")
    out.print(table)


def _ladder_size(study) -> str:
    from workbench.study.ladder import ladder_points
    ladder, runs = study.spec.ladder, ladder_points(study)
    if ladder is None:
        return "no ladder"
    points = len({json.dumps(p, sort_keys=True) for r in runs for p in r["points"]})
    tuned = f" x {ladder.tune.trials} tuning runs" if ladder.tune else ""
    tuned += f" from {len(runs)} branched runs" if ladder.branches else ""
    check = f", a validation run at {ladder.validate_.flops}" if ladder.validate_ else ""
    return f"{points} ladder points{tuned}{check}"
