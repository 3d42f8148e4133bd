"""The producer's /metrics: counters the feed already keeps, read at scrape time.

The hot path (~220k trades/s per core) never touches prometheus_client: the adapters count in
their `Stats` objects as they always did, and `ProducerCollector.collect()` reads those numbers
(and the Kafka sink's) when Prometheus scrapes. Counts are per exchange (one producer process
per exchange); per symbol is not counted on the hot path, so it is not exposed.

Kafka delivery latency comes from librdkafka's own statistics (`statistics.interval.ms`): it
times every message in C and reports percentile windows per broker. Timing messages in Python
is not an option: with `delivery.report.only.error` the Python client drops every success
report, a per-message callback included, and reporting each success would cost more than the
rest of the hot path (see sink.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from cryptomon.metrics import MetricsServer, MetricsSettings, new_registry, start

from .base import Adapter, WebSocketAdapter
from .fastjson import loads
from .sink import StdoutSink

log = logging.getLogger("cryptomon.producer.metrics")

PREFIX = "cryptomon_producer_"

# Stats field -> (metric name without _total, help). Every field of Stats is here (a test checks).
STATS_COUNTERS: dict[str, tuple[str, str]] = {
    "trades": ("trades", "Trades normalized and handed to the sink, after dedupe."),
    "duplicates": ("duplicates_dropped", "Trades dropped as already produced (replays after a reconnect, "
                                         "snapshots, overlapping sessions)."),
    "malformed": ("malformed_frames", "Frames that are not JSON, lack a required field or carry an invalid "
                                      "value, and frames the parser failed on."),
    "unknown": ("unknown_messages", "Well-formed messages of an unknown kind or for a market not subscribed."),
    "errors": ("exchange_errors", "Error replies from the exchange, and subscriptions it silently dropped."),
    "gaps": ("sequence_gaps", "Gaps in the exchange's per-market sequence numbers (exchanges that send them)."),
    "missed": ("missed_trades", "Messages missed inside those gaps, by sequence number."),
    "out_of_order": ("out_of_order", "Messages whose sequence number was below the last one seen."),
    "rejected": ("rejected_subscriptions", "Markets whose subscription the exchange refused."),
    "oversized": ("oversized_frames", "Frames above the size cap (each ends its connection)."),
    "connects": ("connects", "WebSocket connections opened."),
    "reconnects": ("reconnects", "Connection sessions started again after one ended (any reason)."),
}

# Stats quote field -> (metric name without _total, help); exposed only when quotes are on, so a
# producer without them shows exactly the metrics it always did. Every Stats.QUOTE_FIELDS entry
# is here (a test checks).
QUOTE_COUNTERS: dict[str, tuple[str, str]] = {
    "quotes": ("quotes", "Top-of-book quotes handed to the sink (after coalescing and every check)."),
    "quotes_coalesced": ("quotes_coalesced", "Quotes replaced, before they were emitted, by a newer quote of the "
                                             "same market that arrived in the same socket read."),
    "quotes_out_of_order": ("quotes_out_of_order", "Quotes dropped as older than the last one of their market "
                                                   "(lower sequence, or an earlier exchange time)."),
    "quotes_resequenced": ("quotes_resequenced", "Quotes accepted although their sequence went back: the venue "
                                                 "renumbered (later exchange time, or several in a row)."),
    "quotes_crossed": ("quotes_crossed", "Quotes dropped because the book was crossed or locked (bid >= ask)."),
    "quotes_invalid": ("quotes_invalid", "Quotes dropped with a price or size missing, zero, negative or not a "
                                         "decimal."),
}

# librdkafka latency windows, each a stage of produce() -> broker acknowledgement.
LATENCY_STAGES = (
    ("queue", "int_latency"),     # produce() until the message is put into a produce request
    ("send", "outbuf_latency"),   # the request waiting in the transmit queue for the socket
    ("broker", "rtt"),            # request written until the broker's response (acks=all)
)
QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))


class KafkaLatency:
    """Latency per stage and broker from librdkafka's statistics JSON (the sink's stats_cb).

    Each document holds the last interval's window: its quantiles are exposed as they are, its
    count and sum are added up so `_count`/`_sum` are counters like a summary's. Never raises:
    an exception in a librdkafka callback would end the sink's poller thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.quantiles: dict[tuple[str, str], dict[str, float]] = {}  # (stage, broker) -> quantile -> s
        self.count: dict[tuple[str, str], int] = {}
        self.sum_s: dict[tuple[str, str], float] = {}
        self.documents = 0
        self.bad_documents = 0

    def update(self, stats_json: str) -> None:
        try:
            brokers = loads(stats_json).get("brokers") or {}
            windows = self._windows(brokers)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.bad_documents += 1
            if self.bad_documents <= 3:
                log.warning("unreadable librdkafka statistics (%s: %s)", type(exc).__name__, exc)
            return
        with self._lock:
            self.documents += 1
            for key, (count, sum_us, quantiles) in windows.items():
                self.count[key] = self.count.get(key, 0) + count
                self.sum_s[key] = self.sum_s.get(key, 0.0) + sum_us / 1e6
                self.quantiles[key] = quantiles

    @staticmethod
    def _windows(brokers: dict) -> dict[tuple[str, str], tuple[int, float, dict[str, float]]]:
        out = {}
        for broker in brokers.values():
            node = broker.get("nodeid", -1)
            if not isinstance(node, int) or node < 0:
                continue  # a bootstrap entry, not a broker that leads partitions
            for stage, field in LATENCY_STAGES:
                window = broker.get(field) or {}
                count = int(window.get("cnt", 0))
                # No messages in the window: no quantile to tell (NaN, as Prometheus' own clients do).
                quantiles = {q: (window[key] / 1e6 if count else math.nan) for q, key in QUANTILES}
                out[(stage, str(node))] = (count, float(window.get("sum", 0)), quantiles)
        return out

    def family(self, exchange: str) -> SummaryMetricFamily:
        fam = SummaryMetricFamily(
            PREFIX + "kafka_latency_seconds",
            "Kafka produce latency by stage (queue: produce() until batched into a request; send: the "
            "request waiting for the socket; broker: round trip until the acknowledgement) and broker, "
            "measured by librdkafka for every message; quantiles over the last statistics interval.",
            labels=["exchange", "stage", "broker"])
        with self._lock:
            for (stage, broker), count in sorted(self.count.items()):
                labels = [exchange, stage, broker]
                fam.add_metric(labels, count, self.sum_s[(stage, broker)])
                for q, value in self.quantiles[(stage, broker)].items():
                    fam.add_sample(fam.name, {"exchange": exchange, "stage": stage, "broker": broker,
                                              "quantile": q}, value)
        return fam


