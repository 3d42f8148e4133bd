"""The alert loop without Kafka or Discord: what is posted, what is skipped and how it is counted."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import confluent_kafka
import pytest
from cryptomon.alerter import service
from cryptomon.alerter.config import AlerterConfig, ConfigError
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


# --- defect 7: alerts older than ALERTER_MAX_ALERT_AGE_S are skipped, not posted ---------------

NOW_MS = 1_800_000_000_000


def fresh(alert_id: str, age_s: float, **extra: Any) -> bytes:
    end = NOW_MS - int(age_s * 1000)
    return json.dumps({**ANOMALY, "alert_id": alert_id, "window_start_ms": end - 10_000, "window_end_ms": end,
                       **extra}).encode()


def aged_processor(max_age_s: float = 600) -> tuple[AlertProcessor, FakeClient]:
    return processor(max_age_s=max_age_s, clock=lambda: NOW_MS / 1000)


def test_stale_alerts_are_logged_counted_and_not_posted(caplog) -> None:
    proc, client = aged_processor()
    with caplog.at_level(logging.INFO, logger="cryptomon.alerter"):
        assert proc.handle(fresh("old", 601), "signals.alerts[0]@5") is Outcome.STALE
        assert proc.handle(fresh("new", 599), "signals.alerts[0]@6") is Outcome.DELIVERED
    assert [p["embeds"][0]["footer"]["text"] for p in client.posted] == ["cryptomon · alert new"]
    assert proc.counts[Outcome.STALE] == 1 and proc.counts[Outcome.DELIVERED] == 1
    [stale_line] = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert "old" in stale_line and "signals.alerts[0]@5" in stale_line and "601" in stale_line
    # Not remembered as sent: a deliberate re-post with a fresher copy is still possible.
    assert "old" not in proc.sent


def test_event_time_is_the_window_end_iso_or_ms(caplog) -> None:
    proc, _ = aged_processor()
    iso_end = "2027-01-15T07:50:00.000Z"  # NOW_MS is 2027-01-15T08:00:00Z: ten minutes and a bit
    alert = {**ANOMALY, "window_end_ms": None, "window_start_ms": None, "window_end": iso_end}
    assert proc.handle(json.dumps(alert), "t") is Outcome.DELIVERED  # exactly 600 s: not older than
    proc2, _ = aged_processor(599)
    assert proc2.handle(json.dumps(alert), "t") is Outcome.STALE


def test_zero_disables_the_age_limit() -> None:
    proc, client = aged_processor(0)
    assert proc.handle(fresh("ancient", 86_400 * 30), "t") is Outcome.DELIVERED
    assert len(client.posted) == 1


def test_many_stale_alerts_give_a_few_lines_and_a_summary(caplog) -> None:
    proc, client = aged_processor()
    with caplog.at_level(logging.INFO, logger="cryptomon.alerter"):
        for i in range(50):
            assert proc.handle(fresh(f"old{i}", 3600 + i), f"signals.alerts[0]@{i}") is Outcome.STALE
        proc.handle(fresh("new", 1), "signals.alerts[0]@50")
    lines = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert len(lines) == service.STALE_LOG_EACH + 1
    assert f"{50 - service.STALE_LOG_EACH} more stale alerts" in lines[-1]
    assert proc.counts[Outcome.STALE] == 50 and len(client.posted) == 1


def test_kafka_timestamp_is_the_fallback_event_time(monkeypatch, caplog) -> None:
    proc, client = aged_processor()
    no_window = {k: v for k, v in ANOMALY.items() if not k.startswith("window")}
    messages = [
        FakeMessage("signals.alerts", 0, 1, json.dumps({**no_window, "alert_id": "k-old"}).encode(),
                    NOW_MS - 3_600_000),
        FakeMessage("signals.alerts", 0, 2, json.dumps({**no_window, "alert_id": "k-new"}).encode(), NOW_MS - 5000),
        FakeMessage("signals.alerts", 0, 3, json.dumps({**no_window, "alert_id": "k-none"}).encode(), None),
        # The alert's own time wins over the Kafka timestamp (a re-produced old alert).
        FakeMessage("signals.alerts", 0, 4, fresh("w-old", 7200), NOW_MS),
    ]
    with caplog.at_level(logging.INFO, logger="cryptomon.alerter"):
        consumer = run_kafka(messages, proc, monkeypatch)
    assert [p["embeds"][0]["footer"]["text"].rsplit(" ", 1)[-1] for p in client.posted] == ["k-new", "k-none"]
    assert proc.counts[Outcome.STALE] == 2
    assert len(consumer.committed) == 4  # skipped on purpose: committed like a delivered alert


@pytest.mark.parametrize("raw, expected", [(None, 600.0), ("0", 0.0), ("30", 30.0), ("86400", 86400.0)])
def test_max_alert_age_setting(raw: str | None, expected: float) -> None:
    env = {} if raw is None else {"ALERTER_MAX_ALERT_AGE_S": raw}
    assert AlerterConfig.from_env(env).max_alert_age_s == expected


@pytest.mark.parametrize("raw", ["-1", "ten", "1e3", "nan"])
def test_max_alert_age_setting_errors(raw: str) -> None:
    with pytest.raises(ConfigError, match="ALERTER_MAX_ALERT_AGE_S"):
        AlerterConfig.from_env({"ALERTER_MAX_ALERT_AGE_S": raw})
