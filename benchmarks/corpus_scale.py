"""A corpus larger than memory: generate a text corpus of many files, tokenize it as `workbench
train` does (a file index, a tokenizer trained on a sample, the token stream written to disk a
batch at a time and memory-mapped), train a few steps from the memory-mapped stream, and compare.

    .venv/bin/python benchmarks/corpus_scale.py [--mb 1024] [--file-kb 256] [--vocab 8192]

Each measured stage runs in a fresh process, so its peak resident memory is its own:
- cold: list the corpus, train the tokenizer, encode the training stream, then train from it;
- reuse: everything `train` does before its first step, with every cache in place;
- direct: the `tokenizers` library alone on the same training text (read each file, decode it,
  `encode_batch_fast` in batches, ids to a uint16 array), alternated with ours (--rounds).

Targets: peak resident memory under 2 GB; our tokenization at least 0.8x the library's MB/s;
reusing the cached stream under 1 s. The corpus and every cache live in a temporary folder that
is deleted afterwards."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def generate(root: Path, mb: float, file_kb: int, seed: int = 0) -> tuple[int, int]:
    """Files of Zipf-distributed made-up words with punctuation and line breaks, in 64 folders:
    text with a natural word-frequency law that no tokenizer has seen. Returns (files, bytes)."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", dtype=np.uint8)
    words = [bytes(rng.choice(letters, size=rng.integers(1, 11), p=_letter_freq())) for _ in range(30_000)]
    combos = np.array([w + sep for w in words for sep in (b" ", b", ", b".\n")], dtype=object)
    p_word = 1 / (np.arange(len(words)) + 2.7) ** 1.1
    p_word /= p_word.sum()
    total, target, n = 0, int(mb * 2**20), 0
    while total < target:
        size = min(file_kb * 1024, target - total)
        count = max(1, size // 7)
        idx = rng.choice(len(words), size=count, p=p_word) * 3 + rng.choice(3, size=count, p=[0.86, 0.08, 0.06])
        raw = b"".join(combos[idx].tolist())[:size]
        folder = root / f"part{n % 64:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc{n:06d}.txt").write_bytes(raw)
        total += len(raw)
        n += 1
    return n, total


def _letter_freq() -> np.ndarray:
    f = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
                  2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1])
    return f / f.sum()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux


# --------------------------------------------------------------------------------- stages


def stage_cold(spec_path: str) -> dict:
    from workbench.data.corpus import load_corpus
    from workbench.data.streams import cached_stream, stream_key
    from workbench.data.tokenizer import get_tokenizer
    from workbench.specfile import load_spec
    from workbench.train.loop import train
    spec = load_spec(spec_path)
    t = time.perf_counter()
    corpus = load_corpus(spec.data)
    scan_s = time.perf_counter() - t
    t = time.perf_counter()
    tok = get_tokenizer(spec.tokenizer, corpus)
    tokenizer_s = time.perf_counter() - t
    rss_tokenizer = peak_rss_mb()
    t = time.perf_counter()
    stream = cached_stream(tok, corpus.train, stream_key(corpus, "train"))
    tokenize_s = time.perf_counter() - t
    rss_stream = peak_rss_mb()
    record = train(spec)                       # every cache hit: the steps read the memmap
    return {"rss_tokenizer_mb": rss_tokenizer, "rss_stream_mb": rss_stream,"scan_s": scan_s, "tokenizer_s": tokenizer_s, "tokenize_s": tokenize_s,
            "train_bytes": corpus.train.bytes, "tokens": len(stream), "dtype": str(stream.dtype),
            "stream_mb": stream.nbytes / 2**20, "memmap": isinstance(stream, np.memmap),
            "status": record.status, "steps": record.steps, "peak_rss_mb": peak_rss_mb()}


def stage_reuse(spec_path: str) -> dict:
    from workbench.data.prepared import prepare
    from workbench.specfile import load_spec
    spec = load_spec(spec_path)
    t = time.perf_counter()
    prep = prepare(spec)
    reuse_s = time.perf_counter() - t
    return {"reuse_s": reuse_s, "memmap": isinstance(prep.pretrain.train, np.memmap),
            "peak_rss_mb": peak_rss_mb()}


