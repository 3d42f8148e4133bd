"""The alerter's /metrics.

Counts the alerter already keeps (AlertProcessor.counts per outcome, the Discord client's
stats) are read at scrape time by a collector; the two latency histograms and the time of
the last accepted post are fed by the Discord client's observer hook. Consumer lag is
measured by the consuming thread itself (ConsumerLag.refresh), from the consumer's position
and the high watermarks librdkafka caches from its fetches: no request to the brokers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from cryptomon.alerter.discord import DiscordWebhookClient
from cryptomon.alerter.service import AlertProcessor

log = logging.getLogger("cryptomon.alerter.metrics")

PREFIX = "cryptomon_alerter_"
# Discord answers in ~0.1-0.5 s; a post that waited out a 429 or retried 5xx takes seconds to minutes.
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
POST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
STATUS_CLASSES = ("2xx", "429", "4xx", "5xx", "error")
# Discord client stats key -> (metric name without _total, help)
DISCORD_COUNTERS = {
    "rate_limited": ("discord_rate_limited", "HTTP 429 answers from Discord (each waited out and retried)."),
    "server_errors": ("discord_server_errors", "HTTP 5xx answers from Discord (each retried with backoff)."),
    "network_errors": ("discord_network_errors", "Requests to Discord that failed before an answer "
                                                 "(timeouts, connection errors; retried)."),
    "proactive_waits": ("discord_proactive_waits", "Waits before a request because Discord's rate-limit "
                                                   "headers said the bucket was empty."),
}


class ConsumerLag:
    """Messages behind per assigned partition: cached high watermark minus the position.

    The position is the offset after the last message poll() returned (the alerter handles one
    message at a time, so it is the next one to handle); a partition this run has not consumed
    from yet uses its committed offset, asked once per assignment. Refreshed by the consuming
    thread at most every `interval_s`; the scrape thread reads the dict it replaces whole.
    """

    def __init__(self, interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.partitions: dict[tuple[str, int], int] = {}
        self._next = 0.0
        self._committed: dict[tuple[str, int], int] = {}  # asked once per assignment
        self._assigned: set[tuple[str, int]] = set()

    def refresh(self, consumer: Any) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval_s
        try:
            self.partitions = self._measure(consumer)
        except Exception as exc:  # noqa: BLE001 - a metric must never stop the alerter
            log.debug("consumer lag not measured: %s", exc)

    def _measure(self, consumer: Any) -> dict[tuple[str, int], int]:
        assigned = consumer.assignment()
        keys = {(tp.topic, tp.partition) for tp in assigned}
        if keys != self._assigned:  # a rebalance: another member may have moved the offsets
            self._assigned, self._committed = keys, {}
        positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assigned)}
        unknown = [tp for tp in assigned if positions.get((tp.topic, tp.partition), -1) < 0
                   and (tp.topic, tp.partition) not in self._committed]
        if unknown:
            # Remembered even when there is none (a new group): one broker request per assignment.
            for tp in consumer.committed(unknown, timeout=2.0):
                self._committed[(tp.topic, tp.partition)] = tp.offset
        lags = {}
        for tp in assigned:
            key = (tp.topic, tp.partition)
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            offset = positions.get(key, -1)
            if offset < 0:
                offset = self._committed.get(key, -1)
            if high >= 0 and offset >= 0:
                lags[key] = max(0, high - offset)
        return lags


class AlerterMetrics(Collector):
    """Observer of the Discord client and collector of the alerter's counts."""

    def __init__(self, registry: CollectorRegistry, processor: AlertProcessor,
                 client: DiscordWebhookClient | None = None, lag: ConsumerLag | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.processor = processor
        self.client = client
        self.lag = lag
        self.clock = clock
        self.last_post_at = 0.0  # unix time of the last message Discord accepted; 0 = none yet
        self.request_seconds = Histogram(
            PREFIX + "discord_request_seconds", "One HTTP request to the Discord webhook, until its answer "
            "(or the network error).", ["status"], buckets=REQUEST_BUCKETS, registry=registry)
        for status in STATUS_CLASSES:  # every series exists from the start, at 0
            self.request_seconds.labels(status)
        self.post_seconds = Histogram(
            PREFIX + "discord_post_seconds", "One alert's post, from the first request until Discord accepted "
            "it (rate-limit waits and retries included).", buckets=POST_BUCKETS, registry=registry)
        registry.register(self)
        if client is not None:
            client.observer = self

    # --- PostObserver ----------------------------------------------------------------------
    def request_done(self, seconds: float, status: int | None) -> None:
        self.request_seconds.labels(_status_class(status)).observe(seconds)

    def post_done(self, seconds: float) -> None:
        self.post_seconds.observe(seconds)
        self.last_post_at = self.clock()

    # --- Collector ---------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        alerts = CounterMetricFamily(PREFIX + "alerts", "Alerts handled, by outcome: delivered (posted), "
                                     "logged (log-only mode), duplicate (already posted, skipped), malformed, "
                                     "rejected (Discord refused it twice) and stale (too old) are dropped.",
                                     labels=["outcome"])
        for outcome, count in self.processor.counts.items():
            alerts.add_metric([outcome.value], count)
        yield alerts
        if self.client is not None:
            stats = self.client.stats
            for key, (name, doc) in DISCORD_COUNTERS.items():
                yield CounterMetricFamily(PREFIX + name, doc, value=stats[key])
        yield GaugeMetricFamily(PREFIX + "last_post_timestamp_seconds", "Unix time of the last alert "
                                "Discord accepted (0: none since start).", value=self.last_post_at)
        if self.lag is not None:
            lag = GaugeMetricFamily(PREFIX + "consumer_lag_messages", "Alert messages not yet handled per "
                                    "partition: the high watermark librdkafka last fetched minus the "
                                    "consumer's position (refreshed every 5 s).", labels=["topic", "partition"])
            for (topic, partition), behind in sorted(self.lag.partitions.items()):
                lag.add_metric([topic, str(partition)], behind)
            yield lag


def _status_class(status: int | None) -> str:
    """'2xx', '429', '4xx', '5xx' or 'error' (no answer): few label values, the ones that matter."""
    if status is None:
        return "error"
    if status == 429:
        return "429"
    return f"{status // 100}xx"
