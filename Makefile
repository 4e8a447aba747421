# The README's two commands are `make demo` and `make test`; everything else here supports them.
# `make help` (or `make`) lists the targets with the `##` comment above each.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=
# pytest-xdist workers of make test and make slow: most tests wait on a broker or a subprocess, so
# more workers than cores pay off (`make test` on 2 cores: ~41 min with one, ~14-21 with four in
# 2026-11; on 2026-12-07 four took 7m45s-9m25s and six 9m25s, with the 2 cores busy the whole
# run: 1,097 s of CPU in 566 s); 0 runs them in one process. The install matrix runs in one (a wheel house per worker, and four
# installs at once ran a row past its timeout).
TEST_WORKERS ?= 4
XDIST = -n $(TEST_WORKERS) --dist worksteal
# What `make demo` installs: the extras every demo of the README needs (`demo` the embedded
# broker, `demo --survey lsst` also Rubin's packets and the Isolation Forest). tests/install reads
# this line and runs the demos in a fresh venv of exactly this set.
DEMO_EXTRAS := embedded,rubin

.DEFAULT_GOAL := help
.PHONY: help demo test install-matrix slow faults install install-dev lint typecheck unit integration bench bench-gpu sample bundles lsst-sample lsst-bundles lsst-report results clean

## List the targets and what they do.
help:
	@awk 'function show(name, text,   n, i, w, line) { \
	         n = split(text, w, " "); line = ""; \
	         for (i = 1; i <= n; i++) { \
	           if (line != "" && length(line) + length(w[i]) > 76) { \
	             printf "  %-16s %s\n", name, line; name = ""; line = "" } \
	           line = line (line == "" ? "" : " ") w[i] } \
	         printf "  %-16s %s\n", name, line } \
	       /^## / { doc = doc (doc == "" ? "" : " ") substr($$0, 4); next } \
	       /^[a-z][a-z0-9-]*:([^=]|$$)/ { if (doc != "") { sub(/:.*/, ""); show($$0, doc) } \
	         doc = ""; next } \
	       /^$$/ { doc = "" }' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed-demo: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -q -e ".[$(DEMO_EXTRAS)]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[dev]"
	touch $@

## Create .venv with the project and what the demos need (the embedded and rubin extras).
install: $(VENV)/.installed-demo
## Create .venv with the project and every extra, the tools and the test dependencies.
install-dev: $(VENV)/.installed-dev

## Install and run the demo on an embedded broker (`.venv/bin/alert-anomaly demo --survey lsst`:
## the Rubin demo).
demo: install
	$(BIN)/alert-anomaly demo

## Install, lint, type-check and run every test but the install matrix, the slow tests and the
## fault suite.
test: install-dev lint typecheck
	$(BIN)/pytest -m "not faults and not slow and not install" $(XDIST) --durations=30 $(PYTEST_ARGS)

## The install matrix: the wheel with each documented install (base, each extra alone, the image's
## requirement set, make demo's) in a fresh venv, running the README's commands for it (CI runs
## it after test; a few minutes, most of it the demos).
install-matrix: install-dev
	$(BIN)/pytest -m install tests/install $(PYTEST_ARGS)

## Tests of a minute or more (the benchmark harness end to end; CI runs them after test).
slow: install-dev
	$(BIN)/pytest -m "slow and not faults and not install" $(XDIST) --durations=10 $(PYTEST_ARGS)

## The fault suite: hostile input, kills, a frozen and a restarted broker (CI runs it after test).
faults: install-dev
	$(BIN)/pytest -m faults tests/faults $(PYTEST_ARGS)

## ruff: lint and formatting.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## mypy (strict) on service and models.
typecheck: install-dev
	$(BIN)/mypy

## Only the tests without I/O.
unit: install-dev
	$(BIN)/pytest -m "not integration and not faults and not install" $(PYTEST_ARGS)

## Only the tests with brokers, processes and files (no fault suite, no install matrix).
integration: install-dev
	$(BIN)/pytest -m "integration and not faults and not install" $(PYTEST_ARGS)

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