def stage_direct(spec_path: str) -> dict:
    from tokenizers import Tokenizer

    from workbench.data.corpus import load_corpus
    from workbench.data.tokenizer import get_tokenizer
    from workbench.specfile import load_spec
    spec = load_spec(spec_path)
    corpus = load_corpus(spec.data)
    files = [p.doc.path for p in corpus.train.pieces]     # whole files: the split is by document
    hf = Tokenizer.from_str(get_tokenizer(spec.tokenizer, corpus)._hf.to_str())
    t, n_bytes, n_tokens, batch, size = time.perf_counter(), 0, 0, [], 0

    def flush():
        nonlocal n_tokens
        for e in hf.encode_batch_fast(batch, add_special_tokens=False):
            n_tokens += len(np.array(e.ids, dtype=np.uint16))

    for path in files:
        with open(path, "rb") as f:
            raw = f.read()
        batch.append(raw.decode("utf-8", errors="replace"))
        n_bytes += len(raw)
        size += len(raw)
        if len(batch) >= 256 or size >= 8 << 20:
            flush()
            batch, size = [], 0
    if batch:
        flush()
    return {"direct_s": time.perf_counter() - t, "bytes": n_bytes, "tokens": n_tokens,
            "peak_rss_mb": peak_rss_mb()}


STAGES = {"cold": stage_cold, "reuse": stage_reuse, "direct": stage_direct}


def run_stage(name: str, spec_path: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--stage", name, "--spec", str(spec_path)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: stage {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=1024, help="corpus size in MiB (default 1024)")
    parser.add_argument("--file-kb", type=int, default=256, help="size of each generated file in KiB")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size")
    parser.add_argument("--steps", type=int, default=20, help="training steps from the stream")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of ours and direct")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.spec)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="corpus-scale-"))
    try:
        t = time.perf_counter()
        n_files, n_bytes = generate(tmp / "corpus", args.mb, args.file_kb)
        gen_s = time.perf_counter() - t
        spec = {"name": "corpus-scale",
                "model": {"depth": 2, "width": 64, "heads": 2, "context": 128},
                "tokenizer": {"kind": "bpe", "vocab_size": args.vocab},
                "data": {"source": "files", "paths": ["corpus"], "split": {"by": "tail"}},
                "train": {"budget": {"steps": args.steps}, "batch_tokens": 4096, "eval_bytes": 65536,
                          "completions": 0, "samples": 0}}
        spec_path = tmp / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        env = {**os.environ, "WORKBENCH_CACHE": str(tmp / "cache")}
        load = [os.getloadavg()[0]]
        ours, direct = [], []
        for i in range(args.rounds):         # alternated, so a change in the machine's load hits both
            if i:
                shutil.rmtree(tmp / "cache" / "tokens")     # encode again; tokenizer and index stay
            ours.append(run_stage("cold", spec_path, env))  # the first also trains the tokenizer
            direct.append(run_stage("direct", spec_path, env))
        reuse = run_stage("reuse", spec_path, env)
        load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cold = ours[0]
    mb = cold["train_bytes"] / 2**20
    ours_rate = [mb / r["tokenize_s"] for r in ours]
    direct_rate = [r["bytes"] / 2**20 / r["direct_s"] for r in direct]
    ratio = sum(ours_rate) / sum(direct_rate)
    peak = max(max(r["peak_rss_mb"] for r in ours), reuse["peak_rss_mb"])
    rates = lambda xs: ", ".join(f"{x:.2f}" for x in xs)      # noqa: E731
    rows = [
        ("machine", f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start, {load[1]:.1f} at the end"),
        ("corpus", f"{n_bytes / 2**20:,.0f} MiB in {n_files:,} files, generated in {gen_s:.0f} s; "
                   f"{mb:,.0f} MiB is the training split"),
        ("first listing", f"{cold['scan_s']:.1f} s (hash and UTF-8 check of every file, kept in an index)"),
        ("tokenizer", f"bpe {args.vocab}: {cold['tokenizer_s']:.1f} s on a sample of at most 64 MiB"),
        ("tokenize: ours", f"{rates(ours_rate)} MiB/s (file index, stream written a batch at a time)"),
        ("tokenize: direct", f"{rates(direct_rate)} MiB/s (tokenizers encode_batch_fast, alternated with ours)"),
        ("ratio ours/direct", f"{ratio:.2f}x (target >= 0.8)"),
        ("stream", f"{cold['tokens']:,} tokens, {cold['dtype']}, {cold['stream_mb']:,.0f} MiB on disk, "
                   f"memory-mapped: {cold['memmap'] and reuse['memmap']}"),
        ("train from it", f"{cold['steps']} steps, {cold['status']}"),
        ("reuse cached stream", f"{reuse['reuse_s']:.2f} s (target < 1 s)"),
        ("peak RSS: ours", f"{peak:,.0f} MiB (target < 2048; tokenizer, stream and training steps)"),
        ("peak RSS by stage", f"{cold['rss_tokenizer_mb']:,.0f} MiB after the tokenizer, "
                              f"{cold['rss_stream_mb']:,.0f} after the stream, {cold['peak_rss_mb']:,.0f} after training"),
        ("peak RSS: direct", f"{max(r['peak_rss_mb'] for r in direct):,.0f} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
