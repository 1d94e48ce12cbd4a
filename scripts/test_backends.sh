#!/usr/bin/env bash
# Runs tests/backends on the other Keras backends, each in its own environment without
# TensorFlow: JAX (.venv-jax) with the pinned Keras and again with the oldest Keras 3 minor
# that pyproject.toml claims, and PyTorch (.venv-torch, the CPU build of torch) with the
# pinned Keras. Called by `make test` (scripts/run_tests.sh), which first runs it as
# `test_backends.sh prepare` in the background while the main suite runs: that only creates
# the environments. A second run reuses the environments.
#
# Pins: requirements.txt (the lines tagged "jax-env" / "torch-env", plus
# keras/numpy/pytest/pytest-timeout).
#
# The torch pin is a CPU build (a "+cpu" local version): PyPI's own torch wheel pulls
# several GB of CUDA libraries, so where no CPU build is on the package index the PyTorch
# run is skipped, loudly, instead of downloading them. KERAS_DLU_REQUIRE_TORCH=1 makes
# that an error.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

say() { printf '\033[1m[backends]\033[0m %s\n' "$*"; }

common=$(grep -E '^(keras|numpy|pytest|pytest-timeout)==' requirements.txt)
pins_for() { printf '%s\n' "$common"; grep -E "# $1-env\$" requirements.txt | sed 's/ *#.*//'; }
oldest=$(sed -n 's/^ *"keras>=\([0-9][0-9.]*\),.*/\1/p' pyproject.toml)
[ -n "$oldest" ] || { echo "pyproject.toml declares no keras>=X lower bound" >&2; exit 1; }
[[ "$oldest" == *.*.* ]] || oldest="$oldest.0"

# make_env VENV TAG [EXTRA]: (re)creates VENV from the pins tagged TAG when they changed;
# returns 1 (leaving no environment) when pip cannot install them.
make_env() {
  local venv=$1 pins stamp
  pins=$(pins_for "$2")
  stamp=$(printf '%s\n%s\n' "$pins" "${3:-}" | sha256sum | cut -c1-16)
  [ "$(cat "$venv/.keras-dlu-backends" 2>/dev/null)" = "$stamp" ] && return 0
  say "creating $venv ($2, no TensorFlow)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  # shellcheck disable=SC2086
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pins; then
    rm -rf "$venv"
    return 1
  fi
  if [ -n "${3:-}" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$venv/keras-oldest" "keras==$3"
  fi
  if "$venv/bin/python" -c 'import tensorflow' >/dev/null 2>&1; then
    echo "$venv must not have TensorFlow" >&2; exit 1
  fi
  echo "$stamp" > "$venv/.keras-dlu-backends"
}

run() {  # run BACKEND VENV: tests/backends only (tests/conftest.py imports TensorFlow)
  local backend=$1 venv=$2; shift 2
  KERAS_BACKEND=$backend "$venv/bin/python" -m pytest tests/backends \
      --confcutdir=tests/backends -p no:cacheprovider -q "$@"
}
pinned=$(grep -E '^keras==' requirements.txt | cut -d= -f3)

JAX_VENV=${JAX_VENV:-.venv-jax}
TORCH_VENV=${TORCH_VENV:-.venv-torch}
if [ "${1:-}" = prepare ]; then
  make_env "$JAX_VENV" jax "$oldest" || { echo "installing the JAX environment failed" >&2; exit 1; }
  make_env "$TORCH_VENV" torch || say "the PyTorch environment could not be installed"
  exit 0
fi

make_env "$JAX_VENV" jax "$oldest" || { echo "installing the JAX environment failed" >&2; exit 1; }
say "JAX backend, Keras $pinned"
run jax "$JAX_VENV"
say "JAX backend, oldest claimed Keras ($oldest)"
PYTHONPATH="$JAX_VENV/keras-oldest" run jax "$JAX_VENV"

if make_env "$TORCH_VENV" torch; then
  say "PyTorch backend ($(grep -E '# torch-env$' requirements.txt | grep -oE '^torch==[^ ]+')), Keras $pinned"
  run torch "$TORCH_VENV"
elif [ "${KERAS_DLU_REQUIRE_TORCH:-0}" = 1 ]; then
  echo "the pinned CPU build of torch is not on this machine's package index" >&2; exit 1
else
  say "SKIPPED the PyTorch backend: the pinned CPU build of torch is not on this machine's" \
      "package index (PyPI's torch would download several GB of CUDA libraries)"
fi
