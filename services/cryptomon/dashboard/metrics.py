"""The dashboard's /metrics (METRICS_PORT / METRICS_ADDRESS, as the producer and the alerter).

Streamlit runs app.py again for every browser session and every rerun, but this module is
imported once per process: `ensure_started` keeps the one endpoint of the process here, behind
a lock. `cryptomon-dashboard` starts it before Streamlit's server (serve.py), so the endpoint is
up before anyone opens the page; app.py calls it too, which only returns the running one (or
starts it, when app.py was run by a bare `streamlit run`).
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.registry import CollectorRegistry

from cryptomon import __version__
from cryptomon.dashboard.health import OUTCOMES
from cryptomon.metrics import MetricsServer, MetricsSettings, new_registry, start

log = logging.getLogger("cryptomon.dashboard.metrics")

PREFIX = "cryptomon_dashboard_"
# A round of health queries takes milliseconds; its budget is 5 s (health.BUDGET_S).
QUERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class DashboardMetrics:
    """What the dashboard process exposes: that it is up, and how its Prometheus queries go."""

    def __init__(self, registry: CollectorRegistry, prometheus_configured: bool) -> None:
        self.up = Gauge(PREFIX + "up", "1 while the dashboard process serves.", registry=registry)
        self.up.set(1)
        info = Info("cryptomon_dashboard", "The dashboard's version and whether its pipeline-health "
                    "section has a Prometheus to ask (DASHBOARD_PROMETHEUS_URL).", registry=registry)
        info.info({"version": __version__, "prometheus_configured": str(prometheus_configured).lower()})
        self.health_queries = Counter(
            PREFIX + "health_queries", "Rounds of pipeline-health queries to Prometheus by outcome (ok; "
            "unreachable: connection failed or timed out; error: an answer that was not the one asked for).",
            ["outcome"], registry=registry)
        for outcome in OUTCOMES:  # every outcome from the start: a rate() of 0, not a missing series
            self.health_queries.labels(outcome)
        self.health_query_seconds = Histogram(
            PREFIX + "health_query_seconds", "Time a round of pipeline-health queries took.",
            buckets=QUERY_BUCKETS, registry=registry)

    def observe_query(self, outcome: str, seconds: float) -> None:
        self.health_queries.labels(outcome if outcome in OUTCOMES else "error").inc()
        self.health_query_seconds.observe(max(0.0, seconds))


_lock = threading.Lock()
_metrics: DashboardMetrics | None = None
_server: MetricsServer | None = None


def ensure_started(settings: MetricsSettings, prometheus_configured: bool) -> DashboardMetrics | None:
    """The process's metrics, listening if METRICS_PORT asks for it; None when it does not.
    The first call listens (ConfigError if it cannot); every later call returns the same object."""
    global _metrics, _server
    with _lock:
        if _metrics is not None or not settings.enabled:
            return _metrics
        registry = new_registry()
        metrics = DashboardMetrics(registry, prometheus_configured)
        _server = start(settings, registry)
        _metrics = metrics
        log.info("metrics %s", settings.describe())
        return metrics


def running() -> DashboardMetrics | None:
    """The metrics of this process if its endpoint is up (for app.py)."""
    return _metrics


def stop() -> None:
    """Close the endpoint (tests; the process otherwise ends with it)."""
    global _metrics, _server
    with _lock:
        if _server is not None:
            _server.close()
        _metrics, _server = None, None
