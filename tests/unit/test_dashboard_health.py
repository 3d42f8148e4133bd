"""The dashboard's pipeline-health section without a browser: Prometheus API answers -> rows and
green/amber/red levels, the DASHBOARD_PROMETHEUS_URL setting, an unreachable or misbehaving
Prometheus (a local fake server), and the dashboard's own /metrics endpoint."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import harness
import pytest
import requests
import yaml
from cryptomon.dashboard import cli as dashboard_cli
from cryptomon.dashboard import health
from cryptomon.dashboard import metrics as dashboard_metrics
from cryptomon.dashboard.cli import DashboardSettings
from cryptomon.dashboard.health import (
    HEALTH_CSS,
    QUERIES,
    HealthLevel,
    HealthPoller,
    HealthReport,
    Sample,
    alert_table,
    alerter_rows,
    build_report,
    fetch_health,
    firing_alerts,
    flink_rows,
    parse_prometheus_url,
    producer_rows,
    producer_table,
    summary_line,
    vector,
)
from cryptomon.dashboard.state import markdown_inline_escape
from cryptomon.kafka_settings import ConfigError
from cryptomon.metrics import MetricsSettings

REPO = Path(__file__).resolve().parents[2]
GREEN, AMBER, RED = HealthLevel.GREEN, HealthLevel.AMBER, HealthLevel.RED


def answer(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    """An instant query's answer as Prometheus writes it (values are strings)."""
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [1765000000.123, value]} for labels, value in series]}}


def producer(name: str, instance: str = "svc-1:9310", exchange: str | None = None) -> dict[str, str]:
    return {"instance": instance, "producer": name, "exchange": exchange or name}


def up(job: str, instance: str, value: str, **labels: str) -> tuple[dict[str, str], str]:
    return {"__name__": "up", "job": job, "instance": instance, **labels}, value


ALERTS = {"status": "success", "data": {"alerts": [
    {"labels": {"alertname": "CryptomonAlerterLag", "severity": "warning", "instance": "svc-1:9330"},
     "annotations": {"summary": "alerter on svc-1:9330: 80 messages behind"}, "state": "firing",
     "activeAt": "2026-12-07T10:00:00.123456789Z", "value": "8e+01"},
    {"labels": {"alertname": "CryptomonProducerSilent", "severity": "critical", "producer": "kraken",
                "instance": "svc-1:9312"},
     "annotations": {"summary": "producer kraken on svc-1:9312 is down"}, "state": "firing",
     "activeAt": "2026-12-07T10:04:30Z", "value": "0e+00"},
    {"labels": {"alertname": "FlinkJobRestarting", "severity": "warning"}, "annotations": {},
     "state": "pending", "activeAt": "2026-12-07T10:05:00Z", "value": "3e+00"},
]}}


# --- level classification from API payloads ------------------------------------------------------

def test_producers_green_amber_red_from_the_recording_rules_and_up() -> None:
    trades = vector(answer((producer("binance"), "41.25"), (producer("coinbase", "svc-1:9311"), "3"),
                           (producer("okx", "svc-1:9313"), "0")))
    ages = vector(answer((producer("binance"), "0.4"), (producer("coinbase", "svc-1:9311"), "45"),
                         (producer("okx", "svc-1:9313"), "61")))
    ups = vector(answer(up("cryptomon_producer", "svc-1:9310", "1", producer="binance"),
                        up("cryptomon_producer", "svc-1:9311", "1", producer="coinbase"),
                        up("cryptomon_producer", "svc-1:9313", "1", producer="okx"),
                        # kraken's process is gone: only its target's up says it exists.
                        up("cryptomon_producer", "svc-1:9312", "0", producer="kraken"),
                        up("cryptomon_alerter", "svc-1:9330", "1")))
    rows = {r.producer: r for r in producer_rows(trades, ages, ups)}
    assert sorted(rows) == ["binance", "coinbase", "kraken", "okx"]  # the alerter's up is not a producer
    assert (rows["binance"].level, rows["binance"].reason) == (GREEN, "ok")
    assert rows["binance"].trades_per_s == 41.25 and rows["binance"].exchange == "binance"
    assert rows["coinbase"].level is AMBER and "no trade for 45 s" in rows["coinbase"].reason
    assert rows["okx"].level is RED and "(red > 60 s)" in rows["okx"].reason
    kraken = rows["kraken"]
    assert (kraken.level, kraken.reason, kraken.target_up, kraken.last_trade_age_s) == (RED, "target down", False, None)


