"""The alerter end to end: real Kafka broker in, Discord stand-in (real wire protocol) out.

Checks: every alert delivered exactly once, in order per key, without ever exceeding the
webhook's rate limit (the stand-in enforces Discord's 5 requests / 2 s and counts violations),
through injected 429s and 5xx; a malformed alert is skipped and committed; offsets are only
committed after delivery; a deleted webhook stops the alerter after one request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import harness
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from cryptomon.replay.discord import FakeDiscord

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "itest-SECRET-token-0c1d2e3f"


class Alerter:
    """`python -m cryptomon.alerter` as a child process, stderr captured to a file."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.log_path = workdir / f"alerter-{uuid.uuid4().hex[:6]}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "KAFKA_", "ALERTER_"))}
        full_env.update(PYTHONPATH=str(REPO / "services"), **env)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "cryptomon.alerter"], env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._log.close()


@pytest.fixture
def fake():
    with FakeDiscord(token=TOKEN) as server:  # Discord's own budget: 5 requests per 2 s
        yield server


@pytest.fixture
def topics(kafka_bootstrap: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    alerts, arb = f"signals.alerts.{suffix}", f"signals.arbitrage.{suffix}"
    harness.create_topic(kafka_bootstrap, alerts, partitions=3)
    harness.create_topic(kafka_bootstrap, arb, partitions=3)
    return alerts, arb


def env_for(bootstrap: str, topics: tuple[str, str], group: str, **extra: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_ALERTS_TOPIC": topics[0],
            "KAFKA_ARBITRAGE_TOPIC": topics[1], "ALERTER_GROUP_ID": group, "ALERTER_MAX_BACKOFF_S": "2",
            # The fixtures' windows are from 2023/2024: without this they would be skipped as stale.
            "ALERTER_MAX_ALERT_AGE_S": "0", **extra}


def anomaly(key: str, n: int, **extra: object) -> dict:
    exchange, symbol = key.split(":")
    return {"alert_id": f"{key}#{n}", "type": "volume_anomaly", "exchange": exchange, "symbol": symbol,
            "window_start": 1700000000000 + n * 60000, "window_end": 1700000060000 + n * 60000,
            "trade_count": 100 + n, "volume": f"{30 + n}.5", "notional": "1523000.12", "vwap": "43260.1",
            "min_price": "43200", "max_price": "43300", "threshold": "25", "reason": "volume above threshold",
            **extra}


def arbitrage(asset: str, n: int) -> dict:
    return {"alert_id": f"{asset}#{n}", "type": "arbitrage", "asset": asset,
            "window_start": f"2024-01-01T00:{n:02d}:00Z", "window_end": f"2024-01-01T00:{n:02d}:10Z",
            "binance_price": "43250.1", "coinbase_price": "43320.5", "spread_usd": "70.4",
            "spread_bps": "16.3", "buy_exchange": "binance", "sell_exchange": "coinbase", "threshold_usd": "50"}


def produce(bootstrap: str, records: list[tuple[str, str, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for topic, key, value in records:
        p.produce(topic, key=key.encode(), value=value)
    assert p.flush(30) == 0


def posted_ids(fake: FakeDiscord) -> list[str]:
    # The footer carries the alert id ("cryptomon · alert <id>").
    return [m["embeds"][0]["footer"]["text"].rsplit(" ", 1)[-1] for m in fake.snapshot()]


def lag(bootstrap: str, group: str, topics: tuple[str, ...]) -> int:
    """Messages not yet committed by `group` across all partitions of `topics`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(t, p) for t in topics for p in c.list_topics(t, timeout=10).topics[t].partitions]
        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(parts, timeout=10)}
        total = 0
        for tp in parts:
            _, high = c.get_watermark_offsets(tp, timeout=10)
            done = committed[(tp.topic, tp.partition)]
            total += high - (max(done, 0))
        return total
    finally:
        c.close()


def wait_for(cond, timeout: float, what: str, proc: Alerter | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.proc.poll() is not None:
            break
        time.sleep(0.5)
    log = proc.output[-3000:] if proc else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def test_each_alert_posted_once_in_order_within_rate_limit(kafka_bootstrap, fake, topics, tmp_path):
    alerts_t, arb_t = topics
    anomaly_keys = ["binance:BTC-USDT", "coinbase:BTC-USD", "binance:ETH-USDT"]
    records: list[tuple[str, str, bytes]] = []
    expected: dict[str, list[str]] = defaultdict(list)
    for n in range(4):
        for key in anomaly_keys:
            a = anomaly(key, n)
            records.append((alerts_t, key, json.dumps(a).encode()))
            expected[key].append(a["alert_id"])
        for asset in ("BTC", "ETH"):
            a = arbitrage(asset, n)
            records.append((arb_t, asset, json.dumps(a).encode()))
            expected[asset].append(a["alert_id"])
        if n == 1:
            # A malformed value in the middle of a key's stream, and a producer re-emitting.
            records.append((alerts_t, "binance:BTC-USDT", b'{"alert_id": "broken", "type": '))
            records.append((alerts_t, "coinbase:BTC-USD", json.dumps(anomaly("coinbase:BTC-USD", 0)).encode()))
            records.append((arb_t, "BTC", json.dumps(arbitrage("BTC", 1)).encode()))
    # Far over every Discord limit: must still go out as one valid message.
    huge = anomaly("binance:BTC-USDT", 4, reason="x" * 10000, **{f"extra_{i}": "y" * 2000 for i in range(40)})
    records.append((alerts_t, "binance:BTC-USDT", json.dumps(huge).encode()))
    expected["binance:BTC-USDT"].append(huge["alert_id"])
    produce(kafka_bootstrap, records)
    total = sum(len(v) for v in expected.values())

    # Discord misbehaves at the start: a global 429 with retry_after, then two 5xx.
    fake.inject(429, count=1, retry_after=0.7)
    fake.inject(503, count=2)
    group = f"alerter-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state" / "sent-alert-ids"
    env = env_for(kafka_bootstrap, topics, group, DISCORD_WEBHOOK_URL=fake.webhook_url(),
                  ALERTER_STATE_FILE=str(state))
    alerter = Alerter(tmp_path, env)
    try:
        wait_for(lambda: len(fake.snapshot()) >= total, 120, f"{total} Discord messages", alerter)
        wait_for(lambda: lag(kafka_bootstrap, group, topics) == 0, 30, "all offsets committed", alerter)
    finally:
        rc = alerter.stop()
    assert rc == 0, alerter.output[-3000:]

    ids = posted_ids(fake)
    assert len(ids) == len(set(ids)) == total, "each alert exactly once"
    for key, want in expected.items():
        got = [i for i in ids if i.rsplit("#", 1)[0] == key]
        assert got == want, f"order for key {key}"
    stats = fake.stats_snapshot()
    assert stats.get("bucket_exceeded", 0) == 0, "the alerter exceeded the webhook rate limit"
    assert stats.get("retry_after_ignored", 0) == 0, "the alerter retried before retry_after"
    assert stats["rate_limited"] == 1 and stats["status_503"] == 2
    assert stats.get("status_400", 0) == 0, "a payload broke Discord's limits"
    out = alerter.output
    assert "skipping malformed alert at " + alerts_t in out
    assert out.count("already posted, dropped") == 2
    assert TOKEN not in out

    # Restart, same group: nothing is posted again. A new alert and a late re-emit arrive.
    produce(kafka_bootstrap, [
        (arb_t, "ETH", json.dumps(arbitrage("ETH", 9)).encode()),
        (alerts_t, "binance:ETH-USDT", json.dumps(anomaly("binance:ETH-USDT", 2)).encode()),
    ])
    again = Alerter(tmp_path, env)
    try:
        wait_for(lambda: lag(kafka_bootstrap, group, topics) == 0, 60, "restart caught up", again)
    finally:
        assert again.stop() == 0
    assert posted_ids(fake) == [*ids, "ETH#9"], "the re-emitted alert was dropped via the state file"

    # Even a brand-new group reading everything from the start posts nothing twice.
    fresh_group = f"alerter-{uuid.uuid4().hex[:6]}"
    fresh = Alerter(tmp_path, {**env, "ALERTER_GROUP_ID": fresh_group})
    try:
        wait_for(lambda: lag(kafka_bootstrap, fresh_group, topics) == 0, 60, "fresh group caught up", fresh)
    finally:
        assert fresh.stop() == 0
    assert len(fake.snapshot()) == total + 1
    assert fake.stats_snapshot().get("bucket_exceeded", 0) == 0


def test_unknown_webhook_stops_without_committing(kafka_bootstrap, fake, topics, tmp_path):
    alerts_t, _ = topics
    produce(kafka_bootstrap, [(alerts_t, "binance:BTC-USDT", json.dumps(anomaly("binance:BTC-USDT", n)).encode())
                              for n in range(3)])
    fake.delete_webhook("1")
    group = f"alerter-{uuid.uuid4().hex[:6]}"
    env = env_for(kafka_bootstrap, topics, group, DISCORD_WEBHOOK_URL=fake.webhook_url("1"))
    alerter = Alerter(tmp_path, env)
    try:
        rc = alerter.proc.wait(60)
    finally:
        alerter.stop()
    out = alerter.output
    assert rc == 78, out[-3000:]
    assert fake.stats_snapshot()["requests_total"] == 1, "one request to a dead webhook, no loop"
    assert out.count("webhook unusable") == 1 and "code 10015" in out
    assert TOKEN not in out
    assert lag(kafka_bootstrap, group, topics) == 3, "nothing committed: the alerts wait in Kafka"

    # With a working webhook, the same group delivers everything that waited.
    fixed = Alerter(tmp_path, {**env, "DISCORD_WEBHOOK_URL": fake.webhook_url("2")})
    try:
        wait_for(lambda: lag(kafka_bootstrap, group, topics) == 0, 60, "delivery after the fix", fixed)
    finally:
        assert fixed.stop() == 0
    assert posted_ids(fake) == [f"binance:BTC-USDT#{n}" for n in range(3)]
