# lensnb — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= default
NB ?=
ARGS ?=
DATA ?=
DATA_REAL ?=
JOBS ?=
DATA_ARG := $(if $(DATA),--data $(DATA),) $(if $(DATA_REAL),--data-real $(DATA_REAL),)

.DEFAULT_GOAL := help
.PHONY: help book nb test test-fast bench gpu-check lab clean clean-book clean-data strip

help:  ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|default|gpu (default: default), DATA=<Parquet file or directory>, DATA_REAL=<real lenses + non-lenses: stamp_npz, label>, NB=<notebook>, JOBS=<chapters at a time, default one per core>, ARGS='-p key value -y yaml -f file'"

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3 >= 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

book: $(VENV)/.installed  ## Execute stale chapters (PROFILE, DATA) with papermill and build the HTML book
	$(PY) -m lensnb.build book --profile $(PROFILE) $(DATA_ARG) $(if $(JOBS),--jobs $(JOBS),)

nb: $(VENV)/.installed  ## Re-execute one chapter with new parameters: make nb NB=01_geometry ARGS="-p n_systems 2000"
	@test -n "$(NB)" || { echo "usage: make nb NB=<notebook name> ARGS=\"-p key value ...\""; exit 2; }
	$(PY) -m lensnb.build nb $(NB) --profile $(PROFILE) $(DATA_ARG) $(ARGS)

test: $(VENV)/.installed  ## Run the test suite (unit tests, then every notebook under the smoke profile and a book build)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

test-fast: $(VENV)/.installed  ## Unit tests only (skip the notebook/book tests)
	$(PY) -m pytest -q -p no:cacheprovider -m "not book"

bench: $(VENV)/.installed  ## Simulator throughput, lensnb vs lenstronomy (pairs/s); GPU: make bench ARGS="--device cuda --hosts 1024 --per-host 20 --ref-pairs 0"
	$(PY) -m lensnb.bench simulate $(ARGS)

gpu-check: $(VENV)/.installed  ## The GPU host's one command: simulator + training benches and make book PROFILE=gpu, one JSON (ARGS="--budget-s 540 --out DIR")
	$(PY) -m lensnb.bench gpu $(ARGS)

lab: $(VENV)/.installed  ## Open the notebooks in JupyterLab (on one thread per kernel, as the book computes)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 LENSNB_TORCH_THREADS=1 $(VENV)/bin/jupyter lab notebooks/

strip:  ## Strip outputs from the source notebooks (they are committed without outputs)
	$(PY) -m lensnb.nbtools strip notebooks/*.ipynb

clean-book:  ## Remove executed chapters and the rendered book
	rm -rf book/_build book/chapters build

clean-data:  ## Remove simulated data sets, cached models and gate results (data/processed; regenerated on demand)
	rm -rf data/processed

clean: clean-book  ## Also remove the virtual environment
	rm -rf $(VENV)
