"""Pipeline health from Prometheus' HTTP API: rows with a green/amber/red level each.

Reads the recording rules of roles/monitoring (files/cryptomon-recording.yml) with instant
queries at /api/v1/query, the scrape targets' `up` of the jobs the role gives the producers,
the alerter and Flink's JobManager, and the firing alerts at /api/v1/alerts. Everything but
`fetch_health` is pure (API JSON in, rows and levels out) and unit-tested; `fetch_health`
never raises: an unreachable or misbehaving Prometheus is a report with an error, so the page
shows it instead of a stack trace. `HealthPoller` calls it in a thread of its own, so that no
page refresh ever waits for Prometheus. No Streamlit in here.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from cryptomon.dashboard.state import LEVEL_CSS, MISSING, Level, StyledTable, format_age
from cryptomon.kafka_settings import ConfigError

log = logging.getLogger("cryptomon.dashboard.health")

# --- what is asked, and of whom -----------------------------------------------------------------

# Scrape job names the monitoring role gives the targets (templates/prometheus.yml.j2 via
# vars/main.yml): producers carry the labels instance (inventory host:port) and producer.
PRODUCER_JOB = "cryptomon_producer"
ALERTER_JOB = "cryptomon_alerter"
FLINK_JOBMANAGER_JOB = "flink_jobmanager"

QUERIES: dict[str, str] = {
    "trades_rate": "cryptomon:producer_trades:rate1m",
    "trade_age": "cryptomon:producer_last_trade_age_seconds:max",
    "flink_running": "cryptomon:flink_job_running:max",
    "checkpoint_seconds": "cryptomon:flink_job_last_checkpoint_duration_seconds:max",
    "checkpoints_10m": "cryptomon:flink_job_checkpoints_completed:increase10m",
    "alerter_lag": "cryptomon:alerter_lag_messages:sum",
    "up": f'up{{job=~"{PRODUCER_JOB}|{ALERTER_JOB}|{FLINK_JOBMANAGER_JOB}"}}',
}

# A page refresh waits for Prometheus: each request gets at most TIMEOUT_S, all of them together
# at most BUDGET_S, and the first connection failure ends the round (one timeout, not eight).
TIMEOUT_S = 2.0
BUDGET_S = 5.0
# Prometheus scrapes every 15 s in the bundle: asking more often than this shows nothing new.
MIN_REFRESH_S = 5.0

# --- thresholds (README/docs: alerter-dashboard.md, "Pipeline health") ---------------------------

# Seconds since a producer's last trade: amber at half of the CryptomonProducerSilent rule's
# limit (monitoring_alert_producer_silent_seconds, 60 s), red past it, as the alert would fire.
TRADE_AGE_AMBER_S = 30.0
TRADE_AGE_RED_S = 60.0
# Alert messages the alerter has not handled: red past the CryptomonAlerterLag rule's limit
# (monitoring_alert_alerter_lag_messages, 50); amber once a backlog builds (a few are normal
# between two lag measurements).
ALERTER_LAG_AMBER = 10.0
ALERTER_LAG_RED = 50.0
# The jobs checkpoint every 2 s (--checkpoint-interval-ms) and take well under a second: one that
# takes 10 s is a job under backpressure, one that takes a minute delays every exactly-once alert
# by as much.
CHECKPOINT_AMBER_S = 10.0
CHECKPOINT_RED_S = 60.0
# Alert rules label every alert critical or warning (templates/cryptomon-alerts.yml.j2).
SEVERITY_LEVELS = {"critical": "red", "warning": "amber"}


class HealthLevel(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"

    @property
    def rank(self) -> int:
        return (HealthLevel.GREEN, HealthLevel.AMBER, HealthLevel.RED).index(self)


# The spread matrix's colours: one meaning of green, amber and red on the page.
HEALTH_CSS = {HealthLevel.GREEN: LEVEL_CSS[Level.CALM], HealthLevel.AMBER: LEVEL_CSS[Level.NEAR],
              HealthLevel.RED: LEVEL_CSS[Level.ALERT]}


def worst(levels: Iterable[HealthLevel]) -> HealthLevel:
    return max(levels, key=lambda lv: lv.rank, default=HealthLevel.GREEN)


# --- the setting --------------------------------------------------------------------------------

def redact_url(url: str) -> str:
    """The URL without a user name or password, for the page and the logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def parse_prometheus_url(raw: str, name: str = "DASHBOARD_PROMETHEUS_URL") -> str:
    """Prometheus' base URL (`http://127.0.0.1:9090`, `https://user:pw@front/prometheus`) without
    a trailing slash; "" stays "" (the section is off). ConfigError names the problem."""
    raw = raw.strip()
    if not raw:
        return ""
    shown = redact_url(raw)
    if any(c.isspace() for c in raw):
        raise ConfigError(f"{name}: {shown!r} contains white space")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name}: {shown!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:9090)")
    if not parts.hostname:
        raise ConfigError(f"{name}: {shown!r} has no host (e.g. http://127.0.0.1:9090)")
    try:
        parts.port  # noqa: B018 - urllib checks the port only when asked
    except ValueError:
        raise ConfigError(f"{name}: {shown!r} has a port that is not one (1-65535)") from None
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}: {shown!r} has a ?query or #fragment; give Prometheus' base URL "
                          "(the part before /api/v1)")
    if parts.path.rstrip("/").endswith("/api/v1"):
        raise ConfigError(f"{name}: {shown!r} ends in /api/v1; give Prometheus' base URL (without it)")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


