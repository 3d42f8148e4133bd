"""The dashboard's pipeline-health section in headless Chromium, fed by a real Prometheus.

Debian's /usr/bin/prometheus runs as a local process on a free port, with the monitoring role's
recording rules (a copy in tests/fixtures/dashboard/) and one alert rule, scraping a real mock
producer (`cryptomon.producer mock --stdout` with METRICS_PORT: no Kafka needed) under the job
name and labels the role gives producers, every second. The page shows the producer green;
once the producer is stopped, its row turns red and the producer-silent alert fires. The
dashboard's own /metrics is up before anyone opens the page and counts the health queries.
Screenshots are kept in test-artifacts/ (paths printed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import requests
import yaml
from cryptomon.dashboard.health import HEALTH_CSS, HealthLevel
from integration.test_dashboard_browser import ARTIFACTS, Browser, Dashboard, background, wait_page

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RECORDING_RULES = REPO / "tests/fixtures/dashboard/cryptomon-recording.yml"
PRODUCER_LABEL = "mock"
# The down half of the role's CryptomonProducerSilent (templates/cryptomon-alerts.yml.j2), at once
# instead of after 60 s.
ALERT_RULES = {"groups": [{"name": "dashboard-health-test", "rules": [{
    "alert": "CryptomonProducerSilent", "expr": 'up{job="cryptomon_producer"} == 0', "for": "0s",
    "labels": {"cause": "down", "severity": "critical"},
    "annotations": {"summary": "producer {{ $labels.producer }} on {{ $labels.instance }} is down"}}]}]}


def start_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("wb") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, env=env)


class Producer:
    """A mock producer printing its trades to nowhere, with its /metrics on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.metrics_port = harness.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MOCK_", "METRICS_", "PRODUCER_"))}
        env.update(PYTHONPATH=str(REPO / "services"), METRICS_PORT=str(self.metrics_port),
                   METRICS_ADDRESS="127.0.0.1", MOCK_RATE="20", CRYPTOMON_ENV_FILE="")
        self.log = workdir / "producer.log"
        self.proc = start_logged([sys.executable, "-m", "cryptomon.producer", "mock", "--stdout"], self.log, env)
        wait_http(f"http://127.0.0.1:{self.metrics_port}/metrics", "cryptomon_producer_trades_total", self.proc,
                  self.log)

    def stop(self) -> None:
        harness.stop_process(self.proc, 10)


