"""The real producer configured SASL_SSL against the secure node's INTERNAL listener (TLS with
client certificates, no SASL): it logs one clear line naming KAFKA_BOOTSTRAP_SERVERS and
KAFKA_SECURITY_PROTOCOL instead of librdkafka's bare "Broker transport failure" (issue 9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"
CLEAR_LINE = r"KAFKA_BOOTSTRAP_SERVERS=\S+ with KAFKA_SECURITY_PROTOCOL=SASL_SSL: the listener at \S+ wants a client"


def test_producer_names_the_variables_when_pointed_at_the_mtls_listener(kafka_secure, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PRODUCER_", "MOCK_"))}
    env.update({"PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1", "PRODUCER_BACKOFF_INITIAL_S": "0.05",
                "PRODUCER_BACKOFF_MAX_S": "0.3", **kafka_secure.client_env("cryptomon-producer"),
                "KAFKA_BOOTSTRAP_SERVERS": kafka_secure.internal})
    log_path = tmp_path / "producer.log"
    proc = subprocess.Popen([sys.executable, "-m", "cryptomon.producer.cli", "mock"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=log_path.open("wb"))
    try:
        deadline = time.monotonic() + 60
        while not re.search(CLEAR_LINE, log_path.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        # More attempts fail the same way (backoff 0.05-0.3 s): still one line (rate-limited).
        time.sleep(5)
    finally:
        proc.kill()
        proc.wait()
    log = log_path.read_text()
    lines = [line for line in log.splitlines() if re.search(CLEAR_LINE, line)]
    assert len(lines) == 1, log[-3000:]
    assert f"KAFKA_BOOTSTRAP_SERVERS={kafka_secure.internal} with KAFKA_SECURITY_PROTOCOL=SASL_SSL" in lines[0]
    assert "connect to the brokers' client listener" in lines[0]
    assert "Kafka not reachable" not in log, log[-3000:]
