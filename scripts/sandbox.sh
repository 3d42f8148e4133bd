#!/usr/bin/env bash
# The local sandbox hosts: systemd containers standing in for VMs (inventory/sandbox).
#   sandbox.sh up      create/start cm-kafka, cm-flink, cm-services on network cryptomon-sandbox
#   sandbox.sh down    remove them (the image stays)
#   sandbox.sh status  list them
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
net=cryptomon-sandbox
# name:published ports (127.0.0.1 only: the sandbox has no authentication)
hosts=("cm-kafka:" "cm-flink:8081" "cm-services:8501,8090")

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
    for p in "${plist[@]}"; do [[ -n $p ]] && publish+=(-p "127.0.0.1:$p:$p"); done
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
  cat <<'TXT'

cryptomon sandbox is up. Where to look:
  Flink web UI          http://127.0.0.1:8081            (both jobs listed as <name>@<version>)
  Dashboard             http://127.0.0.1:8501            (prices, spread chart, alert history)
  Discord stand-in      http://127.0.0.1:8090/messages   (alerts the alerter delivered, JSON)
  Units                 make status
  Logs                  make logs UNIT=cryptomon-producer@binance   (or cryptomon-alerter, ...)
  Inside a host         docker exec -it cm-services bash
                        systemctl status cryptomon-producer@binance
                        journalctl -u cryptomon-producer@binance -f
  Hosts                 cm-kafka (Kafka KRaft), cm-flink (JobManager + TaskManager),
                        cm-services (producers, alerter, dashboard, replay servers)
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
