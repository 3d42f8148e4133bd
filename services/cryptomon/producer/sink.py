"""Where normalized trades go: Kafka (idempotent, acks=all, lz4) or stdout as JSON lines.

Quotes (PRODUCER_QUOTES) go through the same librdkafka producer to their own topic
(`emit_quote`), with the same settings and the same `exchange:symbol` keys."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from confluent_kafka import KafkaError, KafkaException, Producer

from cryptomon.kafka_settings import KafkaSettings, listener_mismatch
from cryptomon.logging_setup import LogThrottle

from .backoff import Backoff
from .quote import Quote
from .schema import Trade

log = logging.getLogger("cryptomon.producer.kafka")

ERROR_LOG_EVERY = 30.0  # seconds between two log lines of the same client error


class FatalKafkaError(RuntimeError):
    """The idempotent producer hit a fatal error; the process must restart."""


class StdoutSink:
    """`--stdout`: one normalized trade per line, like kcat, for debugging a feed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stdout
        self._lock = threading.Lock()  # several connections emit from their own threads

    def wait_ready(self, stop: threading.Event) -> bool:
        return True

    def emit(self, trade: Trade) -> None:
        line = trade.to_json() + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def emit_quote(self, quote: Quote) -> None:
        line = quote.to_json() + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def close(self, timeout: float = 10.0) -> int:
        self._out.flush()
        return 0


