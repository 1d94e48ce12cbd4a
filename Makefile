# keras-dlu: `make demo` and `make test` set everything up on first use (see
# scripts/setup_env.sh), then run the quickstart or the test suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.keras-dlu-env
LIBRARY := keras_dlu/_dlu_ops.so
OPS_SOURCES := $(shell find ops -name '*.cc' -o -name '*.h' -o -name '*.cu' 2>/dev/null)

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup build test test-backends demo bench cuda-test clean

setup: $(ENV_STAMP) $(LIBRARY)

$(ENV_STAMP): requirements.txt scripts/setup_env.sh scripts/build_horovod.sh
	bash scripts/setup_env.sh
	touch $@

# Rebuilt when an op source, header or setup.py changes (make decides, so --force: setuptools
# alone would skip a rebuild when only a header changed); the first build is in setup_env.sh.
$(LIBRARY): $(OPS_SOURCES) setup.py | $(ENV_STAMP)
	$(PY) setup.py -q build_ext --inplace --force
	touch $@

build: setup

# The whole suite, then (without PYTEST_ARGS) tests/backends on the JAX and PyTorch backends,
# each in an environment without TensorFlow (.venv-jax, .venv-torch; scripts/test_backends.sh,
# whose environments are created in the background while the suite runs: scripts/run_tests.sh).
test: setup
	PYTEST_ARGS='$(PYTEST_ARGS)' bash scripts/run_tests.sh

test-backends:
	bash scripts/test_backends.sh

demo: setup
	$(PY) tutorials/quickstart.py

# Every benchmark, with progress, into reports/benchmarks.md (BENCH_ARGS=--quick for minutes).
bench: setup
	$(VENV)/bin/keras-dlu bench $(BENCH_ARGS)

# Builds and runs the plain-CUDA test drivers (needs nvcc and a GPU).
cuda-test:
	bash ops/cuda/tests/run.sh

clean:
	rm -rf build dist *.egg-info $(LIBRARY) keras_dlu/_build_info.json reports
