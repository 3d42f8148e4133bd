"""The cryptomon_services role's check of the services' Kafka settings (issue 9, "Bad input"):
KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL as templates/services/kafka.env.j2 renders
them must point a SASL client at the brokers' client listener, not at a broker's internal or
controller listener (TLS with client certificates), and no PLAINTEXT client at a TLS port; the
play stops with one message before anything is installed or restarted."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from unit.playbook_runner import PlaybookRun, run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "validate_services.yml"
# The lines of templates/services/kafka.env.j2 the tests replace, by variable.
SHIPPED = {"KAFKA_BOOTSTRAP_SERVERS": "KAFKA_BOOTSTRAP_SERVERS={{ cryptomon_kafka_bootstrap_servers }}",
           "KAFKA_SECURITY_PROTOCOL": "KAFKA_SECURITY_PROTOCOL={{ cryptomon_kafka_security_protocol }}"}


def run(templates: Path, **extra: object) -> PlaybookRun:
    variables = {"cryptomon_templates_dir": str(templates), "ansible_python_interpreter": sys.executable, **extra}
    return run_playbook(PLAYBOOK, inventory=REPO / "inventory" / "example", extra_vars=variables)


def templates_with(tmp_path: Path, line: str) -> Path:
    """A copy of templates/ whose services/kafka.env.j2 has `line` instead of the shipped line of
    the same variable."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    kafka_env = templates / "services" / "kafka.env.j2"
    text = kafka_env.read_text()
    shipped = SHIPPED[line.split("=", 1)[0]]
    assert shipped in text
    kafka_env.write_text(text.replace(shipped, line))
    return templates


@pytest.mark.parametrize(("line", "extra"), [
    (None, {}),
    (None, {"cryptomon_kafka_plaintext": True}),
    ("KAFKA_BOOTSTRAP_SERVERS=proxy.example:9094", {}),
], ids=["shipped-template", "plaintext-mode", "another-host-at-port-9094-is-not-a-kafka-listener"])
def test_passes(tmp_path: Path, line: str | None, extra: dict) -> None:
    res = run(templates_with(tmp_path, line) if line else REPO / "templates", **extra)
    assert res.rc == 0, res.tail


# line of kafka.env.j2 -> what the failure says ({templates}: the templates dir), what it does not
@pytest.mark.parametrize(("line", "said", "not_said"), [
    ("KAFKA_BOOTSTRAP_SERVERS=kbrk-1:9092,kbrk-2:9094",
     ["{templates}/services/kafka.env.j2: KAFKA_BOOTSTRAP_SERVERS=kbrk-1:9092,kbrk-2:9094",
      "KAFKA_SECURITY_PROTOCOL=SASL_SSL: kbrk-2:9094 is kbrk-2's internal listener", "client listener, port 9092"],
     ["kbrk-1:9092 is"]),
    # kctl-1's ansible_host in inventory/example
    ("KAFKA_BOOTSTRAP_SERVERS=10.0.1.11:9093", ["10.0.1.11:9093 is kctl-1's controller listener"], []),
    ("KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
     ["KAFKA_SECURITY_PROTOCOL=PLAINTEXT: kbrk-1:9092 is kbrk-1's client listener (cryptomon_kafka_port, SASL_SSL)"],
     []),
], ids=["sasl-at-a-brokers-internal-port", "sasl-at-a-controllers-port-by-address",
        "plaintext-at-the-tls-client-port"])
def test_a_client_at_the_wrong_listener_fails_naming_template_address_and_variable(
        tmp_path: Path, line: str, said: list[str], not_said: list[str]) -> None:
    templates = templates_with(tmp_path, line)
    res = run(templates)
    assert res.rc != 0
    out = " ".join(res.stdout.split())
    for text in said:
        assert text.format(templates=templates) in out
    for text in not_said:
        assert text not in out
