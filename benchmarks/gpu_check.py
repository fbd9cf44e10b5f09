"""One GPU check of workbench's speed claims: run once on a CUDA machine, read one table.

From the repository root (about 6-8 minutes on one H200; stderr shows progress):

    python benchmarks/gpu_check.py [--out check.json] [--sections gpt2,packed] [--budget-s 480]
    python benchmarks/gpu_check.py --smoke      # every section at toy sizes on the CPU (~1 min)

Sections and rows (targets in the table's target column):
  env         GPU name and count, torch and CUDA versions, the measured bf16 matmul peak (4096^3
              matmuls, `accounting.matmul_peak`): the denominator of every MFU below.
  gpt2        specs/gpt2-small.yaml (124M, context 1024, bf16, torch.compile) through
              `workbench.train.bench.bench`, beside benchmarks/nanogpt_style.py's `run` of the same shape,
              compiled here (run() never compiles), in the same process; both at one 16 x 1024
              micro-batch per step, no accumulation. Rows: tokens/s, MFU (6N+attn FLOPs per token
              over the peak) [ours >= 55%; compiled nanoGPT measured 53.5%, 500k tokens/s],
              compile seconds (the first step), peak memory, ours/baseline tokens/s.
  packed      K trainers of specs/gpt-16m.yaml on one GPU (K = 1 and 8): separate processes take
              the step `bench` times (make_engine, Batches, train_step), compile and warm up, then
              a barrier starts their timed windows together. Aggregate = sum of the processes'
              rates over their own windows; "wall" = all their tokens over the union of the
              windows (a floor) [K=8: >= 3.2M tokens/s].
  positional  the 16M shape (eager) with learned, rope and alibi positions: tokens/s, the SDPA
              kernels that accept each scheme's attention call (ALiBi passes a bias, which rules
              out flash), and the alibi/learned throughput ratio.
  study       a packed study: 16 trials of the 16M shape (compile off, depth x width searched by
              random sampling, ~8e6 tokens each, completions and samples off) by
              `study.supervise(workers="auto", trials_per_gpu=4)`, then 4 trials at 2 per GPU
              ("2x2"; 2 GPUs x 2 where there are two). The 50304-token BPE tokenizer is trained
              once beforehand into workbench's usual cache, so workers only load it. Rows: wall seconds and trials completed, training tokens/s (recorded
              tokens over wall), GPU busy (nvidia-smi utilization.gpu, the share of time a kernel
              ran, sampled every 200 ms: mean over the wall, and the share of samples above 0).
  dp          with 2+ GPUs only: the 16M shape (compile off) trained by `train.train` on 2 GPUs
              (an Accelerate job) and on 1 (in this process): tokens/s of both, their ratio [~2] and |val loss
              difference| [~0: the same optimisation].

A failing section becomes a row "error: ..." and the rest still run; --budget-s scales step
counts and token budgets (480 s is the default size), skips sections started after it, and stops
the packed and study processes a minute past it (a study keeps the trials it finished). Each
section's rows go to stderr (and --out is rewritten) as it ends, so a killed run keeps them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

DEFAULT_BUDGET_S = 480.0
PAST_BUDGET_S = 60.0         # the packed and study processes are stopped this long after --budget-s
PACKED_TIMEOUT_S = 240.0     # one K of packed trainers, start to finish (a hung one costs no more)
SECTIONS = ("env", "gpt2", "packed", "positional", "study", "dp")
_START = time.perf_counter()


def log(message: str) -> None:
    """Progress for the person waiting, on stderr; the table alone goes to stdout."""
    print(f"[{datetime.now():%H:%M:%S} +{time.perf_counter() - _START:4.0f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the final table."""

    section: str
    metric: str
    ours: str = "-"
    baseline: str = "-"
    target: str = ""
    verdict: str = ""       # ok, MISS, error, skipped or empty
    note: str = ""


