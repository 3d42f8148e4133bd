"""The producer's /metrics without Kafka: frames through real adapters, a fake Kafka sink, the
collector read through a registry and over HTTP, librdkafka statistics documents, config errors."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptomon.kafka_settings import ConfigError
from cryptomon.metrics import MetricsSettings, new_registry, serve
from cryptomon.producer import cli
from cryptomon.producer.base import Stats
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.coinbase import CoinbaseAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.feed import Feed
from cryptomon.producer.metrics import STATS_COUNTERS, KafkaLatency, ProducerCollector
from cryptomon.producer.symbols import Market
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
PAYLOADS = REPO / "tests" / "fixtures" / "exchange_payloads"
BN = json.loads((PAYLOADS / "binance.json").read_text())
CB = json.loads((PAYLOADS / "coinbase.json").read_text())
RECV = 1_700_000_000_123


class FakeKafkaSink:
    """The KafkaSink counters the collector reads; emit() only queues."""

    def __init__(self) -> None:
        self.failed = 0
        self.buffer_full = 0
        self.queued: list = []

    def emit(self, trade) -> None:
        self.queued.append(trade)

    def queue_length(self) -> int:
        return len(self.queued)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def frame(obj: object) -> bytes:
    return json.dumps(obj).encode()


def binance_trade(tid: int, symbol: str = "BTCUSDT") -> bytes:
    data = {**BN["combined_trade"]["data"], "t": tid, "s": symbol}
    return frame({"stream": f"{symbol.lower()}@trade", "data": data})


def feed_frames(adapter, frames: list[bytes], sink: FakeKafkaSink) -> None:
    for f in frames:
        for trade in adapter.handle(f, RECV):
            sink.emit(trade)


def registry_for(collector: ProducerCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def value(registry: CollectorRegistry, name: str, exchange: str = "binance", **labels: str) -> float | None:
    return registry.get_sample_value(name, {"exchange": exchange, **labels})


def test_every_stats_field_is_a_metric():
    assert set(STATS_COUNTERS) == set(Stats.FIELDS)
    names = [name for name, _doc in STATS_COUNTERS.values()]
    assert len(names) == len(set(names))


def test_binance_frames_show_up_as_counters_and_the_sink_as_kafka_metrics():
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BTCUSDT,ETHUSDT"}))
    sink = FakeKafkaSink()
    frames = [binance_trade(1), binance_trade(2), binance_trade(1, "ETHUSDT"),
              binance_trade(2),                 # replayed: a duplicate
              b"not json", frame({"stream": "x", "data": {"e": "trade", "s": "BTCUSDT"}}),  # malformed twice
              binance_trade(5, "DOGEUSDT")]     # not subscribed: unknown
    feed_frames(adapter, frames, sink)
    sink.failed, sink.buffer_full = 2, 1
    registry = registry_for(ProducerCollector("binance", adapter, sink, clock=Clock()))

    assert value(registry, "cryptomon_producer_trades_total") == 3
    assert value(registry, "cryptomon_producer_duplicates_dropped_total") == 1
    assert value(registry, "cryptomon_producer_malformed_frames_total") == 2
    assert value(registry, "cryptomon_producer_unknown_messages_total") == 1
    assert value(registry, "cryptomon_producer_reconnects_total") == 0
    assert value(registry, "cryptomon_producer_kafka_delivery_errors_total") == 2
    assert value(registry, "cryptomon_producer_kafka_buffer_full_total") == 1
    assert value(registry, "cryptomon_producer_kafka_queue_messages") == 3
    # One connection of two markets, not connected (no session ran).
    assert value(registry, "cryptomon_producer_connections") == 0
    assert value(registry, "cryptomon_producer_connections_planned") == 1
    assert value(registry, "cryptomon_producer_markets") == 2
    # No latency statistics asked for: no summary.
    assert value(registry, "cryptomon_producer_kafka_latency_seconds_count", stage="queue", broker="1") is None


def test_counters_are_read_at_scrape_time_not_copied():
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BTCUSDT"}))
    registry = registry_for(ProducerCollector("binance", adapter, FakeKafkaSink(), clock=Clock()))
    assert value(registry, "cryptomon_producer_trades_total") == 0
    feed_frames(adapter, [binance_trade(i) for i in range(1, 6)], FakeKafkaSink())
    assert value(registry, "cryptomon_producer_trades_total") == 5


def test_coinbase_gaps_and_missed_messages():
    adapter = CoinbaseAdapter(ProducerConfig.from_env("coinbase", {"COINBASE_PRODUCTS": "BTC-USD"}))
    feed_frames(adapter, [frame(CB["match"]),                                      # sequence 50
                          frame({**CB["match"], "trade_id": 14, "sequence": 54}),  # 51-53 missed
                          frame({**CB["match"], "trade_id": 12, "sequence": 52})], FakeKafkaSink())
    registry = registry_for(ProducerCollector("coinbase", adapter, None, clock=Clock()))
    assert value(registry, "cryptomon_producer_sequence_gaps_total", "coinbase") == 1
    assert value(registry, "cryptomon_producer_missed_trades_total", "coinbase") == 3
    assert value(registry, "cryptomon_producer_out_of_order_total", "coinbase") == 1
    # No Kafka sink (--stdout): no Kafka metrics.
    assert value(registry, "cryptomon_producer_kafka_queue_messages", "coinbase") is None


def test_last_trade_age_counts_from_the_last_trade_seen():
    clock = Clock(1000.0)
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BTCUSDT"}))
    adapter._last_trade_at = 1000.0  # started "now" on the fake clock
    registry = registry_for(ProducerCollector("binance", adapter, None, clock=clock))
    clock.now = 1012.5
    assert value(registry, "cryptomon_producer_last_trade_age_seconds") == 12.5  # no trade yet: since start
    feed_frames(adapter, [binance_trade(1)], FakeKafkaSink())
    adapter.note_trades(1013.0)  # the feed's tick saw the count grow
    clock.now = 1020.0
    assert value(registry, "cryptomon_producer_last_trade_age_seconds") == 7.0
    feed_frames(adapter, [binance_trade(2)], FakeKafkaSink())
    assert value(registry, "cryptomon_producer_last_trade_age_seconds") == 0.0  # the scrape notes it too
    clock.now = 1030.0
    assert value(registry, "cryptomon_producer_last_trade_age_seconds") == 10.0


def test_a_feed_sums_its_connections():
    config = ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BTCUSDT,ETHUSDT,BNBUSDT"})
    feed = Feed(config, BinanceAdapter)
    markets = [Market("BTCUSDT", "BTC-USDT"), Market("ETHUSDT", "ETH-USDT"), Market("BNBUSDT", "BNB-USDT")]
    feed.resolved = markets
    # Two shards as the feed would start them (without threads or sockets).
    for part in (markets[:2], markets[2:]):
        feed.shards.append(BinanceAdapter(config, part, dedupe=feed.dedupe))
    feed.shards[0].connected.set()
    sink = FakeKafkaSink()
    feed_frames(feed.shards[0], [binance_trade(1), binance_trade(1, "ETHUSDT")], sink)
    feed_frames(feed.shards[1], [binance_trade(7, "BNBUSDT"), binance_trade(7, "BNBUSDT")], sink)
    feed.shards[1].stats.reconnects = 4
    registry = registry_for(ProducerCollector("binance", feed, sink, clock=Clock()))
    assert value(registry, "cryptomon_producer_trades_total") == 3
    assert value(registry, "cryptomon_producer_duplicates_dropped_total") == 1
    assert value(registry, "cryptomon_producer_reconnects_total") == 4
    assert value(registry, "cryptomon_producer_connections") == 1
    assert value(registry, "cryptomon_producer_connections_planned") == 2
    assert value(registry, "cryptomon_producer_markets") == 3


def stats_document(rtt_cnt: int = 4) -> str:
    """Shaped like librdkafka's statistics JSON (STATISTICS.md): windows in microseconds."""

    def window(cnt: int, p50: int, p90: int, p99: int) -> dict:
        return {"min": p50 // 2, "max": p99 * 2, "avg": p50, "sum": cnt * p50, "cnt": cnt, "stddev": 1,
                "p50": p50, "p75": p50, "p90": p90, "p95": p90, "p99": p99, "p99_99": p99, "outofrange": 0,
                "hdrsize": 11376}

    broker = {"name": "127.0.0.1:9092/1", "nodeid": 1, "state": "UP",
              "int_latency": window(1000, 21_000, 24_000, 30_000),
              "outbuf_latency": window(rtt_cnt, 40, 90, 200),
              "rtt": window(rtt_cnt, 3_000, 5_000, 9_000)}
    bootstrap = {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1, "state": "UP",
                 "int_latency": window(0, 0, 0, 0), "outbuf_latency": window(0, 0, 0, 0), "rtt": window(0, 0, 0, 0)}
    return json.dumps({"name": "rdkafka#producer-1", "type": "producer", "msg_cnt": 12,
                       "brokers": {broker["name"]: broker, bootstrap["name"]: bootstrap}})


