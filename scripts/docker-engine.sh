#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io if needed and starts
# dockerd in the background when none runs (machines here have no engine running).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  "$(dirname "$0")/install-system-deps.sh"
fi
log=${CRYPTOMON_CACHE:-$HOME/.cache/cryptomon}/dockerd.log
mkdir -p "$(dirname "$log")"
echo "[docker] starting dockerd (log: $log)"
sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
# setsid: the engine must outlive this script and the make process that called it.
"${sudo_cmd[@]}" setsid dockerd --storage-driver=overlay2 >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "[docker] engine ready"; exit 0; fi
  sleep 1
done
echo "[docker] ERROR: dockerd did not become ready in 60 s; last log lines:" >&2
tail -n 20 "$log" >&2
exit 1