# --- API JSON -> samples --------------------------------------------------------------------------

class PrometheusError(ValueError):
    """Prometheus answered, but not with what was asked for."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


def vector(payload: Any) -> list[Sample]:
    """An instant query's answer (`{"status": "success", "data": {"resultType": "vector", ...}}`)
    -> its samples; PrometheusError for an error answer or anything else."""
    data = _data(payload)
    if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise PrometheusError("the answer to a query is not an instant vector")
    samples = []
    for item in data["result"]:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])  # "NaN" and "+Inf" are floats too
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PrometheusError(f"a sample of the answer is not a sample: {str(item)[:200]}") from None
        samples.append(Sample(labels, value))
    return samples


def _data(payload: Any) -> Any:
    if not isinstance(payload, dict):
        raise PrometheusError("the answer is not a JSON object")
    if payload.get("status") != "success":
        kind = payload.get("errorType") or "error"
        raise PrometheusError(f"{kind}: {payload.get('error') or 'status ' + repr(payload.get('status'))}")
    return payload.get("data")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --- rows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProducerRow:
    producer: str
    exchange: str
    instance: str
    target_up: bool | None  # None: no scrape target of the producer job for it
    trades_per_s: float | None
    last_trade_age_s: float | None
    level: HealthLevel
    reason: str


@dataclass(frozen=True)
class FlinkRow:
    job: str
    running: bool | None  # None: only the JobManager's target is known (it is down)
    last_checkpoint_s: float | None
    checkpoints_10m: float | None
    level: HealthLevel
    reason: str


@dataclass(frozen=True)
class AlerterRow:
    instance: str
    target_up: bool | None
    lag: float | None
    level: HealthLevel
    reason: str


@dataclass(frozen=True)
class FiringAlert:
    name: str
    severity: str
    summary: str
    active_at: datetime | None
    level: HealthLevel


def classify_producer(target_up: bool | None, age_s: float | None) -> tuple[HealthLevel, str]:
    if target_up is False:
        return HealthLevel.RED, "target down"
    if age_s is None:
        return HealthLevel.AMBER, "no trade age recorded yet"
    if age_s > TRADE_AGE_RED_S:
        return HealthLevel.RED, f"no trade for {age_s:.0f} s (red > {TRADE_AGE_RED_S:g} s)"
    if age_s > TRADE_AGE_AMBER_S:
        return HealthLevel.AMBER, f"no trade for {age_s:.0f} s (amber > {TRADE_AGE_AMBER_S:g} s)"
    return HealthLevel.GREEN, "ok"


def producer_rows(trades: list[Sample], ages: list[Sample], up: list[Sample]) -> list[ProducerRow]:
    """One row per producer target (instance, producer): its up, trade rate and last-trade age.
    A producer whose target is down has no recorded series left; its `up` still names it."""
    def key(labels: Mapping[str, str]) -> tuple[str, str]:
        return labels.get("instance", ""), labels.get("producer", "") or labels.get("exchange", "")

    target = {key(s.labels): s.value == 1 for s in up if s.labels.get("job") == PRODUCER_JOB}
    rate = {key(s.labels): _finite(s.value) for s in trades}
    age = {key(s.labels): _finite(s.value) for s in ages}
    exchange = {key(s.labels): s.labels.get("exchange", "") for s in (*trades, *ages)}
    rows = []
    for k in sorted(target.keys() | rate.keys() | age.keys()):
        instance, producer = k
        level, reason = classify_producer(target.get(k), age.get(k))
        # rate() over [1m] outlives a target that went down by a minute (range vectors ignore
        # staleness): a down producer sends nothing, whatever the last minute's average says.
        trades_per_s = None if target.get(k) is False else rate.get(k)
        rows.append(ProducerRow(producer or "?", exchange.get(k, ""), instance, target.get(k), trades_per_s,
                                age.get(k), level, reason))
    return rows


def classify_flink(running: bool | None, checkpoint_s: float | None,
                   completed_10m: float | None) -> tuple[HealthLevel, str]:
    if running is None:
        return HealthLevel.RED, "JobManager target down"
    if not running:
        return HealthLevel.RED, "not RUNNING"
    if checkpoint_s is not None and checkpoint_s > CHECKPOINT_RED_S:
        return HealthLevel.RED, f"last checkpoint took {checkpoint_s:.0f} s (red > {CHECKPOINT_RED_S:g} s)"
    if completed_10m is not None and completed_10m <= 0:
        return HealthLevel.AMBER, "no checkpoint completed in 10 min"
    if checkpoint_s is not None and checkpoint_s > CHECKPOINT_AMBER_S:
        return HealthLevel.AMBER, f"last checkpoint took {checkpoint_s:.0f} s (amber > {CHECKPOINT_AMBER_S:g} s)"
    return HealthLevel.GREEN, "ok"


def flink_rows(running: list[Sample], checkpoint_s: list[Sample], completed: list[Sample],
               up: list[Sample]) -> list[FlinkRow]:
    """One row per Flink job name; a JobManager whose target is down is a red row of its own
    (its jobs' series are gone with it)."""
    state = {s.labels.get("job_name", "?"): s.value == 1 for s in running}
    duration = {s.labels.get("job_name", "?"): _finite(s.value) for s in checkpoint_s}
    done = {s.labels.get("job_name", "?"): _finite(s.value) for s in completed}
    rows = []
    for job in sorted(state):
        level, reason = classify_flink(state[job], duration.get(job), done.get(job))
        rows.append(FlinkRow(job, state[job], duration.get(job), done.get(job), level, reason))
    for s in up:
        if s.labels.get("job") == FLINK_JOBMANAGER_JOB and s.value != 1:
            level, reason = classify_flink(None, None, None)
            rows.append(FlinkRow(f"JobManager {s.labels.get('instance', '?')}", None, None, None, level, reason))
    return rows


def classify_alerter(target_up: bool | None, lag: float | None) -> tuple[HealthLevel, str]:
    if target_up is False:
        return HealthLevel.RED, "target down"
    if lag is None:
        return HealthLevel.AMBER, "no lag recorded yet"
    if lag > ALERTER_LAG_RED:
        return HealthLevel.RED, f"{lag:.0f} messages behind (red > {ALERTER_LAG_RED:g})"
    if lag > ALERTER_LAG_AMBER:
        return HealthLevel.AMBER, f"{lag:.0f} messages behind (amber > {ALERTER_LAG_AMBER:g})"
    return HealthLevel.GREEN, "ok"


def alerter_rows(lag: list[Sample], up: list[Sample]) -> list[AlerterRow]:
    target = {s.labels.get("instance", ""): s.value == 1 for s in up if s.labels.get("job") == ALERTER_JOB}
    behind = {s.labels.get("instance", ""): _finite(s.value) for s in lag}
    rows = []
    for instance in sorted(target.keys() | behind.keys()):
        level, reason = classify_alerter(target.get(instance), behind.get(instance))
        rows.append(AlerterRow(instance or "?", target.get(instance), behind.get(instance), level, reason))
    return rows


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text: Any) -> datetime | None:
    """Prometheus' RFC 3339 times (nanoseconds, `Z`) -> an aware datetime; None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def firing_alerts(payload: Any) -> list[FiringAlert]:
    """/api/v1/alerts -> the firing ones (pending ones are not news yet), red (critical) first."""
    data = _data(payload)
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise PrometheusError("the answer about alerts has no list of alerts")
    out = []
    for a in data["alerts"]:
        if not isinstance(a, dict) or a.get("state") != "firing":
            continue
        labels = {str(k): str(v) for k, v in (a.get("labels") or {}).items()}
        annotations = a.get("annotations") or {}
        severity = labels.get("severity", "")
        summary = str(annotations.get("summary") or "") or ", ".join(
            f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
        out.append(FiringAlert(labels.get("alertname", "?"), severity or "none", summary,
                               parse_time(a.get("activeAt")), HealthLevel(SEVERITY_LEVELS.get(severity, "amber"))))
    return sorted(out, key=lambda f: (-f.level.rank, f.name, f.summary))


# --- the report -----------------------------------------------------------------------------------

OUTCOMES = ("ok", "unreachable", "error")  # the dashboard's health-query counter's labels


@dataclass(frozen=True)
class HealthReport:
    producers: tuple[ProducerRow, ...] = ()
    flink: tuple[FlinkRow, ...] = ()
    alerters: tuple[AlerterRow, ...] = ()
    alerts: tuple[FiringAlert, ...] = ()
    outcome: str = "ok"    # one of OUTCOMES
    error: str = ""        # what the page says instead of rows when outcome is not ok
    seconds: float = 0.0   # how long the round of queries took
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def level(self) -> HealthLevel:
        if self.outcome == "unreachable":
            return HealthLevel.RED
        if self.outcome != "ok":
            return HealthLevel.AMBER
        return worst(r.level for r in (*self.producers, *self.flink, *self.alerters, *self.alerts))

    @property
    def empty(self) -> bool:
        return not (self.producers or self.flink or self.alerters or self.alerts)

    def problems(self) -> list[tuple[HealthLevel, str]]:
        """What is not green, worst first: (level, `producer binance: target down`)."""
        found = [(r.level, f"producer {r.producer}: {r.reason}") for r in self.producers]
        found += [(r.level, f"Flink {r.job}: {r.reason}") for r in self.flink]
        found += [(r.level, f"alerter {r.instance}: {r.reason}") for r in self.alerters]
        found += [(a.level, f"alert {a.name} ({a.severity})") for a in self.alerts]
        return sorted(((lv, text) for lv, text in found if lv is not HealthLevel.GREEN), key=lambda p: -p[0].rank)


def build_report(results: Mapping[str, list[Sample]], alerts_payload: Any) -> HealthReport:
    """The queries' samples (by QUERIES key) and /api/v1/alerts' answer -> the report."""
    up = results.get("up", [])
    return HealthReport(
        producers=tuple(producer_rows(results.get("trades_rate", []), results.get("trade_age", []), up)),
        flink=tuple(flink_rows(results.get("flink_running", []), results.get("checkpoint_seconds", []),
                               results.get("checkpoints_10m", []), up)),
        alerters=tuple(alerter_rows(results.get("alerter_lag", []), up)),
        alerts=tuple(firing_alerts(alerts_payload)),
    )


def summary_line(report: HealthReport) -> str:
    """One line for the top of the page."""
    if report.outcome != "ok":
        return report.error
    if report.empty:
        return (f"Prometheus answered, but knows none of the cryptomon targets (scrape jobs {PRODUCER_JOB}, "
                f"{ALERTER_JOB}, {FLINK_JOBMANAGER_JOB}) and no alert fires.")
    problems = report.problems()
    if not problems:
        return (f"All green: {_count(len(report.producers), 'producer')}, {_count(len(report.flink), 'Flink job')}, "
                f"{_count(len(report.alerters), 'alerter')}; no firing alerts.")
    reds = sum(1 for lv, _ in problems if lv is HealthLevel.RED)
    ambers = len(problems) - reds
    counts = ", ".join(p for p in (f"{reds} red" if reds else "", f"{ambers} amber" if ambers else "") if p)
    shown = "; ".join(text for _, text in problems[:4])
    more = f"; {len(problems) - 4} more" if len(problems) > 4 else ""
    return f"{counts}: {shown}{more}."


def legend(base_url: str, report: HealthReport, refresh_s: float) -> str:
    """What the colours mean, where the numbers come from and how old they are."""
    return (f"Producers: amber after {TRADE_AGE_AMBER_S:g} s without a trade, red after {TRADE_AGE_RED_S:g} s "
            f"or when the target is down. Flink jobs: red when not RUNNING or a checkpoint took more than "
            f"{CHECKPOINT_RED_S:g} s, amber above {CHECKPOINT_AMBER_S:g} s or with none completed in 10 min. "
            f"Alerter: amber above {ALERTER_LAG_AMBER:g} messages behind, red above {ALERTER_LAG_RED:g} or when "
            f"down. Alerts: critical red, warning amber. From Prometheus at {redact_url(base_url)}, as of "
            f"{report.fetched_at:%H:%M:%S} UTC, every {refresh_s:g} s.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# --- tables as shown ------------------------------------------------------------------------------

PRODUCER_COLUMNS = ("Producer", "Exchange", "Instance", "Target", "Trades/s", "Last trade", "Status")
FLINK_COLUMNS = ("Flink job", "State", "Last checkpoint", "Checkpoints (10 min)", "Status")
ALERTER_COLUMNS = ("Alerter", "Target", "Lag (messages)", "Status")
ALERT_COLUMNS = ("Firing alert", "Severity", "Summary", "Firing for")


def _target(up: bool | None) -> str:
    return MISSING if up is None else ("up" if up else "down")


def _seconds_ago(age_s: float | None) -> str:
    if age_s is None:
        return MISSING
    return f"{age_s:.1f} s ago" if age_s < 60 else f"{format_age(round(age_s * 1000))} ago"


def _number(value: float | None, fmt: str) -> str:
    return MISSING if value is None else format(value, fmt)


def _status(level: HealthLevel, reason: str) -> str:
    return level.value.upper() if reason == "ok" else f"{level.value.upper()}: {reason}"


def _styled(columns: tuple[str, ...], rows: list[tuple[tuple[str, ...], HealthLevel]]) -> StyledTable:
    """Each row coloured by its level, as the spread matrix colours its rows."""
    return StyledTable(columns, tuple(cells for cells, _ in rows),
                       tuple((HEALTH_CSS[level],) * len(columns) for _, level in rows))


def producer_table(rows: Iterable[ProducerRow]) -> StyledTable:
    return _styled(PRODUCER_COLUMNS, [((r.producer, r.exchange or MISSING, r.instance, _target(r.target_up),
                                        _number(r.trades_per_s, ".1f"), _seconds_ago(r.last_trade_age_s),
                                        _status(r.level, r.reason)), r.level) for r in rows])


def flink_table(rows: Iterable[FlinkRow]) -> StyledTable:
    def state(r: FlinkRow) -> str:
        return MISSING if r.running is None else ("RUNNING" if r.running else "not running")

    def checkpoint(r: FlinkRow) -> str:
        return MISSING if r.last_checkpoint_s is None else f"took {r.last_checkpoint_s:.2f} s"

    return _styled(FLINK_COLUMNS, [((r.job, state(r), checkpoint(r), _number(r.checkpoints_10m, ".0f"),
                                     _status(r.level, r.reason)), r.level) for r in rows])


def alerter_table(rows: Iterable[AlerterRow]) -> StyledTable:
    return _styled(ALERTER_COLUMNS, [((r.instance, _target(r.target_up), _number(r.lag, ".0f"),
                                       _status(r.level, r.reason)), r.level) for r in rows])


def alert_table(alerts: Iterable[FiringAlert], now: datetime) -> StyledTable:
    def since(a: FiringAlert) -> str:
        if a.active_at is None:
            return MISSING
        return format_age(max(0, round((now - a.active_at).total_seconds() * 1000)))

    return _styled(ALERT_COLUMNS, [((a.name, a.severity, a.summary, since(a)), a.level) for a in alerts])


# --- the one function that talks to Prometheus ------------------------------------------------------

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class _BudgetSpent(requests.Timeout):
    """The round as a whole took longer than its budget."""


def _reason(exc: requests.RequestException, timeout: float, budget: float) -> str:
    """A short cause instead of urllib3's paragraph: `connection refused`, `no answer within 2 s`."""
    if isinstance(exc, _BudgetSpent):
        return f"no complete answer within {budget:g} s"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (a CA Python does not trust? REQUESTS_CA_BUNDLE names the CA file)"
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1).strip().lower()
    return type(exc).__name__


