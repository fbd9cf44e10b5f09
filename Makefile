# Set-up installs a pinned torch first (a CPU build where one lies on local disk; PyPI's default
# build elsewhere); override with `make setup TORCH=...`, e.g. a CUDA wheel index build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: setup quickstart test bench clean

setup:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	command -v chromium >/dev/null || test "$$(id -u)" != 0 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  echo "chromium not installed: the browser test of reports will be skipped"

quickstart:
	$(VENV)/bin/workbench study run studies/quickstart.yaml --workers 2
	$(VENV)/bin/workbench report studies/quickstart.yaml

test:
	$(PY) -m pytest -q

bench:
	$(VENV)/bin/workbench bench specs/nanogpt.yaml

clean:
	rm -rf runs .pytest_cache
