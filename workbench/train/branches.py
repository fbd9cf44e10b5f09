"""Branched warmup-stable-decay runs: several token counts from one run.

A schedule `{kind: wsd, branches: [0.2, 0.4, ..., 1.0]}` trains one run at a constant learning
rate after warmup. Branch j ends at `end` steps and decays over its last `decay` fraction, so it
leaves the constant-rate run at `fork` steps. There the run saves its state, trains a copy
through the decay, scores and records it, then goes on from the saved state. Up to its fork a
branch *is* the constant-rate run (same weights, data order and learning rates), so a branch is
exactly the separate WSD run of its token count with the same warmup tokens, for the price of its
decay alone. The last branch (1.0) is the run's own end.

Crash safety. The saved state at each fork is a checkpoint in safetensors (weights, AdamW
moments, the random generators) with the loop's own counters beside it in JSON, written to a
temporary folder and renamed into place, then named by a pointer file replaced atomically; each
finished branch's record is written atomically next to it. A run started again with the same
spec and folder resumes from the latest fork: the branches that finished are not trained again.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from workbench.plumbing.files import write_atomic
from workbench.record import RunRecord
from workbench.spec import ScheduleSpec

LATEST, LOCK = "latest.json", ".lock"
MODEL, OPTIMIZER = "model.safetensors", "optimizer.safetensors"


@dataclass(frozen=True)
class Branch:
    """One branch of a run: it ends after `end` steps and decays from `fork` (the constant-rate
    steps it shares with the run), with `warmup` as a fraction of its own steps (the run's
    warmup steps)."""

    index: int
    fraction: float
    end: int
    fork: int
    warmup: float


def plan(schedule: ScheduleSpec, total_steps: int) -> list[Branch]:
    """The branches of a run of `total_steps` steps, in order (the last is the run itself)."""
    out, total_steps = [], max(1, total_steps)
    for i, fraction in enumerate(schedule.branches or []):
        end = total_steps if fraction == 1.0 else max(1, round(fraction * total_steps))
        # The steps whose learning rate is still the constant one, by the same test the schedule
        # makes (progress after the step <= 1 - decay): the fork is their count.
        start = 1 - schedule.decay
        fork = min(end, math.floor(start * end))
        while fork + 1 <= end and (fork + 1) / end <= start:
            fork += 1
        while fork > 0 and fork / end > start:
            fork -= 1
        out.append(Branch(i, fraction, end, fork, schedule.warmup * total_steps / end))
    return out


class Checkpoints:
    """The folder of a branched run's saved forks and finished branch records."""

    def __init__(self, folder: Path, digest: str):
        self.folder, self.digest = Path(folder), digest
        self._lock = None

    def acquire(self) -> None:
        """Hold the folder for this process until close() (or until it dies: the lock goes with
        it), so two processes can never train one run's forks at once; a RuntimeError if another
        holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.folder / LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RuntimeError(f"another process is training this branched run (its folder {self.folder} is "
                               "in use); wait for it, or stop it") from None

    def latest(self) -> dict | None:
        """The latest saved fork ({fork: steps, loop: the loop's counters, dir}) of this spec,
        or None: nothing saved, or saved by another spec, or left without its pointer by a run
        stopped between the two writes; then whatever the folder holds is cleared, so a fresh
        run never meets another's fork."""
        try:
            saved = json.loads((self.folder / LATEST).read_text())
        except (OSError, ValueError):
            saved = None
        if not saved or saved.get("digest") != self.digest or not (self.folder / saved.get("dir", "-")).is_dir():
            self.clear()
            return None
        return saved

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             generators: dict[str, torch.Tensor], loop: dict) -> dict:
        """Save the run's state after `step` steps, atomically, and drop older forks; returns
        what was saved (for load)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"fork-{step:08d}"
        final = self.folder / name
        if not final.is_dir():
            tmp = self.folder / f".{name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            save_model(model, str(tmp / MODEL))
            tensors, groups = _optimizer_tensors(optimizer)
            tensors.update({f"rng.{k}": v for k, v in generators.items()})
            save_file(tensors, str(tmp / OPTIMIZER), metadata={"param_groups": json.dumps(groups)})
            os.replace(tmp, final)
        saved = {"digest": self.digest, "fork": step, "dir": name, "loop": loop}
        write_atomic(self.folder / LATEST, json.dumps(saved))
        for old in self.folder.glob("fork-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return saved

    def load(self, saved: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """Put the saved fork's weights and optimizer state back; returns its generator states."""
        where = self.folder / saved["dir"]
        load_model(model, str(where / MODEL))
        tensors = load_file(str(where / OPTIMIZER))
        with safe_open(str(where / OPTIMIZER), "pt") as f:
            groups = json.loads(f.metadata()["param_groups"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            kind, _, rest = key.partition(".")
            if kind == "state":
                index, _, name = rest.partition(".")
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        return {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}

    def finished(self) -> dict[int, RunRecord]:
        """The records of the branches that have finished, by index, in order."""
        out = {}
        for path in self.folder.glob("branch-*.json"):
            try:
                out[int(path.stem.removeprefix("branch-"))] = RunRecord.model_validate_json(path.read_text())
            except (OSError, ValueError):
                continue
        return dict(sorted(out.items()))

    def finish(self, index: int, record: RunRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / f"branch-{index}.json", record.model_dump_json(indent=2))

    def close(self, done: bool = True) -> None:
        """The run is done (its forks are no longer needed; the branch records stay), or with
        done=False stopped by an error (its forks stay for a resume); either way the folder is
        let go."""
        if done:
            for old in list(self.folder.glob("fork-*")) + list(self.folder.glob(".fork-*")):
                shutil.rmtree(old, ignore_errors=True)
            (self.folder / LATEST).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def clear(self) -> None:
        if not self.folder.is_dir():
            return
        for path in list(self.folder.glob("fork-*")) + list(self.folder.glob(".fork-*")) \
                + list(self.folder.glob("branch-*.json")):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        (self.folder / LATEST).unlink(missing_ok=True)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """AdamW's state as flat named tensors, and its parameter groups (plain values) for JSON."""
    sd = optimizer.state_dict()
    tensors = {f"state.{i}.{name}": (v if isinstance(v, torch.Tensor) else torch.tensor(v)).detach().contiguous().cpu()
               for i, per in sd["state"].items() for name, v in per.items()}
    return tensors, sd["param_groups"]


def generator_states(batches_gen: torch.Generator, cuda: bool) -> dict[str, torch.Tensor]:
    """The random generators a resumed run must continue: the batch order's, torch's global one
    (dropout) and, on a GPU, CUDA's."""
    out = {"batches": batches_gen.get_state(), "torch": torch.get_rng_state()}
    if cuda:
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def restore_generators(states: dict[str, torch.Tensor], batches_gen: torch.Generator) -> None:
    batches_gen.set_state(states["batches"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
