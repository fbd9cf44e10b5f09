# Two commands do everything on a fresh machine: `make quickstart` (the main job) and `make test`.
# Each first sets up what is missing (a virtual environment with a pinned torch, the package, and
# for the tests a browser) and skips that in well under a second once it is there: the stamps
# below are rebuilt only when pyproject.toml changes. Override torch with `make ... TORCH=...`,
# e.g. a CUDA build from its wheel index.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
BROWSER := $(VENV)/.browser

.PHONY: setup quickstart test bench clean

quickstart: $(INSTALLED)
	$(VENV)/bin/workbench study run studies/quickstart.yaml --workers 2
	$(VENV)/bin/workbench report studies/quickstart.yaml

test: $(INSTALLED) $(BROWSER)
	$(PY) -m pytest -q

setup: $(INSTALLED) $(BROWSER)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The report's browser test drives Debian's chromium; without it (and without root to install
# it) that one test is skipped outside CI.
$(BROWSER):
	command -v chromium >/dev/null || test "$$(id -u)" != 0 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  echo "chromium not installed: the browser test of reports will be skipped"
	touch $@

bench: $(INSTALLED)
	$(VENV)/bin/workbench bench specs/nanogpt.yaml

clean:
	rm -rf runs .pytest_cache
