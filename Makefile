# Two commands do all the set-up on a fresh machine:
#   make course   – install, then run every notebook on the cpu profile (papermill)
#   make test     – install, then run the whole test suite (tensorflow and jax backends, notebooks on both)
# and one opens the course:
#   make lab      – install, then JupyterLab on notebooks/ with this project's .venv as the kernel
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
# Notebook 05's comparison: empty for the profile's ("course" for ci and cpu, "full" for gpu and
# thesis); SCOPE=full adds two_stage and every country at every size (make course SCOPE=full).
SCOPE ?=
EXTRAS ?= cpu,test,lab
# pytest-xdist workers for the TensorFlow suite and the nbval check (one test file per worker at a
# time). Two halve the wall time on a 2-core CI machine: much of a test is single-threaded tracing.
TEST_WORKERS ?= 2

.PHONY: install test test-core test-jax test-torch test-notebooks course lab bench figures clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

## The whole suite: everything on TensorFlow, then test-jax beside the notebooks on TensorFlow. Those
## two each keep about one core busy (run side by side on a 2-core EPYC: the JAX tests 247 CPU-s in
## 244 s, the ci course 236 CPU-s in 255 s; tiny models, single-threaded tracing and compiling), so
## they run side by side, their output live and interleaved, test-jax's lines marked "[jax]"
## (timings in docs/performance.md).
test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests
	$(MAKE) -j2 test-jax test-notebooks

## On JAX: the keras.ops core and one case of each kind of backend-sensitive runner test (marker
## "backends": crash safety, resume, batch order, freezing, weight transfer, finetune, two_stage, a real-
## data target: crops for training, tiled whole-frame mAP), then
## the ci course's notebook(s) JAX_NOTEBOOKS (04: train, read back, score and draw the source detector)
## in a fresh TLUTILS_ROOT folder, so that they train on JAX rather than read back runs/ci. Both share
## one XLA compilation cache: the notebook's source run reuses the tests' compiled steps (04: 69 s -> 23 s).
## (The tests stay in one process: two workers were slower.)
JAX_NOTEBOOKS ?= 04
test-jax: $(VENV)/.installed
	set -o pipefail; ( work=$$(mktemp -d -t tlutils-jax.XXXXXX) && trap 'rm -rf "$$work"' EXIT && \
	export KERAS_BACKEND=jax JAX_COMPILATION_CACHE_DIR="$$work/xla" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.2 && \
	$(PY) -m pytest -q -p no:cacheprovider -m "core or backends" tests && \
	TLUTILS_ROOT="$$work/root" $(PY) -m tlutils.cli course --profile ci --no-estimate --only $(JAX_NOTEBOOKS) \
	) 2>&1 | sed -u 's/^/[jax] /'

## The same tests on PyTorch (not part of make test: torch is no dependency; install a CPU build of
## torch into .venv first). The whole ci course runs on it too, e.g. in a fresh folder (else the runs
## runs/ci holds are read back): KERAS_BACKEND=torch TLUTILS_ROOT=/tmp/torch-ci make course PROFILE=ci
test-torch: $(VENV)/.installed
	@$(PY) -c "import torch" 2>/dev/null || { echo "test-torch: torch is not installed in $(VENV): $(PY) -m pip install torch"; exit 1; }
	KERAS_BACKEND=torch $(PY) -m pytest -q -p no:cacheprovider -m "core or backends" tests

test-notebooks: $(VENV)/.installed
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(PY) -m tlutils.cli course --profile ci --no-estimate --check --check-workers $(TEST_WORKERS); \
	else echo "no notebooks yet"; fi

course: $(VENV)/.installed
	$(PY) -m tlutils.cli course --profile $(PROFILE) $(if $(SCOPE),--scope $(SCOPE))

## JupyterLab started in .venv: its "Python 3 (ipykernel)" kernel is .venv/bin/python, so the notebooks
## import this project's tlutils. The file browser opens on notebooks/ (figures/ and runs/ are one up).
## Stop it with Ctrl-C. LAB_ARGS adds options, e.g. make lab LAB_ARGS="--no-browser --port 8890".
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab --notebook-dir=. --FileContentsManager.preferred_dir=notebooks $(LAB_ARGS)

bench: $(VENV)/.installed
	$(PY) -m tlutils.cli bench

clean:
	rm -rf runs .pytest_cache