def test_kafka_latency_from_librdkafka_statistics():
    latency = KafkaLatency()
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BTCUSDT"}))
    registry = registry_for(ProducerCollector("binance", adapter, FakeKafkaSink(), latency, clock=Clock()))
    name = "cryptomon_producer_kafka_latency_seconds"
    latency.update(stats_document())
    assert value(registry, name, stage="broker", broker="1", quantile="0.5") == pytest.approx(0.003)
    assert value(registry, name, stage="send", broker="1", quantile="0.9") == pytest.approx(0.00009)
    latency.update(stats_document(rtt_cnt=0))  # an idle interval: no requests, no quantiles
    assert value(registry, name + "_count", stage="queue", broker="1") == 2000
    assert value(registry, name + "_sum", stage="queue", broker="1") == pytest.approx(42.0)
    assert value(registry, name, stage="queue", broker="1", quantile="0.99") == pytest.approx(0.030)
    assert value(registry, name + "_count", stage="broker", broker="1") == 4
    assert math.isnan(value(registry, name, stage="broker", broker="1", quantile="0.5"))  # the idle interval's
    assert value(registry, name + "_count", stage="send", broker="1") == 4
    # The bootstrap entry is no broker: not exposed.
    assert value(registry, name + "_count", stage="queue", broker="-1") is None


