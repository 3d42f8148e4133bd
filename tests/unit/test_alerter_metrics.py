"""The alerter's /metrics without Kafka: alerts through the real Discord client against the local
Discord stand-in (429 and 5xx injected), consumer lag from a fake consumer, the CLI endpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import TopicPartition
from cryptomon.alerter import service
from cryptomon.alerter.config import AlerterConfig, ConfigError, Webhook
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.discord import DiscordWebhookClient, Stopped
from cryptomon.alerter.metrics import AlerterMetrics, ConsumerLag
from cryptomon.alerter.service import AlertProcessor, Outcome
from cryptomon.replay.discord import FakeDiscord
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
TOKEN = "metrics-SECRET-token-1a2b3c"
ANOMALY = {"alert_id": "anomaly:coinbase:BTC-USD:1700000100000", "alert_type": "volume_anomaly",
           "schema_version": 1, "exchange": "coinbase", "symbol": "BTC-USD", "volume": "20",
           "volume_threshold": "10", "window_start_ms": 1700000100000, "window_end_ms": 1700000110000}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def fake():
    with FakeDiscord(rate_limit=50, per=1.0, token=TOKEN) as server:
        yield server


def test_alerts_discord_errors_and_latencies(fake: FakeDiscord) -> None:
    client = DiscordWebhookClient(Webhook(fake.webhook_url("1", TOKEN)), base_backoff=0.05, max_backoff=0.2)
    processor = AlertProcessor(client, SentIds(100))
    registry = CollectorRegistry()
    AlerterMetrics(registry, processor, client, clock=lambda: 1_700_000_123.5)
    assert sample(registry, "cryptomon_alerter_last_post_timestamp_seconds") == 0  # nothing posted yet

    fake.inject(429, count=1, retry_after=0.1)
    fake.inject(503, count=1)
    assert processor.handle(json.dumps(ANOMALY), "test@1") is Outcome.DELIVERED
    assert processor.handle(json.dumps(ANOMALY), "test@2") is Outcome.DUPLICATE
    assert processor.handle(b"{not json", "test@3") is Outcome.MALFORMED
    assert processor.handle(json.dumps({**ANOMALY, "alert_id": "second"}), "test@4") is Outcome.DELIVERED

    alerts = "cryptomon_alerter_alerts_total"
    assert sample(registry, alerts, outcome="delivered") == 2
    assert sample(registry, alerts, outcome="duplicate") == 1
    assert sample(registry, alerts, outcome="malformed") == 1
    assert sample(registry, alerts, outcome="stale") == 0
    assert sample(registry, "cryptomon_alerter_discord_rate_limited_total") == 1
    assert sample(registry, "cryptomon_alerter_discord_server_errors_total") == 1
    assert sample(registry, "cryptomon_alerter_discord_network_errors_total") == 0
    requests = "cryptomon_alerter_discord_request_seconds_count"
    assert sample(registry, requests, status="429") == 1
    assert sample(registry, requests, status="5xx") == 1
    assert sample(registry, requests, status="2xx") == 2
    assert sample(registry, "cryptomon_alerter_discord_post_seconds_count") == 2
    # The first post waited out the 429 (0.1 s) and a backoff: it took longer than that.
    assert sample(registry, "cryptomon_alerter_discord_post_seconds_sum") >= 0.1
    assert sample(registry, "cryptomon_alerter_last_post_timestamp_seconds") == 1_700_000_123.5


def test_network_errors_are_requests_without_a_status() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # closed again when the with block ends
    stop = threading.Event()
    client = DiscordWebhookClient(Webhook(f"http://127.0.0.1:{closed_port}/api/webhooks/1/{TOKEN}"), stop,
                                  base_backoff=0.05, max_backoff=0.05)
    registry = CollectorRegistry()
    metrics = AlerterMetrics(registry, AlertProcessor(client, SentIds(10)), client)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Stopped):
        client.post({"content": "x"})
    assert sample(registry, "cryptomon_alerter_discord_network_errors_total") >= 1
    assert sample(registry, "cryptomon_alerter_discord_request_seconds_count", status="error") >= 1
    assert metrics.last_post_at == 0


# --- consumer lag --------------------------------------------------------------------------------

class LagConsumer:
    """A consumer with positions, committed offsets and cached high watermarks."""

    def __init__(self, messages: list[tuple[int, int]], high: dict[int, int], committed: dict[int, int],
                 stop: threading.Event) -> None:
        self.messages = list(messages)   # (partition, offset)
        self.high, self.stored, self.stop = high, committed, stop
        self.positions: dict[int, int] = {}
        self.committed_asked: list[list[int]] = []
        self.commits: list[tuple[int, int]] = []

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        pass

    def poll(self, timeout: float) -> Any:
        if not self.messages:
            self.stop.set()
            return None
        partition, offset = self.messages.pop(0)
        self.positions[partition] = offset + 1
        return Message(partition, offset)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("signals.alerts", p) for p in sorted(self.high)]

    def position(self, parts: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001)) for tp in parts]

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.committed_asked.append([tp.partition for tp in parts])
        return [TopicPartition(tp.topic, tp.partition, self.stored.get(tp.partition, -1001)) for tp in parts]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "a scrape must not ask the brokers"
        return 0, self.high.get(tp.partition, -1001)

    def commit(self, message: Any, asynchronous: bool) -> None:
        self.commits.append((message.partition(), message.offset()))

    def pause(self, parts: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Message:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return "signals.alerts"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return json.dumps({**ANOMALY, "alert_id": f"a-{self._partition}-{self._offset}"}).encode()

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 0, -1


def test_consumer_lag_per_partition_while_consuming(monkeypatch) -> None:
    stop = threading.Event()
    # Partition 0: messages 10 and 11 handled, high watermark 15 -> 3 behind. Partition 1: nothing
    # consumed in this run, committed at 5, high watermark 7 -> 2 behind. Partition 2: never fetched.
    consumer = LagConsumer([(0, 10), (0, 11)], high={0: 15, 1: 7, 2: -1001}, committed={1: 5}, stop=stop)
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda conf: consumer)
    processor = AlertProcessor(None, SentIds(100), max_age_s=0)
    lag = ConsumerLag(interval_s=0.0)
    registry = CollectorRegistry()
    AlerterMetrics(registry, processor, None, lag)
    service.run_kafka(AlerterConfig.from_env({}), processor, stop, lag)

    assert consumer.commits == [(0, 10), (0, 11)]
    name = "cryptomon_alerter_consumer_lag_messages"
    assert sample(registry, name, topic="signals.alerts", partition="0") == 3
    assert sample(registry, name, topic="signals.alerts", partition="1") == 2
    assert sample(registry, name, topic="signals.alerts", partition="2") is None
    # The committed offset is asked once for the partitions without a position, then remembered,
    # also for partition 2, which has none.
    assert consumer.committed_asked == [[1, 2]]
    assert sample(registry, "cryptomon_alerter_alerts_total", outcome="logged") == 2


def test_consumer_lag_refresh_is_rate_limited_and_never_raises() -> None:
    now = [100.0]
    lag = ConsumerLag(interval_s=5.0, clock=lambda: now[0])
    consumer = LagConsumer([], high={0: 9}, committed={0: 4}, stop=threading.Event())
    lag.refresh(consumer)
    assert lag.partitions == {("signals.alerts", 0): 5}
    consumer.high[0] = 20
    now[0] = 104.0
    lag.refresh(consumer)
    assert lag.partitions == {("signals.alerts", 0): 5}  # not yet: within the interval
    now[0] = 105.0
    lag.refresh(consumer)
    assert lag.partitions == {("signals.alerts", 0): 16}

    class Closed:
        def assignment(self) -> list:
            raise RuntimeError("Consumer closed")

    now[0] = 200.0
    lag.refresh(Closed())  # keeps the last numbers, does not stop the alerter
    assert lag.partitions == {("signals.alerts", 0): 16}


def test_consumer_lag_asks_the_committed_offsets_again_after_a_rebalance() -> None:
    lag = ConsumerLag(interval_s=0.0)
    consumer = LagConsumer([], high={0: 9}, committed={0: 4}, stop=threading.Event())
    lag.refresh(consumer)
    lag.refresh(consumer)
    assert consumer.committed_asked == [[0]]
    consumer.high[1] = 3  # partition 1 assigned too; another member moved partition 0 meanwhile
    consumer.stored[0] = 8
    lag.refresh(consumer)
    assert consumer.committed_asked == [[0], [0, 1]]
    assert lag.partitions == {("signals.alerts", 0): 1}  # partition 1: no committed offset, no position


# --- configuration and the command line ---------------------------------------------------------

def test_alerter_config_reads_the_metrics_variables() -> None:
    assert not AlerterConfig.from_env({}).metrics.enabled
    config = AlerterConfig.from_env({"METRICS_PORT": "9110"})
    assert (config.metrics.port, config.metrics.address) == (9110, "127.0.0.1")
    assert "metrics=http://127.0.0.1:9110/metrics" in config.describe()


@pytest.mark.parametrize("env, named", [
    ({"METRICS_PORT": "nine"}, "METRICS_PORT"), ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
    ({"METRICS_PORT": "9110", "METRICS_ADDRESS": "my host"}, "METRICS_ADDRESS"),
])
def test_alerter_bad_metrics_values_are_config_errors(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"^{named}: "):
        AlerterConfig.from_env(env)


def alerter(env: dict[str, str]) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "KAFKA_", "ALERTER_", "METRICS_"))}
    clean.update(PYTHONPATH=str(REPO / "services"), ALERTER_MAX_ALERT_AGE_S="0", **env)
    return subprocess.Popen([sys.executable, "-m", "cryptomon.alerter", "--stdin"], env=clean, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_cli_serves_metrics_while_running() -> None:
    port = free_port()
    proc = alerter({"METRICS_PORT": str(port)})
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(ANOMALY) + "\n")
        proc.stdin.flush()
        text, deadline = "", time.monotonic() + 30
        while 'cryptomon_alerter_alerts_total{outcome="logged"} 1.0' not in text:
            assert time.monotonic() < deadline, text or "no answer from the endpoint"
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                continue
        assert "cryptomon_alerter_consumer_lag_messages" not in text  # --stdin: no consumer
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_bad_metrics_port_exit_2_one_line() -> None:
    proc = alerter({"METRICS_PORT": "-5"})
    _out, err = proc.communicate("", timeout=60)
    assert proc.returncode == 2
    [line] = err.strip().splitlines()
    assert "configuration error: METRICS_PORT: '-5' is not a port" in line


def test_cli_port_in_use_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = alerter({"METRICS_PORT": str(taken.getsockname()[1])})
        _out, err = proc.communicate("", timeout=60)
    assert proc.returncode == 2
    assert "configuration error: METRICS_ADDRESS/METRICS_PORT: cannot listen on 127.0.0.1" in err
    assert "Traceback" not in err