## Retrain the shipped ZTF bundles (every class x mcdsvdd, ae, mcdsvdd-ens-lite - the default -, and mcdsvdd-ens) from the sample in
## the paper configuration, the better of the two in docs/results.md (one torch thread:
## reproducible, and two threads on a shared 2-core machine ran ~10x slower).
BUNDLE_VERSION := 2.1.0+sim20261122
ENSEMBLE_VERSION := 2.0.0+sim20261122
bundles: install-dev
	OMP_NUM_THREADS=1 $(BIN)/alert-anomaly train --data $(SAMPLE) --all --configuration paper --out models/bundles --model-version $(BUNDLE_VERSION)
	for class in Transient Stochastic Periodic; do \
		OMP_NUM_THREADS=1 $(BIN)/alert-anomaly train --data $(SAMPLE) --top-class $$class --scorer mcdsvdd-ens \
			--configuration paper --out models/bundles/ztf/$$(echo $$class | tr A-Z a-z)-mcdsvdd-ens --model-version $(ENSEMBLE_VERSION) || exit 1; \
	done

# The LSST sample, its bundles and the tutorial's report on it, each deterministic for the seed.
## Regenerate the committed simulated LSST sample (Rubin alert packets' diaObject and light-curve
## features).
LSST_SAMPLE := models/data/lsst-sim-sample/objects.parquet
LSST_SEED := 20261129
lsst-sample: install-dev
	$(BIN)/alert-anomaly simulate --survey lsst --n 2000 --seed $(LSST_SEED) --out $(LSST_SAMPLE)

## Retrain the shipped LSST bundles from the LSST sample: unrouted (All x iforest, distclassipy,
## ae) and routed (3 classes x mcdsvdd, ae).
lsst-bundles: install-dev
	OMP_NUM_THREADS=1 $(BIN)/alert-anomaly train --data $(LSST_SAMPLE) --survey lsst --all --out models/bundles --model-version 1.0.0+lsstsim$(LSST_SEED)

## The tutorial's report on the LSST sample (docs/lsst/).
lsst-report: install-dev
	$(BIN)/alert-anomaly simulate --survey lsst --n 2000 --seed $(LSST_SEED) --out out/lsst/objects.parquet --lightcurves out/lsst/lightcurves.parquet
	$(BIN)/alert-anomaly top --survey lsst --data $(LSST_SAMPLE) --scorer iforest --lightcurves out/lsst/lightcurves.parquet --report docs/lsst/iforest
	$(BIN)/alert-anomaly top --survey lsst --data $(LSST_SAMPLE) --scorer distclassipy --lightcurves out/lsst/lightcurves.parquet --report docs/lsst/distclassipy

## Evaluate both configurations on the sample, the paper configuration again with other split
## seeds (the error bars) and with each bug of the reference's preprocessing put back (what our
## fixes change), and regenerate docs/results.md's tables (resumable).
SAMPLE := models/data/ztf-sim-sample/objects.parquet
EVALUATE := $(BIN)/alert-anomaly --log-level warning evaluate --data $(SAMPLE) --folds 5 --epochs 500 --no-progress
SPLIT_SEEDS := 1 2 3
# the error bars' runs: seed 0's paper tables (they hold every split detector) and the seeds above
SPLITS := docs/results/paper $(foreach s,$(SPLIT_SEEDS),docs/results/splits/paper-seed$(s))
SPLIT_DETECTORS := iforest,ae,mcdsvdd,mcdsvdd-nn,mcdsvdd-ens,mcdsvdd-ens-lite
FIX_SEED := 3
REFERENCE_BUGS := log-branch first-match
results: install-dev
	$(EVALUATE) --seed 0 --configuration paper --out docs/results/paper --detectors iforest,ocsvm,ae,vae,deepsvdd,mcdsvdd,distclassipy,mcdsvdd-nn,mcdsvdd-ens,mcdsvdd-ens-lite
	$(EVALUATE) --seed 0 --configuration ours --out docs/results/ours --detectors iforest,ocsvm,ae,vae,deepsvdd,mcdsvdd,distclassipy,mcdsvdd-ens
	for seed in $(SPLIT_SEEDS); do \
		$(EVALUATE) --seed $$seed --configuration paper --out docs/results/splits/paper-seed$$seed --detectors $(SPLIT_DETECTORS) || exit 1; \
	done
	for bug in $(REFERENCE_BUGS); do \
		$(EVALUATE) --seed $(FIX_SEED) --configuration paper --reference-bug $$bug --out docs/results/fixes/$$bug-seed$(FIX_SEED) --detectors mcdsvdd || exit 1; \
	done
	$(BIN)/alert-anomaly compare --paper docs/results/paper --ours docs/results/ours --splits $(SPLITS) --fixes $(foreach b,$(REFERENCE_BUGS),docs/results/fixes/$(b)-seed$(FIX_SEED)) --page docs/results.md

## Remove .venv and the tools' caches.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
