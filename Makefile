# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# Both create .venv/ at the repository root on first use: torch==2.13.0 (the CPU build) goes in
# first so that no other requirement can pull a multi-GB CUDA build, then the project itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install browser test test-all demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

# Debian's Chromium and its driver, for the board page's browser test (tests/evaluation/test_board_html.py),
# installed as root when missing.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get install -y -q chromium chromium-driver || (apt-get update -q && apt-get install -y -q chromium chromium-driver))

# One torch thread per test and one test per core (pytest-xdist: two on CI's 2-core machine, at most four);
# the modules that start a Ray cluster share one worker (their xdist_group), the rest are balanced.
test: $(STAMP) browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -q -n auto --maxprocesses 4 --dist loadgroup

test-all: $(STAMP) browser
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/pdebench demo

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) benchmarks/bench_spectral.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
