"""roles/firewall rendered for the example inventory: each port open only to the hosts that
need it, and every host's rules accepted by nft's own parser (nft -c)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptomon.producer.registry import describe
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_firewall.yml"
IP = {"kctl-1": "10.0.1.11", "kctl-2": "10.0.1.12", "kctl-3": "10.0.1.13", "kbrk-1": "10.0.1.21",
      "kbrk-2": "10.0.1.22", "kbrk-3": "10.0.1.23", "flink-jm-1": "10.0.2.11", "flink-tm-1": "10.0.2.21",
      "flink-tm-2": "10.0.2.22", "svc-1": "10.0.3.11"}


REGISTRY = describe(real_only=True)
EXCHANGES = [e["name"] for e in REGISTRY]


def render(out: Path, inventory: Path, **extra: object) -> dict[str, str]:
    """Each host's rules; the services host's exchange registry as the services play leaves it."""
    out.mkdir(parents=True, exist_ok=True)
    variables = {"render_out": str(out), "cryptomon_firewall": True, "cryptomon_services_registry": REGISTRY, **extra}
    run_playbook(PLAYBOOK, inventory=inventory, extra_vars=variables).assert_ok()
    return {f.stem: f.read_text() for f in out.glob("*.nft")}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("nft"), REPO / "inventory" / "example")


def separate_monitoring_host(tmp_path: Path) -> Path:
    """inventory/example with Prometheus on a host of its own, mon-1, instead of svc-1."""
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "example", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["children"]["monitoring"] = {"hosts": {"mon-1": {"ansible_host": "10.0.4.11"}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


def opened(text: str, port: int | str) -> set[str] | None:
    """Addresses allowed to reach a TCP port (None: anyone)."""
    found: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if re.search(rf"tcp dport {port} accept$", line):
            m = re.match(r"ip6? saddr \{ (.*) \} tcp dport", line)
            if not m:
                return None
            found |= {a.strip() for a in m.group(1).split(",")}
    return found


def test_every_host_drops_by_default(rules):
    assert sorted(rules) == sorted(IP)
    for host, text in rules.items():
        assert "policy drop;" in text, host
        assert opened(text, 22) == {"10.0.0.0/16"}  # the example's firewall_ssh_sources


def test_kafka_ports_only_for_the_hosts_that_need_them(rules):
    kafka = {IP[h] for h in IP if h.startswith("k")}
    clients = kafka | {IP["flink-jm-1"], IP["flink-tm-1"], IP["flink-tm-2"], IP["svc-1"]}
    assert opened(rules["kbrk-1"], 9092) == clients
    assert opened(rules["kbrk-1"], 9094) == kafka
    assert opened(rules["kbrk-1"], 9093) == set()  # brokers do not listen on the controller port
    assert opened(rules["kctl-1"], 9093) == kafka
    assert opened(rules["kctl-1"], 9092) == set()


def test_flink_ports_only_among_flink_hosts_and_rest_for_the_front_door(rules):
    flink = {IP["flink-jm-1"], IP["flink-tm-1"], IP["flink-tm-2"]}
    assert opened(rules["flink-jm-1"], 8081) == flink | {IP["svc-1"]}
    for port in (6123, 6124, "6125-6126"):
        assert opened(rules["flink-jm-1"], port) == flink
    for port in (6121, 6122):
        assert opened(rules["flink-tm-2"], port) == flink
    assert opened(rules["svc-1"], 443) is None  # the front door is for everyone
    assert opened(rules["svc-1"], 8501) == set()  # Streamlit only behind it
    assert opened(rules["kbrk-1"], 8081) == set()


def test_nft_accepts_every_hosts_rules(rules, tmp_path):
    # Debian's nftables, installed for this tier by scripts/install-system-deps.sh.
    nft = shutil.which("nft") or "/usr/sbin/nft"
    for host, text in rules.items():
        f = tmp_path / f"{host}.nft"
        f.write_text(text)
        res = subprocess.run([nft, "-c", "-f", str(f)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{host}: {res.stderr}"


# --- Metric endpoints: the monitoring hosts only ----------------------------------------------


def test_metric_ports_only_for_the_monitoring_host(rules):
    monitoring = {IP["svc-1"]}  # inventory/example's monitoring host
    for host, text in rules.items():
        assert opened(text, 9100) == monitoring, host  # node exporter everywhere
        kafka = host.startswith("k")
        assert opened(text, 7071) == (monitoring if kafka else set()), host
    assert opened(rules["flink-jm-1"], 9249) == monitoring
    assert opened(rules["flink-jm-1"], 9250) == set()
    for tm in ("flink-tm-1", "flink-tm-2"):
        assert opened(rules[tm], 9250) == monitoring and opened(rules[tm], 9249) == set()
    # the services' endpoints listen on loopback by default: nothing to open
    assert not re.search(r"dport 93\d\d ", rules["svc-1"])
    # Prometheus (9090) and Alertmanager (9095) listen on loopback: people come through the front door
    assert opened(rules["svc-1"], 9090) == set() and opened(rules["svc-1"], 9095) == set()


def test_a_separate_monitoring_host_reaches_the_metrics_and_nothing_else(tmp_path):
    rules = render(tmp_path / "out", separate_monitoring_host(tmp_path), cryptomon_services_metrics_address="10.0.3.11")
    mon = {"10.0.4.11"}
    assert opened(rules["svc-1"], 9100) == mon and opened(rules["kbrk-2"], 7071) == mon
    assert opened(rules["flink-jm-1"], 9249) == mon and opened(rules["flink-tm-1"], 9250) == mon
    # the producers enabled by default (binance, coinbase) on their registry places, the alerter
    # and the dashboard
    for producer in ("binance", "coinbase"):
        assert opened(rules["svc-1"], 9310 + EXCHANGES.index(producer)) == mon, producer
    assert opened(rules["svc-1"], 9310 + EXCHANGES.index("kraken")) == set()  # not enabled
    assert opened(rules["svc-1"], 9330) == mon
    assert opened(rules["svc-1"], 9331) == mon
    assert opened(rules["svc-1"], 8501) == set()  # Streamlit itself stays behind the front door
    # Prometheus talks to no Kafka listener and no Flink REST API
    assert "10.0.4.11" not in opened(rules["kbrk-1"], 9092) and "10.0.4.11" not in opened(rules["flink-jm-1"], 8081)
    assert opened(rules["mon-1"], 9100) == mon  # its own node exporter, scraped by itself


def test_switched_off_or_loopback_exporters_open_nothing(tmp_path):
    rules = render(tmp_path / "out", REPO / "inventory" / "example", cryptomon_kafka_jmx_exporter_enabled=False,
                   cryptomon_flink_prometheus_enabled=False)
    assert opened(rules["kbrk-1"], 7071) == set() and opened(rules["flink-jm-1"], 9249) == set()
    rules = render(tmp_path / "loopback", REPO / "inventory" / "example",
                   cryptomon_kafka_jmx_exporter_address="127.0.0.1")
    assert opened(rules["kbrk-1"], 7071) == set()
    assert opened(rules["kbrk-1"], 9100) == {IP["svc-1"]}


def test_switched_off_services_open_no_metrics_port(tmp_path):
    rules = render(tmp_path / "out", separate_monitoring_host(tmp_path), cryptomon_services_metrics_address="10.0.3.11",
                   cryptomon_services_dashboard_enabled=False, cryptomon_services_alerter_enabled=False)
    assert opened(rules["svc-1"], 9331) == set() and opened(rules["svc-1"], 9330) == set()
    assert opened(rules["svc-1"], 9310 + EXCHANGES.index("binance")) == {"10.0.4.11"}  # the producers still
    rules = render(tmp_path / "moved", separate_monitoring_host(tmp_path / "moved"),
                   cryptomon_services_metrics_address="10.0.3.11", cryptomon_services_metrics_dashboard_port=9441)
    assert opened(rules["svc-1"], 9441) == {"10.0.4.11"} and opened(rules["svc-1"], 9331) == set()


def test_without_monitoring_hosts_no_metric_port_opens(tmp_path):
    inventory = separate_monitoring_host(tmp_path)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    del hosts["all"]["children"]["monitoring"]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    rules = render(tmp_path / "out", inventory, cryptomon_services_metrics_address="10.0.3.11")
    for host, text in rules.items():
        for port in (9100, 7071, 9249, 9250, 9310, 9330, 9331):
            assert opened(text, port) == set(), (host, port)
