#!/usr/bin/env bash
# Debian packages the tests need on the controller: Java 17 (Kafka/Flink harness), Maven
# (artifact cache), Docker engine + debootstrap (molecule), Chromium (dashboard test), nftables
# (nft -c checks the firewall role's rules), Prometheus and Alertmanager (the tests use only their
# promtool and amtool, on the monitoring role's files).
# Idempotent: installs only what is missing.
set -euo pipefail
pkgs=(openjdk-17-jre-headless maven docker.io debootstrap chromium chromium-driver nftables
      prometheus prometheus-alertmanager)
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
