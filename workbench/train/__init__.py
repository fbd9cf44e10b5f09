"""Training: one optimizer step and its engine (step.py), a whole run with its phases and record
(loop.py), data-parallel jobs (parallel.py, rank.py), and throughput measurement (bench.py)."""