def _get(http: requests.Session, url: str, params: Mapping[str, str] | None, timeout: float) -> Any:
    resp = http.get(url, params=params, timeout=timeout, headers={"Accept": "application/json"})
    if resp.status_code in (401, 403):
        raise PrometheusError(f"HTTP {resp.status_code}: the server wants (other) credentials, "
                              "given as https://user:password@host/... in the URL")
    try:
        payload = resp.json()
    except ValueError:
        raise PrometheusError(f"HTTP {resp.status_code}, not JSON (is this Prometheus' base URL?)") from None
    if resp.status_code != 200 and isinstance(payload, dict) and payload.get("status") == "success":
        raise PrometheusError(f"HTTP {resp.status_code}")
    return payload  # an error answer (400, 422, 503) carries its reason: _data() raises with it


def fetch_health(base_url: str, timeout: float = TIMEOUT_S, budget: float = BUDGET_S,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic) -> HealthReport:
    """Ask Prometheus every query and its alerts; never raises. A connection that fails or a
    request that times out ends the round at once (outcome "unreachable"); an answer that is
    not what was asked for is outcome "error"."""
    start = clock()
    shown = redact_url(base_url)
    http = session or requests.Session()

    def remaining() -> float:
        left = budget - (clock() - start)
        if left <= 0:
            raise _BudgetSpent()
        return min(timeout, left)

    try:
        results = {key: vector(_get(http, f"{base_url}/api/v1/query", {"query": q}, remaining()))
                   for key, q in QUERIES.items()}
        report = build_report(results, _get(http, f"{base_url}/api/v1/alerts", None, remaining()))
        return _with(report, "ok", "", clock() - start)
    except (requests.ConnectionError, requests.Timeout) as exc:
        return _with(HealthReport(), "unreachable",
                     f"Prometheus unreachable at {shown} ({_reason(exc, timeout, budget)})", clock() - start)
    except (requests.RequestException, PrometheusError) as exc:
        return _with(HealthReport(), "error", f"Prometheus at {shown} answered badly: {exc}", clock() - start)
    finally:
        if session is None:
            http.close()


