#!/usr/bin/env bash
# Separate venv for the producer benchmark's comparison side (cryptofeed), so the pinned
# project venv is never touched. Our side only needs the project venv.
set -euo pipefail
CACHE="${CRYPTOMON_CACHE:-$HOME/.cache/cryptomon}"
VENV="${CRYPTOMON_BENCH_VENV:-$CACHE/venv-bench}"
PY="${PYTHON:-python3.11}"
# 3.x needs Python >= 3.13; on 3.11 pip picks the newest release that supports it (2.4.x).
CRYPTOFEED_SPEC="${CRYPTOFEED_SPEC:-cryptofeed}"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# confluent-kafka lets the cryptofeed side produce to the same broker as ours.
"$VENV/bin/python" -m pip install --quiet "$CRYPTOFEED_SPEC" "confluent-kafka==2.16.1"
"$VENV/bin/python" -c "import cryptofeed, sys, importlib.metadata; print('cryptofeed', importlib.metadata.version('cryptofeed'), 'in', sys.prefix)"
