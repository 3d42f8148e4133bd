#!/usr/bin/env bash
# The local sandbox hosts: systemd containers standing in for VMs (inventory/sandbox).
#   sandbox.sh up      create/start cm-kafka, cm-flink, cm-services on network cryptomon-sandbox
#   sandbox.sh down    remove them (the image stays)
#   sandbox.sh status  list them
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
net=cryptomon-sandbox
# name:published ports (host port=container port, on 127.0.0.1 only): people come in through
# the front door on cm-services (HTTPS with a login); nothing else is published.
hosts=("cm-kafka:" "cm-flink:" "cm-services:8443=443")

up() {
  local image
  image=$("$here/base-image.sh")
  docker network inspect "$net" >/dev/null 2>&1 || docker network create "$net" >/dev/null
  for entry in "${hosts[@]}"; do
    local name=${entry%%:*} ports=${entry#*:} publish=()
    if docker inspect "$name" >/dev/null 2>&1; then
      docker start "$name" >/dev/null
      continue
    fi
    IFS=, read -ra plist <<< "$ports"
    for p in "${plist[@]}"; do [[ -n $p ]] && publish+=(-p "127.0.0.1:${p%%=*}:${p#*=}"); done
    # What systemd as PID 1 needs in a container here (no --privileged on these machines).
    docker run -d --name "$name" --hostname "$name" --network "$net" "${publish[@]}" \
      --cap-add SYS_ADMIN --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
      --tmpfs /run --tmpfs /run/lock \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --label cryptomon.sandbox=1 "$image" /lib/systemd/systemd >/dev/null
  done
  for entry in "${hosts[@]}"; do
    local name=${entry%%:*}
    for _ in $(seq 1 30); do
      state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
      [[ $state == running || $state == degraded ]] && break
      sleep 1
    done
  done
  echo "[sandbox] hosts up: $(docker ps --filter label=cryptomon.sandbox=1 --format '{{.Names}}' | sort | xargs)"
}

down() {
  docker ps -aq --filter label=cryptomon.sandbox=1 | xargs -r docker rm -f >/dev/null
  docker network rm "$net" >/dev/null 2>&1 || true
  echo "[sandbox] removed"
}

info() {
  local secrets=${HOME}/.local/share/cryptomon/sandbox/secrets password
  password=$(cat "$secrets/frontdoor-admin.password" 2>/dev/null || echo "(not generated yet: run make up)")
  cat <<TXT

cryptomon sandbox is up, secure like production (TLS, a login, SCRAM users, ACLs). Where to look:
  Front door            https://127.0.0.1:8443/          login: admin / ${password}
    dashboard           https://127.0.0.1:8443/          (prices, spread chart, alert history)
    Flink web UI        https://127.0.0.1:8443/flink/    (both jobs listed as <name>@<version>)
    Discord stand-in    https://127.0.0.1:8443/discord/messages   (alerts the alerter delivered, JSON;
                        ?webhook=2: Alertmanager's alerts about the stack itself)
    Prometheus          https://127.0.0.1:8443/prometheus/  (targets, alert rules, firing alerts)
    Alertmanager        https://127.0.0.1:8443/alertmanager/api/v2/alerts  (its API: Debian's package
                        has no web app; silences with amtool inside cm-services)
  The certificate is from the sandbox's own CA: ${HOME}/.local/share/cryptomon/sandbox/pki/ca.crt
    curl --cacert <that file> ... needs the host name cm-services; or accept it in the browser.
  Units                 make status
  Logs                  make logs UNIT=cryptomon-producer@binance   (or cryptomon-alerter, ...)
  Inside a host         docker exec -it cm-services bash
                        systemctl status cryptomon-producer@binance
                        journalctl -u cryptomon-producer@binance -f
  Hosts                 cm-kafka (Kafka KRaft), cm-flink (JobManager + TaskManager),
                        cm-services (producers, alerter, dashboard, front door, replay servers,
                        Prometheus and Alertmanager); node exporter on all three
  Secrets (generated)   ${secrets}/
Demo mode is on: expect anomaly and arbitrage alerts within a few minutes.
TXT
}

case ${1:-} in
  up) up ;;
  info) info ;;
  down) down ;;
  status) docker ps -a --filter label=cryptomon.sandbox=1 --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}' ;;
  *) echo "usage: $0 up|down|status|info" >&2; exit 2 ;;
esac
