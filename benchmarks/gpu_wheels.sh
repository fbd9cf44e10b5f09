#!/usr/bin/env bash
# Wheels for running benchmarks/gpu_check.py on a GPU machine whose Python has torch, accelerate,
# tokenizers, scipy, numpy, pyyaml, rich, typer, safetensors, tqdm and packaging, but not optuna,
# pydantic or polars. Downloads the versions installed in .venv (the ones the suite passed with)
# for that machine's Python into .whl/ (git-ignored); the report's plotly is left out (the check
# writes no report), which keeps the wheels under 64 MiB. On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py --out check.json
# Usage: bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
VERSION=${1:-3.12}
NAMES="optuna alembic sqlalchemy colorlog mako cmaes pydantic pydantic-core annotated-types typing-inspection polars polars-runtime-32"
PINNED=$($PY -c "import importlib.metadata as m, sys; print(' '.join(f'{n}=={m.version(n)}' for n in sys.argv[1:]))" $NAMES)
rm -rf .whl && mkdir .whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl $PINNED
du -sh .whl
