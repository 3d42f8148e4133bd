"""The alerter loop: alert JSON in (Kafka or stdin), Discord message out, once per alert_id.

Delivery design:
- One consumer, one message at a time: order per partition (so per key) is kept, and the offset
  of a message is committed synchronously only after Discord accepted it (or after it was
  deliberately skipped: malformed JSON, an alert lacking the fields its type needs, a payload
  Discord rejects, a duplicate).
- Duplicates by `alert_id` are dropped through `SentIds`: recent ids in memory (covers Kafka
  redeliveries after a rebalance or a failed commit, and producers that emit twice) and, with a
  state file, across restarts (covers a crash between Discord's answer and the commit).
- While Discord is slow (5xx backoff, long 429), the consumer's partitions are paused and it
  keeps polling, so the group does not evict it for exceeding max.poll.interval.ms.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cryptomon.alerter import formatting
from cryptomon.alerter.config import AlerterConfig
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.discord import DiscordWebhookClient, Rejected
from cryptomon.alerter.formatting import build_payload, fallback_payload, summary_line
from cryptomon.kafka_settings import listener_mismatch
from cryptomon.logging_setup import LogThrottle

if TYPE_CHECKING:
    from cryptomon.alerter.metrics import ConsumerLag

log = logging.getLogger("cryptomon.alerter")


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    LOGGED = "logged"  # log-only mode
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    REJECTED = "rejected"
    STALE = "stale"  # older than the configured age: history, not news


# Stale alerts in a row logged one line each; the rest of the run is summed up in one line.
STALE_LOG_EACH = 5
# librdkafka repeats connection errors every few seconds: one line a minute per error is enough.
KAFKA_ERROR_LOG_EVERY = 60.0


class AlertProcessor:
    """Turns one raw alert into at most one Discord message; never raises for a bad alert."""

    def __init__(self, client: DiscordWebhookClient | None, sent: SentIds, username: str = "cryptomon",
                 max_age_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.client, self.sent, self.username = client, sent, username
        self.max_age_s, self.clock = max_age_s, clock
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._stale_run = 0  # stale alerts since the last other outcome
        self._stale_unlogged: list[str] = []  # origins of those not logged one by one

    def handle(self, raw: bytes | str | None, origin: str, kafka_ts_ms: int | None = None) -> Outcome:
        """`kafka_ts_ms`: the record's timestamp, the event time of an alert without its own."""
        outcome = self._handle(raw, origin, kafka_ts_ms)
        self.counts[outcome] += 1
        if outcome is not Outcome.STALE:
            self.flush_stale()
        return outcome

    def flush_stale(self) -> None:
        """One summary line for the stale alerts not logged individually (end of a backlog)."""
        if self._stale_unlogged:
            log.warning("skipped %d more stale alerts (older than %gs, ALERTER_MAX_ALERT_AGE_S) from %s to %s",
                        len(self._stale_unlogged), self.max_age_s, self._stale_unlogged[0],
                        self._stale_unlogged[-1])
        self._stale_run, self._stale_unlogged = 0, []

    def _age_s(self, alert: dict[str, Any], kafka_ts_ms: int | None) -> float | None:
        when = formatting.event_time(alert)
        if when is not None:
            return self.clock() - when.timestamp()
        if kafka_ts_ms is not None and kafka_ts_ms > 0:
            return self.clock() - kafka_ts_ms / 1000
        return None

    def _is_stale(self, alert: dict[str, Any], origin: str, kafka_ts_ms: int | None) -> bool:
        if self.max_age_s <= 0:
            return False
        age = self._age_s(alert, kafka_ts_ms)
        if age is None or age <= self.max_age_s:
            return False
        self._stale_run += 1
        if self._stale_run <= STALE_LOG_EACH:
            log.warning("skipping stale alert %s at %s: its window ended %.0fs ago (limit %gs, "
                        "ALERTER_MAX_ALERT_AGE_S)", str(alert.get("alert_id"))[:120], origin, age, self.max_age_s)
        else:
            self._stale_unlogged.append(origin)
            if len(self._stale_unlogged) >= 1000:  # a long backlog still shows progress
                self.flush_stale()
                self._stale_run = STALE_LOG_EACH
        return True

    def _handle(self, raw: bytes | str | None, origin: str, kafka_ts_ms: int | None) -> Outcome:
        try:
            alert = json.loads(raw or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            preview = (raw[:120] if raw else b"").decode("utf-8", "replace") if isinstance(raw, bytes | None) \
                else raw[:120]
            log.error("skipping malformed alert at %s: %s (starts %r)", origin, exc, preview)
            return Outcome.MALFORMED
        if not isinstance(alert, dict):
            log.error("skipping malformed alert at %s: expected a JSON object, got %s", origin, type(alert).__name__)
            return Outcome.MALFORMED
        missing = formatting.missing_fields(alert)
        if missing:
            # Counted with the other malformed messages; its offset is committed like theirs.
            log.error("skipping malformed alert at %s: a %s alert needs %s (id %s)", origin,
                      formatting.alert_kind(alert), ", ".join(missing), str(alert.get("alert_id"))[:120])
            return Outcome.MALFORMED
        if self._is_stale(alert, origin, kafka_ts_ms):
            return Outcome.STALE
        alert_id = _alert_id(alert, origin)
        if alert_id in self.sent:
            log.info("duplicate alert %s at %s: already posted, dropped", alert_id, origin)
            return Outcome.DUPLICATE
        try:
            payload = build_payload(alert, self.username)
        except Exception as exc:  # noqa: BLE001 - one odd alert must not stop the service
            log.error("cannot format alert %s at %s (%s: %s); sending it as plain text", alert_id, origin,
                      type(exc).__name__, exc)
            payload = fallback_payload(alert, self.username)
        if self.client is None:
            log.info("ALERT (log-only, no webhook) %s: %s", alert_id, summary_line(alert))
            self.sent.add(alert_id)
            return Outcome.LOGGED
        try:
            delivered = self.client.post(payload)
        except Rejected as exc:
            log.error("Discord rejected alert %s (%s); retrying once as plain text", alert_id, exc)
            try:
                delivered = self.client.post(fallback_payload(alert, self.username))
            except Rejected as exc2:
                log.error("Discord rejected alert %s again (%s): skipped", alert_id, exc2)
                return Outcome.REJECTED
        self.sent.add(alert_id)
        log.info("posted alert %s (%s) from %s as message %s", alert_id, formatting.alert_kind(alert), origin,
                 delivered.message_id)
        return Outcome.DELIVERED


def _alert_id(alert: dict[str, Any], origin: str) -> str:
    raw = alert.get("alert_id")
    if raw is None or str(raw).strip() == "":
        # No id: a content hash still drops exact repeats.
        digest = hashlib.sha256(json.dumps(alert, sort_keys=True, default=str).encode()).hexdigest()[:24]
        log.warning("alert at %s has no alert_id; using content hash %s", origin, digest)
        return f"sha256:{digest}"
    return " ".join(str(raw).split())  # single line, so the state file stays one id per line


def run_stdin(processor: AlertProcessor, lines: Iterable[str], stop: threading.Event) -> None:
    """--stdin: one alert per JSON line; blank lines ignored."""
    for n, line in enumerate(lines, 1):
        if stop.is_set():
            return
        if line.strip():
            processor.handle(line.strip(), f"stdin line {n}")
    processor.flush_stale()


class _KeepAlive:
    """Pauses the assignment and keeps polling while one message waits for Discord."""

    def __init__(self, consumer: Any, lag: ConsumerLag | None = None) -> None:
        self.consumer = consumer
        self.lag = lag
        self.paused: list[Any] = []

    def __call__(self) -> None:
        if self.lag is not None:
            self.lag.refresh(self.consumer)  # the backlog grows while Discord makes us wait
        if not self.paused:
            self.paused = list(self.consumer.assignment())
            if self.paused:
                self.consumer.pause(self.paused)
        msg = self.consumer.poll(0)
        if msg is not None and not msg.error():
            # A message fetched before the pause: rewind so it is delivered again later.
            from confluent_kafka import TopicPartition

            self.consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))

    def resume(self) -> None:
        if self.paused:
            try:
                self.consumer.resume(self.paused)
            except Exception as exc:  # noqa: BLE001 - partitions may have been revoked meanwhile
                log.debug("resume after wait: %s", exc)
            self.paused = []


