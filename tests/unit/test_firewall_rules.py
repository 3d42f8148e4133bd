"""roles/firewall rendered for the example inventory: each port open only to the hosts that
need it, and every host's rules accepted by nft's own parser (nft -c)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_firewall.yml"
IP = {"kctl-1": "10.0.1.11", "kctl-2": "10.0.1.12", "kctl-3": "10.0.1.13", "kbrk-1": "10.0.1.21",
      "kbrk-2": "10.0.1.22", "kbrk-3": "10.0.1.23", "flink-jm-1": "10.0.2.11", "flink-tm-1": "10.0.2.21",
      "flink-tm-2": "10.0.2.22", "svc-1": "10.0.3.11"}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("nft")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"),
                          "-i", str(REPO / "inventory" / "example"),
                          str(PLAYBOOK), "-e", f"render_out={out}", "-e", "cryptomon_firewall=true"],
                         env=env, capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {f.stem: f.read_text() for f in out.glob("*.nft")}


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