class Prometheus:
    """Debian's Prometheus on a free loopback port, scraping and evaluating every second."""

    def __init__(self, workdir: Path, producer_port: int) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).is_file():
            pytest.skip("Debian's prometheus package is needed (scripts/install-system-deps.sh unit)")
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = workdir / "cryptomon-recording.yml"
        shutil.copy(RECORDING_RULES, rules)
        alerts = workdir / "alerts.yml"
        alerts.write_text(yaml.safe_dump(ALERT_RULES))
        # The role's scrape job for producers: job cryptomon_producer, instance = inventory
        # host:port, producer = the systemd instance name.
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(rules), str(alerts)],
            "scrape_configs": [{"job_name": "cryptomon_producer", "static_configs": [{
                "targets": [f"127.0.0.1:{producer_port}"],
                "labels": {"instance": f"svc-1:{producer_port}", "producer": PRODUCER_LABEL}}]}],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = workdir / "prometheus.log"
        self.proc = start_logged([binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"], self.log)
        wait_http(f"{self.url}/-/ready", "", self.proc, self.log)

    def query(self, expr: str) -> list[dict]:
        return requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]

    def stop(self) -> None:
        harness.stop_process(self.proc, 15)


def wait_http(url: str, want: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            resp = requests.get(url, timeout=2)
            if resp.status_code == 200 and want in resp.text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def producer(tmp_path: Path) -> Iterator[Producer]:
    p = Producer(tmp_path)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def prometheus(tmp_path: Path, producer: Producer) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path, producer.metrics_port)
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture
def start_dashboard(tmp_path: Path) -> Iterator:
    started: list[Dashboard] = []

    def start(env: dict[str, str]) -> Dashboard:
        # Kafka is not part of this test: the market sections say it is unreachable.
        full = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{harness.free_port()}", **env}
        started.append(Dashboard(full, tmp_path))
        return started[-1]

    yield start
    for d in started:
        d.stop()


def health_grid(state: dict, first_header: str) -> list[list[dict]]:
    """The rows (text and colour per cell) of the health table whose first column is `first_header`."""
    return next((g["rows"] for g in state["grids"] if g["headers"][:1] == [first_header]), [])


def producer_row(state: dict) -> list[dict] | None:
    return next((r for r in health_grid(state, "Producer") if r and r[0]["text"] == PRODUCER_LABEL), None)


def row_level(row: list[dict] | None) -> HealthLevel | None:
    """The level whose colour every cell of the row has."""
    if not row:
        return None
    colours = {c["background"] for c in row}
    return next((lv for lv in HealthLevel if colours == {background(HEALTH_CSS[lv])}), None)


SCROLL_TO_HEALTH_JS = """
const heading = Array.from(document.querySelectorAll('h1, h2, h3')).find(h => h.innerText.trim() === 'Pipeline health');
if (heading) heading.scrollIntoView({block: 'start'});
return Boolean(heading);
"""


def health_screenshot(browser: Browser, name: str) -> Path:
    """The page scrolled to the health section (its tables are below the market ones)."""
    assert browser.js(SCROLL_TO_HEALTH_JS), "no Pipeline health heading"
    time.sleep(0.5)
    return browser.screenshot(ARTIFACTS / name)


def metric_value(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_health_turns_red_when_the_producer_stops(producer: Producer, prometheus: Prometheus, browser: Browser,
                                                  start_dashboard) -> None:
    metrics_port = harness.free_port()
    dashboard = start_dashboard({"DASHBOARD_PROMETHEUS_URL": prometheus.url + "/",
                                 "METRICS_PORT": str(metrics_port), "METRICS_ADDRESS": "127.0.0.1"})
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    # Up before any browser has opened the page (Streamlit runs app.py only for a session).
    before = requests.get(metrics_url, timeout=5).text
    assert metric_value(before, "cryptomon_dashboard_up") == 1
    assert 'cryptomon_dashboard_info{prometheus_configured="true"' in before

    browser.get(dashboard.url)

    def healthy(s: dict) -> bool:
        row = producer_row(s)
        return (row_level(row) is HealthLevel.GREEN and row[3]["text"] == "up"
                and row[4]["text"] not in ("–", "0.0") and "Pipeline health: All green: 1 producer" in s["text"])

    state = wait_page(browser, healthy, 90, "a green producer row with its trade rate", dashboard)
    row = producer_row(state)
    assert [c["text"] for c in row[:4]] == [PRODUCER_LABEL, "mock", f"svc-1:{producer.metrics_port}", "up"]
    assert row[5]["text"].endswith(" s ago") and row[6]["text"] == "GREEN"
    # rate() over [1m] with only seconds of samples divides by the whole minute: low, not zero.
    assert float(row[4]["text"]) > 0
    assert "No alert is firing." in state["text"] and "Prometheus unreachable" not in state["text"]
    print(f"\nhealthy screenshots: {browser.screenshot(ARTIFACTS / 'dashboard-health-top.png')}, "
          f"{health_screenshot(browser, 'dashboard-health.png')}")

    # Reloading runs app.py again in the same process: the metrics endpoint is not started twice.
    browser.get(dashboard.url)
    wait_page(browser, healthy, 60, "the green row after a reload", dashboard)
    assert "No /metrics endpoint" not in browser.js("return document.body.innerText;")
    after = requests.get(metrics_url, timeout=5).text
    assert metric_value(after, 'cryptomon_dashboard_health_queries_total{outcome="ok"}') >= 1

    producer.stop()
    stopped = time.monotonic()

    def down(s: dict) -> bool:
        row = producer_row(s)
        return (row_level(row) is HealthLevel.RED and row[3]["text"] == "down"
                and any(r[0]["text"] == "CryptomonProducerSilent" for r in health_grid(s, "Firing alert")))

    state = wait_page(browser, down, 30, "the producer row to turn red and its alert to fire", dashboard)
    took = time.monotonic() - stopped
    print(f"\nred {took:.1f} s after the producer stopped")
    row = producer_row(state)
    assert row[6]["text"] == "RED: target down" and row[4]["text"] == "–"  # no rate for a producer that is gone
    (alert,) = [r for r in health_grid(state, "Firing alert") if r[0]["text"] == "CryptomonProducerSilent"]
    assert alert[1]["text"] == "critical" and row_level(alert) is HealthLevel.RED
    assert alert[2]["text"] == f"producer {PRODUCER_LABEL} on svc-1:{producer.metrics_port} is down"
    assert "Pipeline health: 2 red: producer mock: target down; alert CryptomonProducerSilent (critical)." \
        in state["text"]
    print(f"red screenshot: {health_screenshot(browser, 'dashboard-health-red.png')}")


def test_health_says_prometheus_unreachable_and_the_page_lives_on(browser: Browser, start_dashboard) -> None:
    closed = harness.free_port()  # nothing listens here
    dashboard = start_dashboard({"DASHBOARD_PROMETHEUS_URL": f"http://127.0.0.1:{closed}"})
    browser.get(dashboard.url)
    want = f"Prometheus unreachable at http://127.0.0.1:{closed} (connection refused)"
    state = wait_page(browser, lambda s: s["text"].count(want) == 2 and "Kafka unreachable" in s["text"], 60,
                      "the unreachable line at the top and in the section", dashboard)
    assert "Traceback" not in state["text"]
    print(f"\nunreachable screenshot: {browser.screenshot(ARTIFACTS / 'dashboard-health-unreachable.png')}")


def test_health_not_configured(browser: Browser, start_dashboard) -> None:
    dashboard = start_dashboard({})
    browser.get(dashboard.url)
    state = wait_page(browser, lambda s: "Not configured: set DASHBOARD_PROMETHEUS_URL" in s["text"], 60,
                      "the not-configured caption", dashboard)
    assert "Pipeline health:" not in state["text"] and "Prometheus unreachable" not in state["text"]
