# Two commands do all the set-up on a fresh machine:
#   make course   – install, then run every notebook on the cpu profile (papermill)
#   make test     – install, then run the whole test suite (tensorflow and jax backends, notebooks)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
EXTRAS ?= cpu,test
# pytest-xdist workers for the TensorFlow suite and the nbval check (one test file per worker at a
# time). Two halve the wall time on a 2-core CI machine: much of a test is single-threaded tracing.
TEST_WORKERS ?= 2

.PHONY: install test test-core test-jax test-notebooks course bench figures clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

## The whole suite: everything on TensorFlow, the keras.ops core again on JAX, then the notebooks.
## (The JAX run stays in one process: XLA already keeps both cores busy, and two workers were slower.)
test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -p no:cacheprovider -m core tests
	$(MAKE) test-notebooks

test-jax: $(VENV)/.installed
	KERAS_BACKEND=jax $(PY) -m pytest -q -m core tests

test-notebooks: $(VENV)/.installed
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(PY) -m tlutils.cli course --profile ci --check --check-workers $(TEST_WORKERS); \
	else echo "no notebooks yet"; fi

course: $(VENV)/.installed
	$(PY) -m tlutils.cli course --profile $(PROFILE)

bench: $(VENV)/.installed
	$(PY) -m tlutils.cli bench

clean:
	rm -rf runs .pytest_cache
