"""The cryptomon_services role's check of the services' Kafka settings (issue 9, "Bad input"):
KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL as templates/services/kafka.env.j2 renders
them must point a SASL client at the brokers' client listener, not at a broker's internal or
controller listener (TLS with client certificates), and no PLAINTEXT client at a TLS port; the
play stops with one message before anything is installed or restarted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "validate_services.yml"
TEMPLATE = REPO / "templates" / "services" / "kafka.env.j2"


def run(templates: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventory" / "example"),
           str(PLAYBOOK), "-e", f"cryptomon_templates_dir={templates}",
           "-e", f"ansible_python_interpreter={sys.executable}", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, check=False)


def templates_with(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of templates/ whose services/kafka.env.j2 has `old` replaced by `new`."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    kafka_env = templates / "services" / "kafka.env.j2"
    text = kafka_env.read_text()
    assert old in text
    kafka_env.write_text(text.replace(old, new))
    return templates


def test_the_shipped_template_passes() -> None:
    res = run(REPO / "templates")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_plaintext_mode_passes() -> None:
    res = run(REPO / "templates", "-e", "cryptomon_kafka_plaintext=true")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_sasl_at_a_brokers_internal_port_fails_naming_template_address_and_variable(tmp_path: Path) -> None:
    templates = templates_with(tmp_path, "KAFKA_BOOTSTRAP_SERVERS={{ cryptomon_kafka_bootstrap_servers }}",
                               "KAFKA_BOOTSTRAP_SERVERS=kbrk-1:9092,kbrk-2:9094")
    res = run(templates)
    assert res.returncode != 0
    out = " ".join(res.stdout.split())
    assert f"{templates}/services/kafka.env.j2: KAFKA_BOOTSTRAP_SERVERS=kbrk-1:9092,kbrk-2:9094" in out
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL: kbrk-2:9094 is kbrk-2's internal listener" in out
    assert "kbrk-1:9092 is" not in out
    assert "client listener, port 9092" in out


def test_sasl_at_a_controllers_port_by_address_fails(tmp_path: Path) -> None:
    # kctl-1's ansible_host in inventory/example
    templates = templates_with(tmp_path, "KAFKA_BOOTSTRAP_SERVERS={{ cryptomon_kafka_bootstrap_servers }}",
                               "KAFKA_BOOTSTRAP_SERVERS=10.0.1.11:9093")
    res = run(templates)
    assert res.returncode != 0
    assert "10.0.1.11:9093 is kctl-1's controller listener" in " ".join(res.stdout.split())


def test_plaintext_at_the_tls_client_port_fails(tmp_path: Path) -> None:
    templates = templates_with(tmp_path, "KAFKA_SECURITY_PROTOCOL={{ cryptomon_kafka_security_protocol }}",
                               "KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
    res = run(templates)
    assert res.returncode != 0
    out = " ".join(res.stdout.split())
    assert ("KAFKA_SECURITY_PROTOCOL=PLAINTEXT: kbrk-1:9092 is kbrk-1's client listener "
            "(cryptomon_kafka_port, SASL_SSL)") in out


def test_another_host_at_port_9094_is_not_a_kafka_listener(tmp_path: Path) -> None:
    templates = templates_with(tmp_path, "KAFKA_BOOTSTRAP_SERVERS={{ cryptomon_kafka_bootstrap_servers }}",
                               "KAFKA_BOOTSTRAP_SERVERS=proxy.example:9094")
    res = run(templates)
    assert res.returncode == 0, res.stdout[-3000:]
