#!/usr/bin/env bash
# One-command, idempotent set-up of keras-dlu's development environment in .venv:
#   1. a virtual environment with the machine's Python 3.11,
#   2. the pinned packages of requirements.txt (all but horovod),
#   3. Horovod built from its sdist with gloo and TensorFlow (scripts/build_horovod.sh,
#      cached outside the repository),
#   4. keras-dlu itself, editable, with its native library.
# Each step is skipped when it is already done, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || die "no python3.11 or python3 on the PATH"
  PYTHON=python3
fi
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$version" = "3.11" ] || die "keras-dlu needs Python 3.11 (TensorFlow 2.21 wheels); $PYTHON is $version. Set PYTHON=/path/to/python3.11."

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

req_hash=$(sha256sum requirements.txt | cut -c1-16)
if [ "$(cat "$VENV/.requirements-hash" 2>/dev/null)" != "$req_hash" ]; then
  say "installing pinned packages from requirements.txt"
  "$PY" -m pip install --quiet --disable-pip-version-check "$(grep -E '^pip==' requirements.txt)"
  grep -v -E '^horovod==|# (jax|torch)-env$' requirements.txt > "$VENV/requirements-pypi.txt"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$VENV/requirements-pypi.txt"
  echo "$req_hash" > "$VENV/.requirements-hash"
fi

VENV="$VENV" bash scripts/build_horovod.sh

# oneDNN (Debian libdnnl-dev) for dlu_matmul's integer GEMM; setup.py finds it by itself.
# Without it the library still builds, with a slower portable GEMM.
if [ ! -f /usr/include/dnnl.h ] && [ -z "${DNNL_ROOT:-}" ] && [ "${KERAS_DLU_ONEDNN:-1}" != 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "oneDNN is missing and there is no apt-get: install oneDNN and set DNNL_ROOT, or set KERAS_DLU_ONEDNN=0 for the slow portable GEMM"
  [ "$(id -u)" = 0 ] || die "oneDNN (libdnnl-dev) is missing: run 'sudo apt-get update && sudo apt-get install -y libdnnl-dev', or set KERAS_DLU_ONEDNN=0 for the slow portable GEMM"
  say "installing oneDNN (libdnnl-dev) with apt-get"
  # Another apt-get (a second checkout's setup) may hold dpkg's lock: wait for it, bounded.
  apt_wait="-o DPkg::Lock::Timeout=600"
  apt-get $apt_wait update -qq && apt-get $apt_wait install -y -qq libdnnl-dev >/dev/null \
    || die "apt-get install libdnnl-dev failed"
fi

if ! "$PY" -c 'import importlib.metadata as m; m.version("keras-dlu")' >/dev/null 2>&1; then
  say "installing keras-dlu (editable) and building its native library"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
    || die "building keras-dlu failed; see the compiler output above"
fi
say "environment ready in $VENV"