@pytest.mark.parametrize("target_up, age, level", [
    (True, 0.0, GREEN), (True, 30.0, GREEN), (True, 30.5, AMBER), (True, 60.0, AMBER), (True, 60.5, RED),
    (None, 5.0, GREEN),     # no up series for it (another scrape job): judged by its age
    (True, None, AMBER),    # up, but no trade age recorded yet (just started)
    (False, 0.1, RED),      # a down target is red whatever its last recorded age
])
def test_producer_thresholds(target_up: bool | None, age: float | None, level: HealthLevel) -> None:
    assert health.classify_producer(target_up, age)[0] is level


def test_a_nan_age_counts_as_not_recorded() -> None:
    rows = producer_rows([], vector(answer((producer("mock"), "NaN"))), [])
    assert rows[0].last_trade_age_s is None and rows[0].level is AMBER


def test_flink_jobs_state_and_checkpoints() -> None:
    running = vector(answer(({"job_name": "arbitrage_detector_1_4"}, "1"), ({"job_name": "volume_anomaly"}, "1"),
                            ({"job_name": "slow"}, "1"), ({"job_name": "stuck"}, "1"), ({"job_name": "failing"}, "0")))
    duration = vector(answer(({"job_name": "arbitrage_detector_1_4"}, "0.084"), ({"job_name": "volume_anomaly"}, "12"),
                             ({"job_name": "slow"}, "75"), ({"job_name": "stuck"}, "0.1")))
    completed = vector(answer(({"job_name": "arbitrage_detector_1_4"}, "300"), ({"job_name": "volume_anomaly"}, "280"),
                              ({"job_name": "slow"}, "8"), ({"job_name": "stuck"}, "0")))
    ups = vector(answer(up("flink_jobmanager", "flink-1:9249", "0")))
    rows = {r.job: r for r in flink_rows(running, duration, completed, ups)}
    assert rows["arbitrage_detector_1_4"].level is GREEN
    assert rows["volume_anomaly"].level is AMBER and "took 12 s" in rows["volume_anomaly"].reason
    assert rows["slow"].level is RED and "(red > 60 s)" in rows["slow"].reason
    assert rows["stuck"].level is AMBER and rows["stuck"].reason == "no checkpoint completed in 10 min"
    assert (rows["failing"].level, rows["failing"].reason) == (RED, "not RUNNING")
    assert rows["JobManager flink-1:9249"].level is RED  # its jobs' series vanish with it


@pytest.mark.parametrize("target_up, lag, level", [
    (True, 0.0, GREEN), (True, 10.0, GREEN), (True, 11.0, AMBER), (True, 50.0, AMBER), (True, 51.0, RED),
    (False, 0.0, RED), (True, None, AMBER),
])
def test_alerter_lag_thresholds(target_up: bool, lag: float | None, level: HealthLevel) -> None:
    lag_samples = [] if lag is None else [Sample({"instance": "svc-1:9330"}, lag)]
    rows = alerter_rows(lag_samples, [Sample({"job": "cryptomon_alerter", "instance": "svc-1:9330"},
                                             1.0 if target_up else 0.0)])
    assert [r.level for r in rows] == [level]


def test_firing_alerts_with_their_severity_critical_first() -> None:
    alerts = firing_alerts(ALERTS)
    assert [(a.name, a.severity, a.level) for a in alerts] == [
        ("CryptomonProducerSilent", "critical", RED), ("CryptomonAlerterLag", "warning", AMBER)]  # pending left out
    assert alerts[0].summary == "producer kraken on svc-1:9312 is down"
    assert alerts[1].active_at == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)  # nanoseconds cut
    table = alert_table(alerts, now=datetime(2026, 12, 7, 10, 5, 0, tzinfo=UTC))
    assert table.rows[0] == ("CryptomonProducerSilent", "critical", "producer kraken on svc-1:9312 is down", "30s")
    assert table.style(0, "Severity") == HEALTH_CSS[RED] and table.style(1, "Severity") == HEALTH_CSS[AMBER]


def test_an_alert_of_another_severity_is_amber_and_says_its_labels() -> None:
    payload = {"status": "success", "data": {"alerts": [
        {"labels": {"alertname": "Custom", "team": "ops"}, "state": "firing", "activeAt": "bad time"}]}}
    (alert,) = firing_alerts(payload)
    assert (alert.level, alert.severity, alert.summary, alert.active_at) == (AMBER, "none", "team=ops", None)