def test_kafka_latency_never_raises_on_a_bad_document():
    latency = KafkaLatency()
    for bad in ("not json", "[]", json.dumps({"brokers": {"b": {"nodeid": 1, "rtt": {"cnt": "x"}}}})):
        latency.update(bad)  # an exception here would end the sink's poller thread
    assert latency.bad_documents == 3 and latency.count == {}


def test_endpoint_serves_the_metrics_over_http():
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BTCUSDT"}))
    feed_frames(adapter, [binance_trade(1), binance_trade(2)], FakeKafkaSink())
    registry = new_registry()
    registry.register(ProducerCollector("binance", adapter, FakeKafkaSink()))
    server = serve(registry, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.close()
    assert 'cryptomon_producer_trades_total{exchange="binance"} 2.0' in text
    assert "# TYPE cryptomon_producer_last_trade_age_seconds gauge" in text
    assert "process_cpu_seconds_total" in text  # the standard process metrics come along


def test_port_in_use_is_a_config_error_naming_the_variables():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"METRICS_ADDRESS/METRICS_PORT: cannot listen on 127.0.0.1:{port}"):
            serve(CollectorRegistry(), "127.0.0.1", port)


# --- configuration -----------------------------------------------------------------------------

def test_metrics_are_off_by_default_and_parsed_into_the_config():
    assert ProducerConfig.from_env("binance", {}).metrics == MetricsSettings(0, "127.0.0.1")
    assert not ProducerConfig.from_env("binance", {"METRICS_PORT": "0"}).metrics.enabled
    config = ProducerConfig.from_env("binance", {"METRICS_PORT": "9108", "METRICS_ADDRESS": "0.0.0.0"})
    assert config.metrics == MetricsSettings(9108, "0.0.0.0") and config.metrics.enabled
    ipv6 = ProducerConfig.from_env("mock", {"METRICS_PORT": "9109", "METRICS_ADDRESS": "[::1]"})
    assert ipv6.metrics.address == "::1"


@pytest.mark.parametrize("variable, raw", [
    ("METRICS_PORT", "abc"), ("METRICS_PORT", "65536"), ("METRICS_PORT", "-1"), ("METRICS_PORT", "91.08"),
    ("METRICS_ADDRESS", "not an address"), ("METRICS_ADDRESS", "300.1.1.1:80"),
])
def test_bad_metrics_values_are_config_errors(variable, raw):
    with pytest.raises(ConfigError, match=f"^{variable}: ") as err:
        ProducerConfig.from_env("binance", {"METRICS_PORT": "9108", variable: raw})
    assert repr(raw) in str(err.value)


def test_cli_bad_metrics_port_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRYPTOMON_ENV_FILE", raising=False)
    monkeypatch.setenv("METRICS_PORT", "http")
    assert cli.main(["mock", "--stdout"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cryptomon-producer: configuration error: METRICS_PORT: 'http' is not a port (1-65535); "
                   "0 or unset: no metrics endpoint"]


@pytest.mark.timeout(30)
def test_cli_port_in_use_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRYPTOMON_ENV_FILE", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("METRICS_PORT", str(taken.getsockname()[1]))
        assert cli.main(["mock", "--stdout"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on 127.0.0.1" in err[0], err


@pytest.mark.timeout(60)
def test_cli_serves_metrics_while_producing(tmp_path):
    """`cryptomon-producer mock --stdout` with METRICS_PORT: the endpoint counts what it prints."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOCK_", "METRICS_", "KAFKA_", "CRYPTOMON_"))}
    env.update(PYTHONPATH=str(REPO / "services"), METRICS_PORT=str(port), MOCK_RATE="50",
               MOCK_EXCHANGES="binance", MOCK_SYMBOLS="BTC-USDT")
    proc = subprocess.Popen([sys.executable, "-m", "cryptomon.producer", "mock", "--stdout"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        trades, text, deadline = 0.0, "", time.monotonic() + 30
        while trades < 20:
            assert time.monotonic() < deadline, text or "no answer from the endpoint"
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                continue
            found = re.search(r'^cryptomon_producer_trades_total\{exchange="mock"\} (\S+)$', text, re.MULTILINE)
            trades = float(found.group(1)) if found else 0.0
        age = re.search(r'^cryptomon_producer_last_trade_age_seconds\{exchange="mock"\} (\S+)$', text, re.MULTILINE)
        assert age and float(age.group(1)) < 1.0  # 50 rounds a second
        assert "cryptomon_producer_kafka_queue_messages" not in text  # --stdout: no Kafka
        assert "cryptomon_producer_connections{" not in text  # the mock has no connections
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
