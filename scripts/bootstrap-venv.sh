#!/usr/bin/env bash
# Creates (or refreshes) the controller virtualenv outside the repo so clean clones reuse it.
# Prints nothing but errors; the venv path is $CRYPTOMON_CACHE/venv.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CRYPTOMON_CACHE:-$HOME/.cache/cryptomon}
venv=$cache/venv
lock=$repo/requirements-dev.lock
want=$(sha256sum "$lock" | cut -d' ' -f1)
mkdir -p "$cache"
if [[ -f $venv/.lock-sha256 && $(cat "$venv/.lock-sha256") == "$want" && -x $venv/bin/python ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$lock"
echo "$want" > "$venv/.lock-sha256"
