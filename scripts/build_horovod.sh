#!/usr/bin/env bash
# Installs Horovod into $VENV, built from its PyPI sdist with gloo and TensorFlow.
#
# Horovod's last release does not build against TensorFlow 2.21 as shipped: its
# horovod/tensorflow/xla_mpi_ops.cc includes XLA headers that moved. We build the sdist
# with that one file removed from TF_SOURCES in horovod/tensorflow/CMakeLists.txt (XLA
# support is the only thing lost). The wheel is cached outside the repository, keyed by
# Horovod, TensorFlow and Python versions, so a later clone on the same machine reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(cd "${VENV:-.venv}" && pwd)
PY="$VENV/bin/python"
HOROVOD_VERSION=$(sed -n 's/^horovod==//p' requirements.txt)
[ -n "$HOROVOD_VERSION" ] || { echo "requirements.txt pins no horovod version" >&2; exit 1; }

say() { printf '\033[1m[horovod]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[horovod] error:\033[0m %s\n' "$*" >&2; exit 1; }

installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("horovod"))' 2>/dev/null || true)
if [ "$installed" = "$HOROVOD_VERSION" ] && "$PY" -c 'import horovod.tensorflow' >/dev/null 2>&1; then
  exit 0
fi

TF_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')
PY_TAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
CACHE="${KERAS_DLU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keras-dlu}/horovod-$HOROVOD_VERSION-tf$TF_VERSION-$PY_TAG"
mkdir -p "$CACHE"

wheel=$(ls "$CACHE"/horovod-"$HOROVOD_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  say "building Horovod $HOROVOD_VERSION with gloo for TensorFlow $TF_VERSION (a few minutes, once per machine)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      "horovod==$HOROVOD_VERSION" -d "$work" || die "could not download the horovod==$HOROVOD_VERSION sdist"
  tar xzf "$work"/horovod-"$HOROVOD_VERSION".tar.gz -C "$work"
  src="$work/horovod-$HOROVOD_VERSION"
  cmakelists="$src/horovod/tensorflow/CMakeLists.txt"
  grep -q 'horovod/tensorflow/xla_mpi_ops.cc' "$cmakelists" \
    || die "$cmakelists no longer lists xla_mpi_ops.cc; the patch needs revisiting"
  sed -i '/horovod\/tensorflow\/xla_mpi_ops.cc/d' "$cmakelists"
  log="$CACHE/build.log"
  if ! (cd "$src" && PATH="$VENV/bin:$PATH" \
        CMAKE_POLICY_VERSION_MINIMUM=3.5 \
        HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
        HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$work/wheel" . ) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "building Horovod failed (full log: $log). It needs g++, cmake (pinned in requirements.txt) and the TensorFlow in $VENV."
  fi
  cp "$work"/wheel/horovod-*.whl "$CACHE"/
  wheel=$(ls "$CACHE"/horovod-"$HOROVOD_VERSION"-*.whl | head -n 1)
fi
say "installing $(basename "$wheel")"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
"$PY" -c 'import horovod.tensorflow as hvd; assert hvd.gloo_built(), "Horovod was built without gloo"' \
  || die "the installed Horovod does not import with TensorFlow and gloo"