class KafkaSink:
    def __init__(self, settings: KafkaSettings, client_id: str, extra: dict | None = None, *,
                 on_stats: Callable[[str], None] | None = None, stats_interval_s: float = 10.0,
                 quotes_topic: str | None = None) -> None:
        """`on_stats`: receives librdkafka's statistics JSON every `stats_interval_s` (on the
        poller thread); None keeps statistics off. `quotes_topic`: where emit_quote produces
        (None: quotes are off, emit_quote refuses)."""
        self.settings = settings
        self.topic = settings.trades_topic
        self.quotes_topic = quotes_topic
        self.failed = 0
        self.buffer_full = 0  # produce() found the local queue full and waited
        self.fatal: KafkaError | None = None
        self._error_log = LogThrottle(ERROR_LOG_EVERY)  # keys: "listener" or the error code
        # Set by error_cb when the listener at the address speaks another protocol: then every
        # attempt fails the same way, and this one line says why.
        self.listener_problem: str | None = None
        self._closing = threading.Event()
        self._keys: dict[str, bytes] = {}
        self._key_exchange: dict[str, str] = {}
        self._quote_keys: dict[tuple[str, str], bytes] = {}
        self._poller: threading.Thread | None = None
        conf: dict = {
            **settings.client_config(),
            "client.id": client_id,
            "enable.idempotence": True,   # no duplicates or reordering from internal retries
            # One produce request per broker at a time: with more in flight, a leader change
            # fails request 1 and answers 2..5 with OUT_OF_ORDER_SEQUENCE_NUMBER, which makes
            # librdkafka bump the producer epoch and resend batches another partition had already
            # written (confluentinc/librdkafka#4953): duplicates in a rolling upgrade. Each
            # request still carries a batch for every partition that broker leads.
            "max.in.flight.requests.per.connection": 1,
            "acks": "all",
            "compression.type": "lz4",    # cheapest codec per byte saved for small JSON
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 262_144,
            "delivery.timeout.ms": 300_000,
            # Only failures call back into Python: one callback per success would cost more
            # than the rest of the hot path.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            # librdkafka would print every failed connect attempt; error_cb logs them rate-limited.
            "log_level": 2,
        }
        if on_stats is not None:
            # librdkafka measures every message's latency itself (HdrHistogram windows): the
            # hot path pays nothing, one JSON document per interval is parsed off it.
            conf["statistics.interval.ms"] = max(1, int(stats_interval_s * 1000))
            conf["stats_cb"] = on_stats
        conf.update(extra or {})
        self._producer = Producer(conf)
        self._produce = self._producer.produce
        self._poll = self._producer.poll

    # librdkafka callbacks run inside poll()/flush() on this thread.
    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self.failed += 1
            if self.failed <= 10 or self.failed % 1000 == 0:
                log.error("delivery failed (%d so far): %s", self.failed, err)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("fatal Kafka error: %s", err)
            return
        mismatch = listener_mismatch(self.settings, err.str())
        if mismatch is not None:
            self.listener_problem = mismatch
            if self._error_log.should_log("listener"):
                log.error("%s", mismatch)
        elif self._error_log.should_log(err.code()):
            log.warning("Kafka client error (retrying): %s", err)

    def wait_ready(self, stop: threading.Event, backoff: Backoff | None = None) -> bool:
        """Block until the trades topic (and the quotes topic, when quotes are on) exists and
        every partition has a leader.

        Kafka down at start, a missing topic or "leader not available" only means waiting,
        with one clear line per attempt. Returns False if stop was set first.
        """
        backoff = backoff or Backoff(0.5, 15.0)
        names = [self.topic] + ([self.quotes_topic] if self.quotes_topic else [])
        while not stop.is_set():
            problem = None
            ready: list[str] = []
            for name in names:
                try:
                    md = self._producer.list_topics(name, timeout=5)
                except KafkaException as exc:
                    self._poll(0)  # the poller is not running yet: serve error_cb, which classifies
                    problem = self.listener_problem or (
                        f"Kafka not reachable at {self.settings.bootstrap_servers}: {exc.args[0].str()}")
                    break
                topic = md.topics.get(name)
                problem = self._topic_problem(name, topic)
                if problem is not None:
                    break
                ready.append(f"topic {name} with {len(topic.partitions)} partitions")
            if problem is None:
                log.info("Kafka ready: %s", ", ".join(ready))
                return True
            delay = backoff.next_delay()
            if problem != self.listener_problem:  # error_cb logged that one (once per 30 s)
                log.warning("%s; retrying in %.1fs", problem, delay)
            stop.wait(delay)
        return False

    @staticmethod
    def _topic_problem(name: str, topic: object) -> str | None:
        error = getattr(topic, "error", None)
        if topic is None or (error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return f"topic {name} does not exist (topics are created by the kafka role)"
        if error is not None:
            return f"topic {name}: {error.str()}"
        partitions = topic.partitions  # type: ignore[attr-defined]
        if not partitions or any(p.leader < 0 for p in partitions.values()):
            return f"topic {name}: leader not available"
        return None

    def emit(self, trade: Trade) -> None:
        # Thread-safe (several connections call it): produce() is, and the key cache only
        # ever gains equal values. Nothing is counted here; the adapters count what they emit.
        value = trade.to_json()
        key = self._keys.get(trade.symbol)
        if key is None or trade.exchange != self._key_exchange.get(trade.symbol):
            key = trade.key()  # first time, or a mock run with several exchanges per symbol
            self._keys[trade.symbol] = key
            self._key_exchange[trade.symbol] = trade.exchange
        try:
            self._produce(self.topic, value, key)
        except BufferError:
            # Local queue full (broker slow or away): wait for deliveries, then retry once more.
            self.buffer_full += 1
            while True:
                self._poll(0.1)
                if self.fatal is not None:
                    raise FatalKafkaError(str(self.fatal)) from None
                try:
                    self._produce(self.topic, value, key)
                    break
                except BufferError:
                    continue

    def emit_quote(self, quote: Quote) -> None:
        """A quote to the quotes topic, through the same producer (one librdkafka instance)."""
        topic = self.quotes_topic
        if topic is None:
            raise ValueError("quotes are off: this sink has no quotes topic")
        value = quote.to_json()
        key = self._quote_keys.get((quote.exchange, quote.symbol))
        if key is None:
            key = self._quote_keys[(quote.exchange, quote.symbol)] = quote.key()
        try:
            self._produce(topic, value, key)
        except BufferError:
            self.buffer_full += 1
            while True:  # as emit(): wait for deliveries, never drop
                self._poll(0.1)
                if self.fatal is not None:
                    raise FatalKafkaError(str(self.fatal)) from None
                try:
                    self._produce(topic, value, key)
                    break
                except BufferError:
                    continue

    def queue_length(self) -> int:
        """Messages produced but not yet delivered (queued, in flight or awaiting their report)."""
        return len(self._producer)

    def start_poller(self, on_fatal: threading.Event | None = None) -> None:
        """Serve delivery and error callbacks from a background thread, so the hot path
        never polls and failures are logged within half a second at any trade rate."""

        def loop() -> None:
            while not self._closing.is_set():
                self._poll(0.5)
                if self.fatal is not None and on_fatal is not None:
                    on_fatal.set()
                    return

        self._poller = threading.Thread(target=loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def close(self, timeout: float = 15.0) -> int:
        """Flush; returns how many messages could not be delivered in time."""
        self._closing.set()
        if self._poller is not None:
            self._poller.join(2)
        left = self._producer.flush(timeout)
        if left:
            log.error("%d messages still undelivered after %.0fs flush", left, timeout)
        return left
