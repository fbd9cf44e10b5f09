"""Training throughput of a workbench spec against the plain nanoGPT-style baseline of the same
shape, alternating the two in one process (A B A B ...) and reporting the ratio of each pair.

    python benchmarks/vs_nanogpt.py specs/nanogpt.yaml --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from nanogpt_style import run as run_baseline  # noqa: E402

from workbench.train.bench import bench  # noqa: E402
from workbench.model import padded_vocab  # noqa: E402
from workbench.specfile import load_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    spec = load_spec(a.spec)
    m = spec.model
    assert (m.positional.kind, m.mlp.kind, m.norm, m.norm_placement, m.n_kv_heads, m.tie_embeddings) == \
        ("learned", "gelu", "layernorm", "pre", m.heads, True), "the baseline is GPT-2 shaped only"
    ratios, ours, theirs = [], [], []
    for r in range(a.rounds):
        w = bench(spec, steps=a.steps)
        b = run_baseline(m.depth, m.width, m.heads, m.context, padded_vocab(m, spec.tokenizer.size),
                         spec.train.batch_tokens, a.steps, bias=m.bias, seed=r)
        ours.append(w["tokens_per_s"])
        theirs.append(b["tokens_per_s"])
        ratios.append(w["tokens_per_s"] / b["tokens_per_s"])
        print(f"round {r}: workbench {w['tokens_per_s']:,.0f} tok/s, baseline {b['tokens_per_s']:,.0f} tok/s, "
              f"ratio {ratios[-1]:.3f}, outside fwd/bwd/opt {w['outside_model_fraction']:.1%}", flush=True)
    print(f"median: workbench {statistics.median(ours):,.0f} tok/s, baseline {statistics.median(theirs):,.0f} "
          f"tok/s, ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