@dataclass
class Sizes:
    """Every size the sections use: full size on a GPU, toy size for --smoke, scaled by --budget-s."""

    smoke: bool
    scale: float = 1.0
    shrink: dict[str, Any] = field(default_factory=dict)   # spec overrides applied everywhere
    gpt2_rows: int = 16                                    # sequences of 1024 per step
    gpt2_steps: int = 30
    baseline_backend: str = "inductor"
    ks: tuple[int, ...] = (1, 8)
    packed_steps: int = 300
    pos_steps: int = 20
    study_trials: tuple[tuple[str, int, int], ...] = (("x4", 16, 4), ("2x2", 4, 2))
    study_tokens: float = 8e6
    study_space: dict[str, Any] = field(default_factory=lambda: {
        "model.depth": {"int": [2, 6]}, "model.width": {"choice": [128, 192, 256, 320]}})
    dp_tokens: float = 2e7
    budget_s: float = DEFAULT_BUDGET_S

    @classmethod
    def make(cls, smoke: bool, budget_s: float) -> Sizes:
        scale = max(0.05, budget_s / DEFAULT_BUDGET_S)
        if smoke:
            return cls(True, 1.0, {"model.depth": 1, "model.width": 64, "model.heads": 4, "model.context": 64,
                                   "train.batch_tokens": 512, "train.micro_batch_tokens": None,
                                   "tokenizer": {"kind": "byte"}, "train.precision": "fp32", "train.compile": False,
                                   "train.eval_bytes": 8192, "train.eval_every": 10**6},
                       gpt2_rows=8, gpt2_steps=3, baseline_backend="eager", ks=(1, 2), packed_steps=3,
                       pos_steps=3, study_trials=(("x4", 2, 4), ("2x2", 2, 2)), study_tokens=1e4,
                       study_space={"model.depth": {"int": [1, 2]}, "model.width": {"choice": [32, 64]}},
                       dp_tokens=1e4, budget_s=budget_s)
        n = lambda v, low: max(low, round(v * scale))                      # noqa: E731
        return cls(False, scale, gpt2_steps=n(30, 5), packed_steps=n(300, 30), pos_steps=n(20, 5),
                   study_tokens=n(8e6, 1e6), dp_tokens=n(2e7, 2e6), budget_s=budget_s)


# ------------------------------------------------------------------------------- helpers


def stop_at(sizes: Sizes) -> float:
    """The perf_counter time by which the packed and study sections stop their processes."""
    return _START + sizes.budget_s + PAST_BUDGET_S


def cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def spec16(sizes: Sizes, **overrides: Any):
    """specs/gpt-16m.yaml, shrunk for --smoke, with dotted-field overrides."""
    from workbench.specfile import load_spec
    return load_spec(SPECS / "gpt-16m.yaml", {**sizes.shrink, **overrides})


def free_memory() -> None:
    """Drop compiled graphs and cached blocks between sections, so later processes get the GPU."""
    import torch
    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def verdict(value: float, target: float) -> str:
    return "ok" if value >= target else "MISS"


def write_spec_file(spec, path: Path) -> Path:
    import yaml
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return path


# --------------------------------------------------------------------------------- env


def env_section(sizes: Sizes) -> tuple[list[Row], dict]:
    import torch

    from workbench.accounting import matmul_peak
    on_gpu = cuda()
    device = torch.device("cuda" if on_gpu else "cpu")
    if on_gpu:
        props = torch.cuda.get_device_properties(0)
        name = f"{props.name} x{torch.cuda.device_count()}, {props.total_memory / 2**30:.0f} GiB"
    else:
        name = f"none: cpu ({platform.machine()}, {os.cpu_count()} cores)"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    peak = matmul_peak(device, dtype)
    version = f"{torch.__version__}" + (f", CUDA {torch.version.cuda}" if on_gpu else "")
    rows = [Row("env", "GPU", name), Row("env", "torch", version),
            Row("env", f"matmul peak ({str(dtype).split('.')[-1]}, measured)", f"{peak / 1e12:.1f} TFLOP/s",
                note="MFU denominator")]
    return rows, {"gpu": name, "torch": version, "peak_flops": peak, "python": platform.python_version()}


# -------------------------------------------------------------------------------- gpt2


