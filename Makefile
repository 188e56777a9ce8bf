# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= auto

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip setuptools wheel
	$(PY) -m pip install -qq -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m hepad.demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/io.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/physics.py
	$(PY) benchmarks/detectors.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/hls_precision.py
	$(PY) benchmarks/scale.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
