#!/usr/bin/env bash
# Runs tests/backends on the JAX backend in a second environment without TensorFlow
# (.venv-jax), with the pinned Keras and again with the oldest Keras 3 minor that
# pyproject.toml claims. Called by `make test`; a second run reuses the environment.
#
# Pins: requirements.txt (the jax-env lines, plus keras/numpy/pytest/pytest-timeout).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${JAX_VENV:-.venv-jax}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

say() { printf '\033[1m[backends]\033[0m %s\n' "$*"; }

pins=$(grep -E '# jax-env$|^(keras|numpy|pytest|pytest-timeout)==' requirements.txt | sed 's/ *#.*//')
oldest=$(sed -n 's/^ *"keras>=\([0-9][0-9.]*\),.*/\1/p' pyproject.toml)
[ -n "$oldest" ] || { echo "pyproject.toml declares no keras>=X lower bound" >&2; exit 1; }
[[ "$oldest" == *.*.* ]] || oldest="$oldest.0"
stamp=$(printf '%s\n%s\n' "$pins" "$oldest" | sha256sum | cut -c1-16)

if [ "$(cat "$VENV/.keras-dlu-backends" 2>/dev/null)" != "$stamp" ]; then
  say "creating $VENV (JAX, no TensorFlow) and Keras $oldest beside it"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $pins
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --target "$VENV/keras-oldest" "keras==$oldest"
  echo "$stamp" > "$VENV/.keras-dlu-backends"
fi
if "$VENV/bin/python" -c 'import tensorflow' >/dev/null 2>&1; then
  echo "$VENV must not have TensorFlow" >&2; exit 1
fi

run() {  # tests/backends only: tests/conftest.py (above --confcutdir) imports TensorFlow
  KERAS_BACKEND=jax "$VENV/bin/python" -m pytest tests/backends --confcutdir=tests/backends \
      -p no:cacheprovider -q "$@"
}
say "JAX backend, Keras $(grep -E '^keras==' requirements.txt | cut -d= -f3)"
run
say "JAX backend, oldest claimed Keras ($oldest)"
PYTHONPATH="$VENV/keras-oldest" run
