"""Background Kafka reader feeding a MarketState; never raises into the UI.

Partitions are assigned manually (no consumer group, nothing committed): every dashboard
process reads independently, starting a little before the end of each partition so that it
shows recent prices and the alert history at once. Topics that do not exist yet (auto topic
creation is off) are re-checked every few seconds and picked up when they appear.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cryptomon.dashboard.state import MarketState
from cryptomon.kafka_settings import KafkaSettings, listener_mismatch
from cryptomon.logging_setup import LogThrottle

log = logging.getLogger("cryptomon.dashboard.feed")

METADATA_EVERY = 5.0  # seconds between topic/partition re-checks
RETRY_EVERY = 3.0
LOG_EVERY = 30.0  # seconds between two log lines of the same connection problem


class KafkaFeed:
    def __init__(self, settings: KafkaSettings, state: MarketState, trades_backfill: int = 1000,
                 alerts_backfill: int = 500) -> None:
        self.settings, self.state = settings, state
        self.backfill = {"trades": trades_backfill, "alerts": alerts_backfill}
        self.kinds = {settings.trades_topic: "trades", settings.alerts_topic: "alerts",
                      settings.arbitrage_topic: "alerts"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-feed", daemon=True)
        self._assigned: dict[str, int] = {}  # topic -> partitions assigned
        self._transport_error: str | None = None
        # The listener at the address speaks another protocol (listener_mismatch): shown as the
        # feed's status instead of librdkafka's "Failed to get metadata" until metadata arrives.
        self._listener_problem: str | None = None
        self._error_log = LogThrottle(LOG_EVERY)

    def start(self) -> KafkaFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        mismatch = listener_mismatch(self.settings, err.str())
        if mismatch is not None:
            self._listener_problem = self._transport_error = mismatch
            self.state.set_status("unreachable", mismatch)
            if self._error_log.should_log("listener"):
                log.error("%s", mismatch)
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self._transport_error = self._listener_problem or err.str()
            self.state.set_status("unreachable", self._transport_error)

    def _consumer(self) -> Any:
        from confluent_kafka import Consumer

        return Consumer({
            **self.settings.client_config(),
            "group.id": "cryptomon-dashboard",  # required by the client; offsets are never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "client.id": "cryptomon-dashboard",
            "error_cb": self._on_error,
            "socket.timeout.ms": 5000,
        })

    def _refresh_assignment(self, consumer: Any) -> None:
        """Raises KafkaException when the cluster cannot be reached."""
        from confluent_kafka import TopicPartition

        md = consumer.list_topics(timeout=5)
        missing, new = [], []
        for topic, kind in self.kinds.items():
            tmd = md.topics.get(topic)
            if tmd is None or tmd.error is not None or not tmd.partitions:
                missing.append(topic)
                continue
            have = self._assigned.get(topic, 0)
            for p in sorted(tmd.partitions):
                if p < have:
                    continue
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                new.append(TopicPartition(topic, p, max(low, high - self.backfill[kind])))
            self._assigned[topic] = max(have, len(tmd.partitions))
        if new:
            consumer.incremental_assign(new)
            log.info("reading %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in new))
        self.state.missing_topics = tuple(missing)
        self._transport_error = self._listener_problem = None

    def _run(self) -> None:
        from confluent_kafka import KafkaException

        consumer = None
        next_metadata = 0.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                if time.monotonic() >= next_metadata:
                    self._refresh_assignment(consumer)
                    next_metadata = time.monotonic() + METADATA_EVERY
                    self._update_status()
                msgs = consumer.consume(500, timeout=1.0) if self._assigned else []
                if not self._assigned:
                    self._stop.wait(1.0)
                for msg in msgs:
                    if msg.error():
                        continue  # partition EOF and similar: nothing to show
                    self.state.ingest(self.kinds.get(msg.topic(), "alerts"), msg.value())
                if msgs:
                    self._update_status()
            except KafkaException as exc:
                err = exc.args[0] if exc.args else exc
                if consumer is not None and not self._assigned:
                    consumer.poll(0)  # nothing to consume yet: serve error_cb, which classifies
                detail = self._listener_problem or (err.str() if hasattr(err, "str") else str(err))
                self.state.set_status("unreachable", detail)
                next_metadata = 0.0
                self._stop.wait(RETRY_EVERY)
            except Exception as exc:  # the feed thread must survive anything
                log.exception("dashboard feed error")
                self.state.set_status("unreachable", f"{type(exc).__name__}: {exc}")
                self._stop.wait(RETRY_EVERY)
        if consumer is not None:
            consumer.close()

    def _update_status(self) -> None:
        if self._transport_error:
            return
        if self.state.has_data:
            self.state.set_status("live")
        elif self.state.missing_topics:
            self.state.set_status("waiting", "topics not created yet: " + ", ".join(self.state.missing_topics))
        else:
            self.state.set_status("waiting", "connected; no trades or alerts yet")
