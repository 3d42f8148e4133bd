"""The webhook client against the local Discord stand-in: limits, 429, 5xx, dead webhooks."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from cryptomon.alerter.config import Webhook
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.discord import (
    DiscordWebhookClient,
    Rejected,
    Stopped,
    WebhookDead,
    with_wait,
)
from cryptomon.alerter.service import AlertProcessor, Outcome
from cryptomon.replay.discord import FakeDiscord

TOKEN = "tok-SECRET-5f1e2d3c4b5a"


@pytest.fixture
def fake():
    # A short window keeps these tests quick; the integration test uses Discord's 5 per 2 s.
    with FakeDiscord(rate_limit=3, per=0.6, token=TOKEN) as server:
        yield server


def client_for(fake: FakeDiscord, webhook_id: str = "1", token: str = TOKEN, **kw) -> DiscordWebhookClient:
    kw.setdefault("base_backoff", 0.05)
    kw.setdefault("max_backoff", 0.2)
    return DiscordWebhookClient(Webhook(fake.webhook_url(webhook_id, token)), **kw)


def msg(i: int) -> dict:
    return {"content": f"message {i}"}


def test_wait_true_is_added_and_other_query_kept() -> None:
    assert with_wait("https://d/api/webhooks/1/t") == "https://d/api/webhooks/1/t?wait=true"
    assert with_wait("https://d/api/webhooks/1/t?thread_id=9&wait=false") == \
        "https://d/api/webhooks/1/t?thread_id=9&wait=true"


def test_headers_are_honoured_before_a_429(fake: FakeDiscord) -> None:
    client = client_for(fake)
    for i in range(10):
        assert client.post(msg(i)).message_id
    stats = fake.stats_snapshot()
    assert stats["accepted"] == 10
    assert stats.get("rate_limited", 0) == 0  # never hit the limit...
    assert client.stats["proactive_waits"] >= 2  # ...because it waited when Remaining hit 0
    assert [m["content"] for m in fake.snapshot()] == [f"message {i}" for i in range(10)]


def test_429_retry_after_is_waited_out(fake: FakeDiscord) -> None:
    client = client_for(fake)
    fake.inject(429, count=2, retry_after=0.3)
    assert client.post(msg(1)).attempts == 3
    stats = fake.stats_snapshot()
    assert stats["rate_limited"] == 2
    assert stats.get("retry_after_ignored", 0) == 0  # no request before retry_after elapsed
    assert len(fake.snapshot()) == 1


def test_5xx_is_retried_with_backoff(fake: FakeDiscord) -> None:
    client = client_for(fake)
    fake.inject(502, count=1)
    fake.inject(503, count=2)
    assert client.post(msg(1)).attempts == 4
    assert client.stats["server_errors"] == 3
    assert len(fake.snapshot()) == 1


def test_over_limit_payload_is_rejected_without_retry(fake: FakeDiscord) -> None:
    client = client_for(fake)
    with pytest.raises(Rejected) as err:
        client.post({"content": "x" * 2001})
    assert err.value.status == 400 and err.value.code == 50035
    assert fake.stats_snapshot()["requests_total"] == 1


@pytest.mark.parametrize("setup, status, code", [
    (lambda f: f.delete_webhook("1"), 404, 10015),
    (lambda f: f.inject(403), 403, 50001),
    (None, 401, 50027),
])
def test_dead_webhook_stops_posting(fake: FakeDiscord, setup, status: int, code: int) -> None:
    if setup:
        setup(fake)
        client = client_for(fake)
    else:
        client = client_for(fake, token="wrong-token-value")
    for _ in range(3):
        with pytest.raises(WebhookDead) as err:
            client.post(msg(1))
        assert (err.value.status, err.value.code) == (status, code)
    assert client.dead
    assert fake.stats_snapshot()["requests_total"] == 1  # one request, never a loop


def test_stop_interrupts_backoff(fake: FakeDiscord) -> None:
    stop = threading.Event()
    client = client_for(fake, stop=stop, base_backoff=30, max_backoff=30)
    fake.inject(500, count=100)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Stopped):
        client.post(msg(1))


def test_connection_errors_never_log_the_url(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    stop = threading.Event()
    client = DiscordWebhookClient(Webhook(f"http://127.0.0.1:{port}/api/webhooks/77/{TOKEN}"), stop,
                                  base_backoff=0.05, max_backoff=0.05)
    calls = []

    def on_wait() -> None:
        calls.append(1)
        if len(calls) > 0:
            stop.set()

    client.on_wait = on_wait
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Stopped):
        client.post(msg(1))
    assert client.stats["network_errors"] >= 1
    assert "ConnectionError" in caplog.text
    assert TOKEN not in caplog.text and "/api/webhooks/77" not in caplog.text


ARB_FIELDS = '"asset":"BTC","buy_exchange":"binance","buy_price":"1","sell_exchange":"okx","sell_price":"2"'
ANOMALY_FIELDS = '"exchange":"binance","symbol":"BTC-USDT","volume":"30"'


def test_processor_retries_once_as_text_then_skips(fake: FakeDiscord) -> None:
    client = client_for(fake)
    proc = AlertProcessor(client, SentIds())
    # Force Discord to reject the embed; the plain-text fallback then goes through.
    fake.inject(400, count=1)
    assert proc.handle(b'{"alert_id":"r1","type":"arbitrage",%s}' % ARB_FIELDS.encode(), "t") is Outcome.DELIVERED
    assert fake.snapshot()[0]["content"].startswith("cryptomon alert (arbitrage)")
    fake.inject(400, count=2)
    assert proc.handle(b'{"alert_id":"r2","type":"arbitrage",%s}' % ARB_FIELDS.encode(), "t") is Outcome.REJECTED
    assert proc.handle(b'{"alert_id":"r3","type":"arbitrage",%s}' % ARB_FIELDS.encode(), "t") is Outcome.DELIVERED


def test_processor_skips_bad_input_and_duplicates(fake: FakeDiscord) -> None:
    proc = AlertProcessor(client_for(fake), SentIds())
    assert proc.handle(b"{not json", "t") is Outcome.MALFORMED
    assert proc.handle(b"[1,2]", "t") is Outcome.MALFORMED
    assert proc.handle(b"\xff\xfe", "t") is Outcome.MALFORMED
    assert proc.handle(None, "t") is Outcome.MALFORMED
    assert proc.handle(b'{"alert_id":"d0","type":"volume_anomaly"}', "t") is Outcome.MALFORMED  # no volume
    assert proc.handle(b'{"alert_id":"d1","type":"volume_anomaly",%s}' % ANOMALY_FIELDS.encode(),
                       "t") is Outcome.DELIVERED
    assert proc.handle(b'{"alert_id":"d1","type":"volume_anomaly","extra":1}', "t") is Outcome.MALFORMED
    assert proc.handle(b'{"alert_id":"d1","type":"volume_anomaly","extra":1,%s}' % ANOMALY_FIELDS.encode(),
                       "t") is Outcome.DUPLICATE
    # Without alert_id the content hash still catches exact repeats.
    assert proc.handle(b'{"type":"x","v":1}', "t") is Outcome.DELIVERED
    assert proc.handle(b'{"v":1,"type":"x"}', "t") is Outcome.DUPLICATE
    assert len(fake.snapshot()) == 2


def test_log_only_mode_posts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    proc = AlertProcessor(None, SentIds())
    alert = b'{"alert_id":"l1","type":"volume_anomaly","symbol":"ETH-USD","exchange":"kraken","volume":"9"}'
    assert proc.handle(alert, "t") is Outcome.LOGGED
    assert "log-only" in caplog.text and "ETH-USD" in caplog.text
