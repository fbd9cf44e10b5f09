"""Learning-rate transfer across width: train the same small model at two widths over a grid of
learning rates (each twice the last) under every parametrisation, and print the held-out loss
of each run and how many grid steps the best learning rate moves between the widths. Under mup
it should stay put or move by one step; under standard it usually moves to smaller rates.

    python benchmarks/mup_transfer.py [--widths 64,512] [--lrs 0.004,0.008,0.016,0.032] [--steps 200]
        [--parametrizations standard,mup]

On a CPU that other jobs share, OMP_NUM_THREADS=1 (and one process per core, e.g. one per
parametrisation) avoids the threads of several processes waiting on each other.
"""

from __future__ import annotations

import argparse
import math
import time

from workbench.model.parametrization import PARAMETRIZATIONS
from workbench.spec import Spec
from workbench.train.loop import train


def spec(parametrization: str, width: int, lr: float, a: argparse.Namespace) -> Spec:
    """A small model on the standard library's source; mup's base width is the first width."""
    return Spec.model_validate({
        "name": f"transfer-{parametrization}-{width}-{lr:g}",
        "model": {"depth": a.depth, "width": width, "heads": a.heads, "context": a.context,
                  "parametrization": parametrization, "base_width": a.widths[0]},
        "data": {"source": "python-stdlib", "max_bytes": 2_000_000},
        "train": {"budget": {"steps": a.steps}, "batch_tokens": a.batch_tokens, "lr": lr, "seed": a.seed,
                  "eval_bytes": a.eval_bytes, "eval_every": a.steps, "completions": 0, "samples": 0}})


def best(losses: dict[float, float]) -> float:
    """The learning rate of the lowest loss (a diverged run counts as worst)."""
    return min(losses, key=lambda lr: losses[lr] if math.isfinite(losses[lr]) else math.inf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="64,512", help="comma-separated; the first is mup's base width")
    ap.add_argument("--lrs", default="0.004,0.008,0.016,0.032", help="comma-separated learning rates")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=256)
    ap.add_argument("--eval-bytes", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parametrizations", default=",".join(PARAMETRIZATIONS), help="comma-separated")
    a = ap.parse_args()
    a.widths = [int(w) for w in a.widths.split(",")]
    lrs = [float(x) for x in a.lrs.split(",")]
    start = time.perf_counter()
    print(f"held-out loss (nats/token) after {a.steps} steps of {a.batch_tokens} tokens, depth {a.depth}, "
          f"{a.heads} heads, context {a.context}; mup base_width {a.widths[0]}")
    print(f"{'parametrization':15s} {'width':>6s} " + " ".join(f"{'lr ' + format(lr, 'g'):>10s}" for lr in lrs)
          + "   best lr")
    moves = {}
    for name in a.parametrizations.split(","):
        bests = []
        for width in a.widths:
            losses = {lr: train(spec(name, width, lr, a)).val_loss for lr in lrs}
            bests.append(best(losses))
            print(f"{name:15s} {width:6d} " + " ".join(f"{losses[lr]:10.4f}" for lr in lrs)
                  + f"   {bests[-1]:g}", flush=True)
        moves[name] = round(math.log2(bests[-1] / bests[0]))
    for name, move in moves.items():
        print(f"{name}: best lr moves {move:+d} grid steps (x2 each) from width {a.widths[0]} to {a.widths[-1]}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
