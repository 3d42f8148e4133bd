"""The alert loop without Kafka or Discord: what is posted, what is skipped and how it is counted."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import confluent_kafka
import pytest
from cryptomon.alerter import service
from cryptomon.alerter.config import AlerterConfig
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.discord import Delivered
from cryptomon.alerter.service import AlertProcessor, Outcome

ANOMALY = {"alert_id": "anomaly:coinbase:BTC-USD:1700000100000", "alert_type": "volume_anomaly",
           "schema_version": 1, "exchange": "coinbase", "symbol": "BTC-USD", "volume": "20",
           "volume_threshold": "10", "window_start_ms": 1700000100000, "window_end_ms": 1700000110000}
ARBITRAGE = {"alert_id": "arbitrage:BTC:1700000000000", "alert_type": "arbitrage", "schema_version": 2,
             "asset": "BTC", "buy_exchange": "kraken", "buy_price": "43000", "sell_exchange": "okx",
             "sell_price": "43300", "spread_usd": "300", "spread_bps": "69.77", "net_spread_usd": "84.7",
             "net_spread_bps": "19.7", "window_end_ms": 1700000010000}
ARBITRAGE_V1 = {"alert_id": "b-1", "type": "arbitrage", "asset": "BTC", "buy_exchange": "binance",
                "sell_exchange": "coinbase", "binance_price": "43250.1", "coinbase_price": "43320.5",
                "spread_usd": "70.4"}


class FakeClient:
    """Stands in for DiscordWebhookClient: records every payload."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.on_wait = None

    def post(self, payload: dict[str, Any]) -> Delivered:
        self.posted.append(payload)
        return Delivered(message_id=str(len(self.posted)), attempts=1)

    def scrub(self, message: str) -> str:
        return message


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes, timestamp_ms: int | None) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value
        self._timestamp = (1, timestamp_ms) if timestamp_ms is not None else (0, -1)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


class FakeConsumer:
    """Hands out the queued messages, then sets `stop`; records commits."""

    def __init__(self, messages: list[FakeMessage], stop: threading.Event) -> None:
        self.messages, self.stop = list(messages), stop
        self.committed: list[tuple[str, int, int]] = []

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        self.topics = topics

    def poll(self, timeout: float) -> FakeMessage | None:
        if self.messages:
            return self.messages.pop(0)
        self.stop.set()
        return None

    def commit(self, message: FakeMessage, asynchronous: bool) -> None:
        self.committed.append((message.topic(), message.partition(), message.offset()))

    def assignment(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def processor(**kwargs: Any) -> tuple[AlertProcessor, FakeClient]:
    client = FakeClient()
    return AlertProcessor(client, SentIds(100), **kwargs), client  # type: ignore[arg-type]


def run_kafka(messages: list[FakeMessage], proc: AlertProcessor, monkeypatch: pytest.MonkeyPatch,
              env: dict[str, str] | None = None) -> FakeConsumer:
    stop = threading.Event()
    consumer = FakeConsumer(messages, stop)
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda conf: consumer)
    service.run_kafka(AlerterConfig.from_env(env or {}), proc, stop)
    return consumer


# --- defect 1: alerts lacking the fields their type needs --------------------------------------

@pytest.mark.parametrize("alert, needs", [
    ({"alert_type": "volume_anomaly", "schema_version": 1}, "exchange, symbol, volume"),
    ({**ANOMALY, "volume": None}, "volume"),
    ({**ANOMALY, "volume": "lots"}, "volume"),
    ({**ANOMALY, "symbol": " "}, "symbol"),
    ({k: v for k, v in ARBITRAGE.items() if not k.endswith("_price")}, "buy_price, sell_price"),
    ({**ARBITRAGE, "sell_price": "NaN"}, "sell_price"),
    ({k: v for k, v in ARBITRAGE.items() if k != "net_spread_usd"}, "net_spread_usd"),
    ({k: v for k, v in ARBITRAGE_V1.items() if k != "coinbase_price"}, "sell_price"),
    ({"type": "arbitrage", "alert_id": "x"}, "asset, buy_exchange, sell_exchange, buy_price, sell_price"),
])
def test_alert_missing_its_fields_is_malformed_logged_once_never_posted(alert, needs, caplog) -> None:
    proc, client = processor()
    with caplog.at_level(logging.INFO, logger="cryptomon.alerter"):
        assert proc.handle(json.dumps(alert), "signals.alerts[2]@17") is Outcome.MALFORMED
    assert client.posted == []
    assert proc.counts[Outcome.MALFORMED] == 1
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "signals.alerts[2]@17" in record.getMessage() and f"needs {needs} " in record.getMessage()


def test_complete_alerts_of_both_schemas_are_posted() -> None:
    proc, client = processor()
    for alert in (ANOMALY, ARBITRAGE, ARBITRAGE_V1, {"alert_id": "u", "type": "funding_spike"}):
        assert proc.handle(json.dumps(alert), "stdin") is Outcome.DELIVERED
    assert len(client.posted) == 4


def test_malformed_alerts_from_kafka_are_counted_committed_and_name_their_position(monkeypatch, caplog) -> None:
    proc, client = processor()
    messages = [
        FakeMessage("signals.alerts", 0, 41, b'{"alert_type":"volume_anomaly","schema_version":1}', None),
        FakeMessage("signals.arbitrage", 1, 7, b"{not json", None),
        FakeMessage("signals.alerts", 0, 42, json.dumps({**ANOMALY, "window_end_ms": None}).encode(), None),
    ]
    with caplog.at_level(logging.ERROR, logger="cryptomon.alerter"):
        consumer = run_kafka(messages, proc, monkeypatch)
    assert proc.counts[Outcome.MALFORMED] == 2 and proc.counts[Outcome.DELIVERED] == 1
    assert len(client.posted) == 1
    assert consumer.committed == [("signals.alerts", 0, 41), ("signals.arbitrage", 1, 7), ("signals.alerts", 0, 42)]
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 2 and "signals.alerts[0]@41" in errors[0] and "signals.arbitrage[1]@7" in errors[1]
