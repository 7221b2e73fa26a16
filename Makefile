# Two commands do all the set-up on a fresh machine:
#   make course   – install, then run every notebook on the cpu profile (papermill)
#   make test     – install, then run the whole test suite (tensorflow and jax backends, notebooks)
# and one opens the course:
#   make lab      – install, then JupyterLab on notebooks/ with this project's .venv as the kernel
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
EXTRAS ?= cpu,test,lab
# pytest-xdist workers for the TensorFlow suite and the nbval check (one test file per worker at a
# time). Two halve the wall time on a 2-core CI machine: much of a test is single-threaded tracing.
TEST_WORKERS ?= 2

.PHONY: install test test-core test-jax test-notebooks course lab bench figures clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

## The whole suite: everything on TensorFlow; on JAX again the keras.ops core and one case of each kind
## of backend-sensitive runner test (crash safety, resume, batch order: marker "backends"); then the
## notebooks. (The JAX run stays in one process: XLA already keeps both cores busy, and two workers
## were slower.)
test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -p no:cacheprovider -m "core or backends" tests
	$(MAKE) test-notebooks

test-jax: $(VENV)/.installed
	KERAS_BACKEND=jax $(PY) -m pytest -q -m "core or backends" tests

test-notebooks: $(VENV)/.installed
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(PY) -m tlutils.cli course --profile ci --no-estimate --check --check-workers $(TEST_WORKERS); \
	else echo "no notebooks yet"; fi

course: $(VENV)/.installed
	$(PY) -m tlutils.cli course --profile $(PROFILE)

## JupyterLab started in .venv: its "Python 3 (ipykernel)" kernel is .venv/bin/python, so the notebooks
## import this project's tlutils. The file browser opens on notebooks/ (figures/ and runs/ are one up).
## Stop it with Ctrl-C. LAB_ARGS adds options, e.g. make lab LAB_ARGS="--no-browser --port 8890".
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab --notebook-dir=. --FileContentsManager.preferred_dir=notebooks $(LAB_ARGS)

bench: $(VENV)/.installed
	$(PY) -m tlutils.cli bench

clean:
	rm -rf runs .pytest_cache
