#!/usr/bin/env bash
# `make test`: the whole suite in .venv. Without PYTEST_ARGS, the JAX and PyTorch
# environments of scripts/test_backends.sh are created in the background meanwhile (pip
# waits mostly on downloads and disk, the suite on the CPU), then tests/backends runs in them.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ -n "${PYTEST_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  exec "$PY" -m pytest $PYTEST_ARGS
fi
log=$(mktemp)
bash scripts/test_backends.sh prepare > "$log" 2>&1 &
prepare=$!
"$PY" -m pytest
suite=$?
wait "$prepare"
prepared=$?
cat "$log"
rm -f "$log"
[ "$suite" -eq 0 ] || exit "$suite"
[ "$prepared" -eq 0 ] || exit "$prepared"
exec bash scripts/test_backends.sh