def run_kafka(config: AlerterConfig, processor: AlertProcessor, stop: threading.Event,
              lag: ConsumerLag | None = None) -> None:
    """`lag`: refreshed from this thread (the consumer's position is only meaningful here)."""
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException

    # Keys: "cb:..." for error_cb, "msg:<code>" for errors handed out as messages.
    error_log = LogThrottle(KAFKA_ERROR_LOG_EVERY)

    def on_error(err: Any) -> None:
        mismatch = listener_mismatch(config.kafka, err.str())
        if mismatch is not None:
            if error_log.should_log("cb:listener"):
                log.error("%s", mismatch)
        elif error_log.should_log(f"cb:{err.code()}"):
            log.warning("Kafka: %s", err.str())

    consumer = Consumer({
        **config.kafka.client_config(),
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": config.offset_reset,
        # Flink's exactly-once sinks write in transactions: never show aborted alerts.
        "isolation.level": "read_committed",
        "client.id": "cryptomon-alerter",
        "error_cb": on_error,
    })
    keepalive = _KeepAlive(consumer, lag)
    if processor.client is not None:
        processor.client.on_wait = keepalive
    consumer.subscribe(config.topics, on_assign=lambda c, parts: log.info(
        "assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in parts) or "nothing"))
    log.info("consuming %s as group %s", ", ".join(config.topics), config.group_id)
    try:
        while not stop.is_set():
            msg = consumer.poll(1.0)
            if lag is not None:
                lag.refresh(consumer)
            if msg is None:
                processor.flush_stale()  # caught up: sum up the backlog of stale alerts now
                continue
            if msg.error():
                err = msg.error()
                if err.fatal():
                    raise KafkaException(err)
                if error_log.should_log(f"msg:{err.code()}"):
                    level = logging.WARNING if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART else logging.ERROR
                    log.log(level, "Kafka: %s", err.str())
                continue
            origin = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
            ts_type, ts_ms = msg.timestamp()
            try:
                processor.handle(msg.value(), origin, ts_ms if ts_type != TIMESTAMP_NOT_AVAILABLE else None)
            finally:
                keepalive.resume()
            # Reached only when the message is settled (delivered, logged or skipped on purpose);
            # Stopped/WebhookDead propagate and leave the offset uncommitted for the next run.
            try:
                consumer.commit(message=msg, asynchronous=False)
            except KafkaException as exc:
                # E.g. a rebalance took the partition: it will be redelivered and deduplicated.
                log.warning("offset commit for %s failed: %s", origin, exc.args[0].str() if exc.args else exc)
    finally:
        processor.flush_stale()
        consumer.close()