def _with(report: HealthReport, outcome: str, error: str, seconds: float) -> HealthReport:
    return HealthReport(report.producers, report.flink, report.alerters, report.alerts, outcome, error, seconds)


class HealthPoller:
    """Asks Prometheus every `every_s` seconds in a daemon thread (one per dashboard process and
    URL, shared by every browser session); the page only reads `latest()`, so a slow or silent
    Prometheus never holds up a page refresh (Streamlit runs a session's fragments one at a time)."""

    def __init__(self, base_url: str, every_s: float, fetch: Callable[[str], HealthReport] = fetch_health,
                 on_report: Callable[[HealthReport], None] | None = None) -> None:
        self.base_url, self.every_s = base_url, every_s
        self._fetch, self._on_report = fetch, on_report
        self._latest: HealthReport | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prometheus-health", daemon=True)

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def latest(self) -> HealthReport | None:
        """The last round's report; None until the first round has ended."""
        with self._lock:
            return self._latest

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                report = self._fetch(self.base_url)
                if self._on_report is not None:
                    self._on_report(report)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any surprise
                log.exception("pipeline health round failed")
                report = _with(HealthReport(), "error", f"pipeline health failed: {type(exc).__name__}: {exc}", 0.0)
            with self._lock:
                self._latest = report
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))