def baseline_run(spec, steps: int, backend: str | None) -> dict:
    """nanogpt_style.run on the spec's shape, its model compiled with `backend` (run() has no
    compile option, so its GPT class is swapped for a compiling factory for this call) and its
    first step timed the way bench's first_step_s is: from the first forward to the second."""
    import nanogpt_style as ng
    import torch

    from workbench.model import padded_vocab
    plain, marks = ng.GPT, []

    class FirstStep(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, idx, targets):
            if len(marks) < 2:
                sync()
                marks.append(time.perf_counter())
            return self.net(idx, targets)

    def build(*args, **kwargs):
        net = plain(*args, **kwargs)
        return FirstStep(torch.compile(net, backend=backend) if backend else net)

    m = spec.model
    ng.GPT = build
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        out = ng.run(m.depth, m.width, m.heads, m.context, padded_vocab(m, spec.tokenizer.size),
                     spec.train.batch_tokens, steps, warmup=3, bias=m.bias)
    finally:
        ng.GPT = plain
    out["first_step_s"] = marks[1] - marks[0]
    out["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return out


def gpt2_section(sizes: Sizes) -> tuple[list[Row], dict]:
    from workbench.accounting import flops_per_token
    from workbench.train.bench import bench
    from workbench.specfile import load_spec
    context = sizes.shrink.get("model.context", 1024)
    spec = load_spec(SPECS / "gpt2-small.yaml", {**sizes.shrink, "train.batch_tokens": sizes.gpt2_rows * context,
                                                 "train.micro_batch_tokens": None})
    log(f"gpt2: workbench bench, {spec.train.batch_tokens} tokens/step, compile={spec.train.compile}")
    ours = bench(spec, steps=sizes.gpt2_steps)
    log(f"gpt2: workbench {rate(ours['tokens_per_s'])} tokens/s, MFU {ours['mfu']:.1%}; now the baseline")
    free_memory()
    base = baseline_run(spec, sizes.gpt2_steps, sizes.baseline_backend)
    fpt = flops_per_token(spec)["6N+attn"]
    base["mfu"] = base["tokens_per_s"] * fpt / ours["peak_flops"]
    gib = lambda b: f"{b / 2**30:.1f} GiB" if b else "-"                       # noqa: E731
    shape = f"{sizes.gpt2_rows} x {context} tokens/step, no accumulation"
    rows = [
        Row("gpt2", "tokens/s", rate(ours["tokens_per_s"]), rate(base["tokens_per_s"]), "ref 500k", note=shape),
        Row("gpt2", "MFU (6N+attn / peak)", f"{ours['mfu']:.1%}", f"{base['mfu']:.1%}", ">= 55%",
            verdict(ours["mfu"], 0.55), "baseline measured 53.5% before"),
        Row("gpt2", "compile s (first step)", f"{ours['first_step_s']:.1f}", f"{base['first_step_s']:.1f}",
            note=f"baseline compiled with backend={sizes.baseline_backend}"),
        Row("gpt2", "peak memory", gib(ours["peak_memory_bytes"]), gib(base["peak_memory_bytes"])),
        Row("gpt2", "ours / baseline tokens/s", f"{ours['tokens_per_s'] / base['tokens_per_s']:.3f}",
            target=">= 1", verdict=verdict(ours["tokens_per_s"] / base["tokens_per_s"], 1.0),
            note=f"params {ours['params']['total']:,} vs {base['params']:,}"),
    ]
    return rows, {"workbench": ours, "baseline": base}


# ------------------------------------------------------------------------------ packed


def worker(spec_path: str, barrier: str, k: int, index: int, steps: int) -> None:
    """One of K packed trainers (a subprocess): the step bench times, compiled and warmed up,
    then `steps` timed steps once all K are ready; prints one JSON line."""
    import torch

    from workbench.specfile import load_spec
    from workbench.data.batches import Batches
    from workbench.train.step import make_engine, peak_memory, train_step
    spec = load_spec(spec_path)
    t, T = spec.train, spec.model.context
    engine = make_engine(spec)
    stream = torch.randint(spec.tokenizer.size, (max(1 << 20, 4 * t.micro_tokens),), dtype=torch.int32)
    batches = Batches(stream, t.micro_tokens // T, T, t.seed + index, engine.device)
    accum = t.batch_tokens // t.micro_tokens
    engine.model.train()

    def run(n: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(n):
            loss = train_step(engine.model, engine.optimizer, batches, accum, engine.accelerator, t.grad_clip)
        loss.item()
        sync()
        return time.perf_counter() - start

    first = run(1)
    run(2)
    folder = Path(barrier)
    (folder / f"ready-{index}").touch()
    deadline = time.time() + 600
    while len(list(folder.glob("ready-*"))) < k and time.time() < deadline:
        time.sleep(0.002)
    start = time.time()
    elapsed = run(steps)
    end = time.time()
    tokens = steps * t.batch_tokens
    print(json.dumps({"index": index, "tokens": tokens, "start": start, "end": end, "tokens_per_s": tokens / elapsed,
                      "first_step_s": first, "peak_memory_bytes": peak_memory(engine.device)[0]}), flush=True)


def packed(spec_file: Path, k: int, steps: int, folder: Path, timeout: float = 600) -> dict:
    """Start K workers together, wait for all (stopping the rest as soon as one fails, so none
    waits at the barrier for a peer that is gone), and combine their timed windows."""
    barrier = folder / f"barrier-{k}"
    barrier.mkdir()
    threads = max(1, (os.cpu_count() or 1) // k)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TORCHINDUCTOR_COMPILE_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    out, err = (lambda i: folder / f"k{k}-{i}.out"), (lambda i: folder / f"k{k}-{i}.log")   # noqa: E731
    procs = []
    for i in range(k):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file), "--barrier", str(barrier),
               "--k", str(k), "--index", str(i), "--steps", str(steps)]
        with open(out(i), "w") as o, open(err(i), "w") as e:
            procs.append(subprocess.Popen(cmd, stdout=o, stderr=e, env=env, cwd=folder))
    deadline, failed = time.time() + timeout, None
    try:
        while any(p.poll() is None for p in procs) and failed is None:
            failed = next((i for i, p in enumerate(procs) if p.poll()), None)
            if time.time() > deadline:
                raise TimeoutError(f"K={k} workers still running after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for i, p in enumerate(procs):
        lines = [ln for ln in out(i).read_text().splitlines() if ln.startswith("{")]
        if p.returncode or not lines:
            i = failed if failed is not None else i
            tail = err(i).read_text(errors="replace").strip().splitlines() or ["(no output)"]
            raise RuntimeError(f"K={k} worker {i} exited {procs[i].returncode}: {tail[-1][:160]}")
        results.append(json.loads(lines[-1]))
    start, end = min(r["start"] for r in results), max(r["end"] for r in results)
    total = sum(r["tokens"] for r in results)
    return {"k": k, "workers": results, "aggregate_tokens_per_s": sum(r["tokens_per_s"] for r in results),
            "wall_tokens_per_s": total / (end - start), "start_skew_s": max(r["start"] for r in results) - start,
            "first_step_s": max(r["first_step_s"] for r in results)}


def packed_section(sizes: Sizes) -> tuple[list[Row], dict]:
    spec = spec16(sizes)
    rows, raw, single = [], {}, None
    with tempfile.TemporaryDirectory(prefix="gpu-check-packed-") as tmp:
        spec_file = write_spec_file(spec, Path(tmp) / "spec.yaml")
        for k in sizes.ks:
            log(f"packed: K={k} processes x {sizes.packed_steps} steps of {spec.train.batch_tokens} tokens")
            timeout = min(PACKED_TIMEOUT_S, max(30.0, stop_at(sizes) - time.perf_counter()))
            r = packed(spec_file, k, sizes.packed_steps, Path(tmp), timeout)
            raw[f"k{k}"] = r
            agg = r["aggregate_tokens_per_s"]
            single = single or agg
            target = 3.2e6 if k == 8 else None
            rows.append(Row("packed", f"K={k} aggregate tokens/s", rate(agg), target=">= 3.2M" if target else "",
                            verdict=verdict(agg, target) if target else "",
                            note=f"wall {rate(r['wall_tokens_per_s'])}, start skew {r['start_skew_s'] * 1e3:.0f} ms, "
                                 f"x{agg / single:.2f} of K={sizes.ks[0]}, compile <= {r['first_step_s']:.0f} s"))
    return rows, raw


# -------------------------------------------------------------------------- positional


def sdpa_kernels(spec) -> list[str]:
    """The SDPA backends that accept this model's attention call (forward and backward, in its
    precision): each tried alone; flash missing means the scheme cannot use the flash kernel."""
    import warnings

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from workbench.model import build_model, lm_loss
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    model = build_model(spec).to(device)
    x = torch.randint(spec.tokenizer.size, (2, spec.model.context + 1), device=device)
    ok = []
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.MATH):
        try:
            with warnings.catch_warnings(), sdpa_kernel(backend), \
                    torch.autocast(device.type, torch.bfloat16, enabled=on_gpu):
                warnings.simplefilter("ignore")
                lm_loss(model(x[:, :-1]), x[:, 1:]).backward()
            ok.append(backend.name.lower().removesuffix("_attention"))
        except Exception:                      # "no available kernel" and kin
            pass
        model.zero_grad(set_to_none=True)
    return ok


def positional_section(sizes: Sizes) -> tuple[list[Row], dict]:
    from workbench.train.bench import bench
    rows, raw = [], {}
    for kind in ("learned", "rope", "alibi"):
        spec = spec16(sizes, **{"model.positional": {"kind": kind}, "train.compile": False})
        kernels = sdpa_kernels(spec)
        r = bench(spec, steps=sizes.pos_steps)
        raw[kind] = {"bench": r, "sdpa_kernels": kernels}
        rows.append(Row("positional", f"{kind} tokens/s (eager)", rate(r["tokens_per_s"]),
                        note="SDPA: " + (", ".join(kernels) or "none")))
        log(f"positional: {kind} {rate(r['tokens_per_s'])} tokens/s; SDPA accepts {kernels}")
        free_memory()
    ratio = raw["alibi"]["bench"]["tokens_per_s"] / raw["learned"]["bench"]["tokens_per_s"]
    rope = raw["rope"]["bench"]["tokens_per_s"] / raw["learned"]["bench"]["tokens_per_s"]
    rows.append(Row("positional", "alibi / learned tokens/s", f"{ratio:.3f}", note=f"rope / learned {rope:.3f}; "
                    f"alibi flash: {'yes' if 'flash' in raw['alibi']['sdpa_kernels'] else 'no'}"))
    return rows, raw


# ------------------------------------------------------------------------------- study


class GpuBusy:
    """nvidia-smi's utilization.gpu (share of time any kernel ran) every 200 ms, read by a thread."""

    def __init__(self):
        self.samples: list[tuple[float, int]] = []
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return self
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.samples.append((time.perf_counter(), int(line)))

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.thread.join(timeout=5)

    def summary(self, start: float, end: float) -> tuple[float, float] | None:
        """(mean utilisation %, share of samples above 0) within [start, end], or None."""
        values = [v for t, v in self.samples if start <= t <= end]
        return (sum(values) / len(values), sum(v > 0 for v in values) / len(values)) if values else None


class PastBudget(Exception):
    """Raised from supervise's progress callback at stop_at: supervise then stops its workers."""


def run_study(base, label: str, trials: int, per_gpu: int, sizes: Sizes) -> tuple[list[Row], dict]:
    """A study of `trials` trials over depth x width from `base`, run by supervise in a temporary
    folder (its runs/ and journal live there) while the GPU's utilisation is sampled; stopped at
    stop_at(sizes), keeping the trials finished by then."""
    import optuna
    import yaml

    from workbench.study.file import load_study
    from workbench.study.storage import load_existing
    from workbench.study.supervisor import summary as study_summary, supervise
    deadline = stop_at(sizes)

    def check_deadline(_summary: dict) -> None:
        if time.perf_counter() > deadline:
            raise PastBudget
    with tempfile.TemporaryDirectory(prefix="gpu-check-study-") as tmp, contextlib.chdir(tmp):
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump({
            "name": f"gpu-check-{label}-{os.getpid()}", "base": base.model_dump(mode="json"),
            "search": sizes.study_space, "objectives": ["val_bpb"], "sampler": {"kind": "random", "seed": 0},
            "pruner": {"kind": "none"}, "trials": trials, "heartbeat": {"interval": 2.0, "grace": 120.0}},
            sort_keys=False))
        study, url = load_study(path), str(Path(tmp) / "study.journal")
        log(f"study {label}: {trials} trials, trials_per_gpu={per_gpu}, {base.train.budget.tokens:,} tokens each")
        with GpuBusy() if cuda() else contextlib.nullcontext() as busy:
            start, stopped = time.perf_counter(), ""
            try:
                summary = supervise(study, url, workers="auto", trials_per_gpu=per_gpu, poll=0.5,
                                    on_progress=check_deadline)
            except PastBudget:
                summary, stopped = study_summary(load_existing(study, url)), "stopped past --budget-s"
                log(f"study {label}: stopped past --budget-s")
            end = time.perf_counter()
        done = [t for t in load_existing(study, url).get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    wall = end - start
    records = [t.user_attrs["record"] for t in done]
    tokens = sum(r["tokens"] for r in records)
    training = sum(r["train_s"] for r in records) / max(1e-9, sum(r["wall_s"] for r in records))
    util = busy.summary(start, end) if busy else None
    failure = summary["failures"][0]["reason"] if summary["failures"] else ""
    note = "; ".join(filter(None, [stopped, failure]))
    name = f"{label}: {trials} trials, {per_gpu}/GPU"
    rows = [Row("study", f"{name}: done, wall", f"{len(done)}/{trials} in {wall:.0f} s",
                verdict="ok" if len(done) == trials else "MISS", note=note[:80]),
            Row("study", f"{name}: training tokens/s", rate(tokens / wall),
                note=f"trials spent {training:.0%} of their wall in training"),
            Row("study", f"{name}: GPU busy", f"{util[0]:.0f}% mean, {util[1]:.0%} >0" if util else "n/a",
                note="nvidia-smi utilization.gpu, 200 ms samples")]
    return rows, {"wall_s": wall, "completed": len(done), "tokens": tokens, "train_share": training,
                  "gpu_util_mean": util and util[0], "gpu_busy_share": util and util[1], "summary": summary}


def study_section(sizes: Sizes) -> tuple[list[Row], dict]:
    from workbench.data.prepared import prepare
    base = spec16(sizes, **{"train.compile": False, "train.budget": {"tokens": int(sizes.study_tokens)},
                            "train.completions": 0, "train.samples": 0})
    log("study: preparing the tokenizer and token caches once, so workers only load them")
    prepare(base)
    rows, raw = [], {}
    for label, trials, per_gpu in sizes.study_trials:
        if time.perf_counter() > stop_at(sizes):
            rows.append(Row("study", f"{label}: {trials} trials, {per_gpu}/GPU", "skipped: --budget-s spent",
                            verdict="skipped"))
            continue
        r, raw[label] = run_study(base, label, trials, per_gpu, sizes)
        rows += r
    return rows, raw


# ---------------------------------------------------------------------------------- dp


def dp_section(sizes: Sizes) -> tuple[list[Row], dict]:
    import torch

    from workbench.data.prepared import prepare

    from workbench.train.loop import train
    if not sizes.smoke and torch.cuda.device_count() < 2:
        return [Row("dp", "2-GPU data parallel", "skipped: 1 GPU", verdict="skipped")], {"skipped": "1 GPU"}
    base = spec16(sizes, **{"train.compile": False, "train.budget": {"tokens": int(sizes.dp_tokens)},
                            "train.batch_tokens": 2 * (sizes.shrink.get("train.batch_tokens") or 16384),
                            "train.completions": 0, "train.samples": 0})
    prepare(base)
    records = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-dp-") as tmp:
        for n in (1, 2):
            spec = base.model_copy(update={"train": base.train.model_copy(update={"devices": n})})
            log(f"dp: training on {n} device(s), {base.train.budget.tokens:,} tokens")
            records[n] = train(spec, Path(tmp) / f"devices-{n}")
            free_memory()
    one, two = records[1], records[2]
    ratio = two.tokens_per_s / one.tokens_per_s
    diff = abs(two.val_loss - one.val_loss)
    where = "CPU processes (gloo)" if sizes.smoke else "GPUs"
    rows = [Row("dp", "tokens/s: 2 devices vs 1", rate(two.tokens_per_s), rate(one.tokens_per_s), note=where),
            Row("dp", "2-device speed-up", f"{ratio:.2f}", target="~2", verdict="" if sizes.smoke else verdict(ratio, 1.6)),
            Row("dp", "|val loss difference|", f"{diff:.4f}", target="< 0.02", verdict="ok" if diff < 0.02 else "MISS",
                note=f"val loss {one.val_loss:.4f} (1) vs {two.val_loss:.4f} (2)")]
    return rows, {"one": one.model_dump(mode="json", include={"tokens_per_s", "val_loss", "wall_s", "device"}),
                  "two": two.model_dump(mode="json", include={"tokens_per_s", "val_loss", "wall_s", "device"})}


# -------------------------------------------------------------------------------- main


RUNNERS: dict[str, Callable[[Sizes], tuple[list[Row], dict]]] = {
    "env": env_section, "gpt2": gpt2_section, "packed": packed_section, "positional": positional_section,
    "study": study_section, "dp": dp_section}


def table(rows: list[Row], title: str) -> str:
    """The rows as one fixed-width text table."""
    head = Row("section", "metric", "ours", "baseline", "target", "verdict", "note")
    cells = [[getattr(r, f) for f in ("section", "metric", "ours", "baseline", "target", "verdict", "note")]
             for r in [head, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join([title, lines[0], "-" * max(map(len, lines)), *lines[1:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="Every section at toy sizes on the CPU.")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"Comma list of {', '.join(SECTIONS)}.")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                    help="Seconds the check should take: scales step counts; later sections are skipped past it.")
    ap.add_argument("--out", type=Path, help="Also write the table and raw results as JSON here.")
    for name in ("worker", "barrier"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("k", "index", "steps"):
        ap.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.barrier, a.k, a.index, a.steps)
        return
    chosen = [s.strip() for s in a.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if not a.smoke and not cuda():
        print("gpu_check: no CUDA device is visible; run it on a GPU machine, or use --smoke for a CPU dry run",
              file=sys.stderr)
        sys.exit(2)
    sizes = Sizes.make(a.smoke, a.budget_s)
    rows: list[Row] = []
    raw: dict[str, Any] = {"sizes": asdict(sizes)}
    for name in chosen:
        if time.perf_counter() - _START > a.budget_s:
            rows.append(Row(name, "section", "skipped: --budget-s spent", verdict="skipped"))
            continue
        log(f"{name}: start")
        began = time.perf_counter()
        try:
            got, raw[name] = RUNNERS[name](sizes)
        except Exception as e:
            import traceback
            got, raw[name] = [Row(name, "section", f"error: {one_line(e)}", verdict="error")], \
                {"error": traceback.format_exc()}
            log(f"{name}: failed:\n{raw[name]['error']}")
        if a.smoke:          # toy sizes on a CPU: the targets are an H200's
            for r in got:
                r.verdict = r.verdict if r.verdict in ("error", "skipped") else ""
        rows += got
        raw[name]["seconds"] = time.perf_counter() - began
        # Rows so far to stderr and --out now: a run killed later (a hang, the machine's limit) keeps them.
        log(f"{name}: done in {raw[name]['seconds']:.0f} s\n" + table(got, f"{name} rows"))
        if a.out:
            with contextlib.suppress(Exception):
                write_out(a.out, f"gpu_check (partial, after {name})", rows, raw)
        with contextlib.suppress(Exception):
            free_memory()
    total = time.perf_counter() - _START
    seconds = ", ".join(f"{n} {raw[n]['seconds']:.0f}" for n in chosen if n in raw)
    title = f"gpu_check{' --smoke' if a.smoke else ''}: {total:.0f} s ({seconds})"
    text = table(rows, title)
    print(text, flush=True)
    if a.out:
        write_out(a.out, title, rows, raw)
        log(f"wrote {a.out}")


def write_out(path: Path, title: str, rows: list[Row], raw: dict) -> None:
    path.write_text(json.dumps({"title": title, "rows": [asdict(r) for r in rows], "raw": raw,
                                "elapsed_s": time.perf_counter() - _START, "argv": sys.argv[1:]},
                               indent=1, default=str))


if __name__ == "__main__":
    main()