@runtime_checkable
class KafkaCounts(Protocol):
    """What the collector reads from the Kafka sink (KafkaSink; a fake in tests)."""

    failed: int
    buffer_full: int

    def queue_length(self) -> int: ...


def _connection_numbers(adapter: Adapter) -> tuple[int, int, int] | None:
    """(connected, planned, markets) for an exchange feed; None for the mock."""
    from .feed import Feed

    if isinstance(adapter, Feed):
        shards = list(adapter.shards)
        return (sum(1 for s in shards if s.connected.is_set()), sum(1 for s in shards if s.market_list()),
                len(adapter.resolved))
    if isinstance(adapter, WebSocketAdapter):
        return int(adapter.connected.is_set()), 1, len(adapter.by_raw)
    return None


class ProducerCollector(Collector):
    """Reads the adapter's and the sink's counters at scrape time (registry.register(this))."""

    def __init__(self, exchange: str, adapter: Adapter, sink: KafkaCounts | StdoutSink | None = None,
                 latency: KafkaLatency | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.adapter = adapter
        self.sink = sink
        self.latency = latency
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        counts = self.adapter.stats  # a Feed sums its connections' counters on each read: read once
        stats = counts.as_dict()
        for field, (name, doc) in STATS_COUNTERS.items():
            yield self._counter(name, doc, stats[field])
        if self.adapter.quotes_on:
            quotes = counts.quote_dict()
            for field, (name, doc) in QUOTE_COUNTERS.items():
                yield self._counter(name, doc, quotes[field])
        yield self._gauge("last_trade_age_seconds", "Seconds since this producer last emitted a trade "
                          "(since start until the first one); noted five times a second and at each scrape.",
                          self.adapter.note_trades(self.clock()))
        numbers = _connection_numbers(self.adapter)
        if numbers is not None:
            connected, planned, markets = numbers
            yield self._gauge("connections", "Exchange connections subscribed and healthy (trades flowing "
                              "or every subscription acknowledged).", connected)
            yield self._gauge("connections_planned", "Connections the symbol set is sharded onto.", planned)
            yield self._gauge("markets", "Markets subscribed (after resolving patterns and refusals).", markets)
        if isinstance(self.sink, KafkaCounts):
            yield from self._kafka(self.sink)

    def _kafka(self, sink: KafkaCounts) -> Iterator[Metric]:
        yield self._counter("kafka_delivery_errors", "Messages Kafka did not take (delivery reports with an "
                            "error, after librdkafka's own retries).", sink.failed)
        yield self._counter("kafka_buffer_full", "Times produce() found the local queue full and had to "
                            "wait for deliveries.", sink.buffer_full)
        yield self._gauge("kafka_queue_messages", "Messages produced but not yet delivered (librdkafka's "
                          "queue, in flight, awaiting the delivery report).", sink.queue_length())
        if self.latency is not None:
            yield self.latency.family(self.exchange)

    def _counter(self, name: str, doc: str, value: float) -> Metric:
        fam = CounterMetricFamily(PREFIX + name, doc, labels=["exchange"])
        fam.add_metric([self.exchange], value)
        return fam

    def _gauge(self, name: str, doc: str, value: float) -> Metric:
        fam = GaugeMetricFamily(PREFIX + name, doc, labels=["exchange"])
        fam.add_metric([self.exchange], value)
        return fam


def new_latency(settings: MetricsSettings) -> KafkaLatency | None:
    """Kafka latency statistics only when there is an endpoint to show them."""
    return KafkaLatency() if settings.enabled else None


def start_metrics(settings: MetricsSettings, exchange: str, adapter: Adapter, sink: KafkaCounts | StdoutSink,
                  latency: KafkaLatency | None = None,
                  registry: CollectorRegistry | None = None) -> MetricsServer | None:
    """Register the producer's collector and listen, if METRICS_PORT asks for an endpoint."""
    if not settings.enabled:
        return None
    registry = registry or new_registry()
    registry.register(ProducerCollector(exchange, adapter, sink, latency))
    return start(settings, registry)