def test_report_level_and_summary_line() -> None:
    healthy = build_report({"trades_rate": vector(answer((producer("binance"), "12"))),
                            "trade_age": vector(answer((producer("binance"), "0.3"))),
                            "up": vector(answer(up("cryptomon_producer", "svc-1:9310", "1", producer="binance")))},
                           {"status": "success", "data": {"alerts": []}})
    assert healthy.level is GREEN
    assert summary_line(healthy) == "All green: 1 producer, 0 Flink jobs, 0 alerters; no firing alerts."
    broken = build_report({"up": vector(answer(up("cryptomon_producer", "svc-1:9312", "0", producer="kraken")))},
                          ALERTS)
    assert broken.level is RED
    line = summary_line(broken)
    assert line.startswith("2 red, 1 amber: producer kraken: target down; alert CryptomonProducerSilent (critical)")
    assert line.endswith("alert CryptomonAlerterLag (warning).")
    empty = build_report({}, {"status": "success", "data": {"alerts": []}})
    assert empty.empty and "knows none of the cryptomon targets" in summary_line(empty)


def test_producer_table_text_and_row_colours() -> None:
    rows = producer_rows(vector(answer((producer("binance"), "41.25"), (producer("kraken", "svc-1:9312"), "9.5"))),
                         vector(answer((producer("binance"), "75.2"))),
                         vector(answer(up("cryptomon_producer", "svc-1:9310", "1", producer="binance"),
                                       up("cryptomon_producer", "svc-1:9312", "0", producer="kraken"))))
    table = producer_table(rows)
    assert table.columns == ("Producer", "Exchange", "Instance", "Target", "Trades/s", "Last trade", "Status")
    assert table.rows[0] == ("binance", "binance", "svc-1:9310", "up", "41.2", "1m 15s ago",
                             "RED: no trade for 75 s (red > 60 s)")
    # Its rate over the last minute is still recorded; a down producer sends nothing all the same.
    assert table.rows[1] == ("kraken", "kraken", "svc-1:9312", "down", "–", "–", "RED: target down")
    assert set(table.styles[0]) == {HEALTH_CSS[RED]}


@pytest.mark.parametrize("payload, says", [
    ({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}, "bad_data: parse error"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "not an instant vector"),
    ({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}, "is not a sample"),
    (["not", "an", "object"], "not a JSON object"),
])
def test_answers_that_are_not_what_was_asked_for(payload: Any, says: str) -> None:
    with pytest.raises(health.PrometheusError, match=re.escape(says)):
        vector(payload)


def test_banner_text_escapes_inline_markdown_but_keeps_urls_whole() -> None:
    line = "Flink arbitrage_detector_1_4: *slow*; Prometheus at http://127.0.0.1:9090 (1.5 s)"
    assert markdown_inline_escape(line) == \
        r"Flink arbitrage\_detector\_1\_4: \*slow\*; Prometheus at http://127.0.0.1:9090 (1.5 s)"


# --- the setting -----------------------------------------------------------------------------------

def test_prometheus_url_is_optional_and_normalized() -> None:
    assert DashboardSettings.from_env({}).prometheus_url == ""
    assert DashboardSettings.from_env({"DASHBOARD_PROMETHEUS_URL": "  "}).prometheus_url == ""
    assert parse_prometheus_url("http://127.0.0.1:9090/") == "http://127.0.0.1:9090"
    assert parse_prometheus_url("https://u:pw@mon-1.example:8443/prometheus/") == \
        "https://u:pw@mon-1.example:8443/prometheus"
    assert parse_prometheus_url("http://[::1]:9090") == "http://[::1]:9090"


@pytest.mark.parametrize("value, says", [
    ("localhost:9090", "is not an http:// or https:// URL"),
    ("ftp://mon-1:9090", "is not an http:// or https:// URL"),
    ("http://", "has no host"),
    ("http://mon-1:99999", "has a port that is not one"),
    ("http://mon-1:port", "has a port that is not one"),
    ("http://mon-1:9090/?x=1", "has a ?query or #fragment"),
    ("http://mon-1:9090/api/v1/", "ends in /api/v1"),
    ("http://mon 1:9090", "contains white space"),
])
def test_bad_prometheus_url_names_the_variable_and_the_problem(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match="^DASHBOARD_PROMETHEUS_URL: ") as err:
        DashboardSettings.from_env({"DASHBOARD_PROMETHEUS_URL": value})
    assert says in str(err.value)


def test_a_bad_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        parse_prometheus_url("ftp://admin:s3cret@mon-1:9090")
    assert "s3cret" not in str(err.value) and "ftp://mon-1:9090" in str(err.value)


