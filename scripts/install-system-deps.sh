#!/usr/bin/env bash
# Debian packages the tests need on the controller, by tier, so `make lint unit` does not pull
# in Docker or a browser:
#   unit         systemd (systemd-analyze scores every unit), nftables (nft -c checks the
#                firewall role's rules), Prometheus and Alertmanager (only their promtool and
#                amtool, on the monitoring role's files)
#   cache        Java 17 and Maven (the artifact cache builds and checks Java artifacts)
#   integration  Java 17 (Kafka/Flink harness), Chromium and its driver (dashboard browser test)
#   molecule     Docker engine and debootstrap (the systemd base image)
#   all          every tier (the default)
# Idempotent: installs only what is missing.
# Usage: scripts/install-system-deps.sh [unit|cache|integration|molecule|all]...
set -euo pipefail
declare -A tier_pkgs=(
  [unit]="systemd nftables prometheus prometheus-alertmanager"
  [cache]="openjdk-17-jre-headless maven"
  [integration]="openjdk-17-jre-headless chromium chromium-driver"
  [molecule]="docker.io debootstrap"
)
tiers=("$@"); ((${#tiers[@]})) || tiers=(all)
pkgs=()
for t in "${tiers[@]}"; do
  if [[ $t == all ]]; then
    for k in unit cache integration molecule; do read -ra more <<<"${tier_pkgs[$k]}"; pkgs+=("${more[@]}"); done
  elif [[ -n ${tier_pkgs[$t]:-} ]]; then
    read -ra more <<<"${tier_pkgs[$t]}"; pkgs+=("${more[@]}")
  else
    echo "install-system-deps: unknown tier '$t' (unit, cache, integration, molecule, all)" >&2; exit 2
  fi
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[system-deps] installing: ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Only promtool and amtool are wanted here: on a controller run by systemd the packages would
# start Prometheus and Alertmanager listening on every address without authentication.
if [[ -d /run/systemd/system ]]; then
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  for unit in prometheus prometheus-alertmanager prometheus-node-exporter; do
    if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null; then
      "${sudo_cmd[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