def test_cryptomon_dashboard_stops_on_a_bad_url(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DASHBOARD_PROMETHEUS_URL", "mon-1:9090")
    assert dashboard_cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryptomon-dashboard: configuration error: DASHBOARD_PROMETHEUS_URL: 'mon-1:9090' is not")
    assert len(err.strip().splitlines()) == 1


def test_the_dashboard_reads_metrics_port_like_the_services() -> None:
    settings = DashboardSettings.from_env({"METRICS_PORT": "9340", "METRICS_ADDRESS": "0.0.0.0"})
    assert settings.metrics == MetricsSettings(port=9340, address="0.0.0.0")
    assert not DashboardSettings.from_env({}).metrics.enabled
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        DashboardSettings.from_env({"METRICS_PORT": "http"})


def test_cryptomon_dashboard_runs_streamlit_through_the_metrics_launcher() -> None:
    cmd = dashboard_cli.build_command(8501, "127.0.0.1", [])
    assert cmd[1:5] == ["-m", "cryptomon.dashboard.serve", "run", str(dashboard_cli.APP)]


# --- Prometheus unreachable or misbehaving -----------------------------------------------------------

class FakePrometheus:
    """A local HTTP server answering /api/v1/query and /api/v1/alerts from canned answers."""

    def __init__(self, answers: dict[str, Any], status: int = 200, raw: bytes | None = None) -> None:
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlsplit(self.path)
                if url.path == "/api/v1/query":
                    query = parse_qs(url.query)["query"][0]
                    fake.queries.append(query)
                    body: Any = answers.get(query, answer())
                elif url.path == "/api/v1/alerts":
                    body = answers.get("alerts", {"status": "success", "data": {"alerts": []}})
                else:
                    body = {"status": "error", "error": "not found"}
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_prometheus() -> Iterator[type[FakePrometheus]]:
    started: list[FakePrometheus] = []

    def make(*args: Any, **kwargs: Any) -> FakePrometheus:
        started.append(FakePrometheus(*args, **kwargs))
        return started[-1]

    yield make  # type: ignore[misc]
    for f in started:
        f.close()


def test_fetch_asks_every_query_and_the_alerts(fake_prometheus) -> None:
    prom = fake_prometheus({
        QUERIES["trades_rate"]: answer((producer("mock", "svc-1:9315"), "20")),
        QUERIES["trade_age"]: answer((producer("mock", "svc-1:9315"), "0.2")),
        QUERIES["up"]: answer(up("cryptomon_producer", "svc-1:9315", "1", producer="mock")),
        "alerts": ALERTS,
    })
    report = fetch_health(prom.url)
    assert report.outcome == "ok" and report.error == ""
    assert sorted(prom.queries) == sorted(QUERIES.values())
    assert [(r.producer, r.level) for r in report.producers] == [("mock", GREEN)]
    assert [a.name for a in report.alerts] == ["CryptomonProducerSilent", "CryptomonAlerterLag"]
    assert report.level is RED  # a critical alert fires


def test_unreachable_prometheus_is_a_report_not_an_exception() -> None:
    closed = harness.free_port()  # nothing listens here
    report = fetch_health(f"http://127.0.0.1:{closed}")
    assert report.outcome == "unreachable" and report.level is RED and report.empty
    assert report.error == f"Prometheus unreachable at http://127.0.0.1:{closed} (connection refused)"
    assert summary_line(report) == report.error


def test_a_silent_prometheus_costs_one_timeout_not_one_per_query() -> None:
    # Accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        start = time.monotonic()
        report = fetch_health(f"http://user:pw@127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        took = time.monotonic() - start
    assert report.outcome == "unreachable" and "(no answer within 0.3 s)" in report.error
    assert "pw" not in report.error  # credentials never reach the page
    assert took < 1.5, f"{took:.2f} s: the round did not stop at the first timeout"


def test_the_round_has_a_budget(fake_prometheus) -> None:
    prom = fake_prometheus({})
    ticks = iter(range(100))
    report = fetch_health(prom.url, budget=3, clock=lambda: float(next(ticks)))
    assert report.outcome == "unreachable" and "no complete answer within 3 s" in report.error


@pytest.mark.parametrize("status, raw, says", [
    (200, b"<html>login</html>", "HTTP 200, not JSON (is this Prometheus' base URL?)"),
    (401, b"<html>401</html>", "HTTP 401: the server wants (other) credentials, given as "
                               "https://user:password@host/... in the URL"),
    (404, b"404 page not found", "HTTP 404, not JSON (is this Prometheus' base URL?)"),
    (503, json.dumps({"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}).encode(),
     "unavailable: TSDB not ready"),
])
def test_a_misbehaving_prometheus_is_an_error_report(fake_prometheus, status: int, raw: bytes, says: str) -> None:
    prom = fake_prometheus({}, status=status, raw=raw)
    report = fetch_health(prom.url)
    assert report.outcome == "error" and report.level is AMBER
    assert report.error == f"Prometheus at {prom.url} answered badly: {says}"


def test_the_poller_keeps_the_latest_report_and_survives_a_failing_round() -> None:
    rounds: list[str] = []
    seen: list[HealthReport] = []

    def fetch(url: str) -> HealthReport:
        rounds.append(url)
        if len(rounds) == 2:
            raise RuntimeError("boom")  # fetch_health never raises; the thread survives it anyway
        return HealthReport(outcome="ok")

    poller = HealthPoller("http://mon-1:9090", every_s=0.05, fetch=fetch, on_report=seen.append)
    assert poller.latest() is None  # nothing asked yet: the page says it is asking
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while len(rounds) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        poller.stop()
    assert len(rounds) >= 4 and set(rounds) == {"http://mon-1:9090"}
    assert poller.latest() is not None and poller.latest().outcome == "ok"
    assert len(seen) == len(rounds) - 1  # every round but the one that raised was counted


def test_a_page_read_never_waits_for_prometheus() -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_fetch(url: str) -> HealthReport:
        entered.set()
        release.wait(10)
        return HealthReport()

    poller = HealthPoller("http://mon-1:9090", every_s=60, fetch=slow_fetch).start()
    try:
        assert entered.wait(5)
        start = time.monotonic()
        assert poller.latest() is None
        assert time.monotonic() - start < 0.1
    finally:
        release.set()
        poller.stop()


# --- the recording rules the dashboard reads are the role's ---------------------------------------

@pytest.mark.parametrize("path", ["roles/monitoring/files/cryptomon-recording.yml",
                                  "tests/fixtures/dashboard/cryptomon-recording.yml"])
def test_every_rule_the_dashboard_queries_is_recorded(path: str) -> None:
    if not (REPO / path).is_file():
        pytest.skip(f"{path} is not in this checkout")
    groups = yaml.safe_load((REPO / path).read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    queried = {q for q in QUERIES.values() if q.startswith("cryptomon:")}
    assert queried and queried <= recorded, queried - recorded


# --- the dashboard's own /metrics ------------------------------------------------------------------

@pytest.fixture
def metrics_port() -> Iterator[int]:
    dashboard_metrics.stop()
    yield harness.free_port()
    dashboard_metrics.stop()


def test_metrics_start_once_per_process(metrics_port: int) -> None:
    settings = MetricsSettings(port=metrics_port)
    first = dashboard_metrics.ensure_started(settings, prometheus_configured=True)
    # Streamlit runs app.py again for every session: the same endpoint, no second bind.
    assert dashboard_metrics.ensure_started(settings, prometheus_configured=True) is first
    assert dashboard_metrics.running() is first is not None
    first.observe_query("ok", 0.02)
    first.observe_query("unreachable", 2.0)
    first.observe_query("ok", 0.01)
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "cryptomon_dashboard_up 1.0" in text
    assert 'cryptomon_dashboard_info{prometheus_configured="true",version="' in text
    assert 'cryptomon_dashboard_health_queries_total{outcome="ok"} 2.0' in text
    assert 'cryptomon_dashboard_health_queries_total{outcome="unreachable"} 1.0' in text
    assert 'cryptomon_dashboard_health_queries_total{outcome="error"} 0.0' in text
    assert "cryptomon_dashboard_health_query_seconds_count 3.0" in text
    assert "process_resident_memory_bytes" in text


def test_no_metrics_port_no_endpoint(metrics_port: int) -> None:
    assert dashboard_metrics.ensure_started(MetricsSettings(), prometheus_configured=False) is None
    assert dashboard_metrics.running() is None


def test_a_taken_metrics_port_is_a_configuration_error(metrics_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metrics_port))
        taken.listen(1)
        with pytest.raises(ConfigError, match="METRICS_ADDRESS/METRICS_PORT: cannot listen on 127.0.0.1:"):
            dashboard_metrics.ensure_started(MetricsSettings(port=metrics_port), prometheus_configured=False)
    assert dashboard_metrics.running() is None


def test_the_launcher_stops_on_a_bad_setting_before_streamlit(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "services"), "METRICS_PORT": "99999"}
    proc = subprocess.run([sys.executable, "-m", "cryptomon.dashboard.serve", "run", "app.py"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("cryptomon-dashboard: configuration error: METRICS_PORT: '99999' is not a port "
                                   "(1-65535); 0 or unset: no metrics endpoint")
