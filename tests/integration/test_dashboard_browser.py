"""The dashboard in headless Chromium (Debian's), fed by a real Kafka broker.

Drives chromium through chromedriver's W3C WebDriver HTTP API (plain requests, no Selenium)
and checks the rendered DOM: the spread matrix over three exchanges (its colours and a greyed
stale price), the per-asset summary, the spread chart, the alert history, and that the page
refreshes by itself. Screenshots are kept in test-artifacts/ (path printed).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import requests
from confluent_kafka import Producer
from cryptomon.dashboard.state import LEVEL_CSS, STALE_CSS, Level

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium waits on network services that a closed network never answers.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1400",
]

PAGE_STATE_JS = """
const q = (s) => Array.from(document.querySelectorAll(s));
const chart = q('[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]')
  .filter(e => e.querySelector('canvas, svg'));
const tables = q('[data-testid="stTable"]').map(e => e.innerText);
const frames = q('[data-testid="stDataFrame"]');
// The static tables (spread matrix, summary): per table its header and its rows, each cell's
// text, background colour and whether its text is cut off.
const cell = (c) => ({text: c.innerText, background: getComputedStyle(c).backgroundColor,
                      clipped: c.scrollWidth > c.clientWidth + 1});
const grids = q('[data-testid="stTable"]').map(t => ({
  headers: Array.from(t.querySelectorAll('thead th')).map(c => c.innerText),
  rows: Array.from(t.querySelectorAll('tbody tr')).map(tr => Array.from(tr.querySelectorAll('td')).map(cell)),
}));
return {
  text: document.body.innerText,
  chart: chart.length,
  tables: tables,
  grids: grids,
  dataframes: frames.length,
  dataframeCanvas: frames.filter(e => e.querySelector('canvas')).length,
  dataframeCells: frames.map(
    e => Array.from(e.querySelectorAll('td, [role="gridcell"]')).map(c => c.innerText).join('|')),
  exceptions: q('[data-testid="stException"]').map(e => e.innerText),
};
"""


class Browser:
    """A chromedriver-controlled headless Chromium session."""

    def __init__(self) -> None:
        chromedriver, chromium = shutil.which("chromedriver"), shutil.which("chromium")
        if not chromedriver or not chromium:
            pytest.skip("Debian chromium and chromium-driver are needed (scripts/install-system-deps.sh)")
        self.port = harness.free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.driver = subprocess.Popen([chromedriver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.base}/status", timeout=2).json()["value"]["ready"]:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]}}}}
        resp = requests.post(f"{self.base}/session", json=caps, timeout=90).json()
        if "sessionId" not in resp.get("value", {}):
            self.close()
            raise RuntimeError(f"no WebDriver session: {json.dumps(resp)[:500]}")
        self.session = f"{self.base}/session/{resp['value']['sessionId']}"

    def get(self, url: str) -> None:
        requests.post(f"{self.session}/url", json={"url": url}, timeout=60).raise_for_status()

    def js(self, script: str) -> object:
        resp = requests.post(f"{self.session}/execute/sync", json={"script": script, "args": []}, timeout=30)
        resp.raise_for_status()
        return resp.json()["value"]

    def screenshot(self, path: Path) -> Path:
        png = requests.get(f"{self.session}/screenshot", timeout=30).json()["value"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(png))
        return path

    def close(self) -> None:
        if hasattr(self, "session"):
            try:
                requests.delete(self.session, timeout=30)
            except requests.RequestException:
                pass
        harness.stop_process(self.driver, 10)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


class Dashboard:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DASHBOARD_"))}
        full_env.update(PYTHONPATH=str(REPO / "services"), DASHBOARD_REFRESH_S="1", **env)
        self.log = workdir / "dashboard.log"
        self._fh = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cryptomon.dashboard", "--port", str(self.port), "--address", "127.0.0.1"],
            env=full_env, stdout=self._fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dashboard exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}_stcore/health", timeout=2).text == "ok":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"dashboard not healthy:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def wait_page(browser: Browser, cond, timeout: float, what: str, dashboard: Dashboard) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = browser.js(PAGE_STATE_JS)  # type: ignore[assignment]
        assert not state["exceptions"], f"stack trace on the page: {state['exceptions']}"
        if cond(state):
            return state
        time.sleep(1)
    shot = browser.screenshot(ARTIFACTS / "dashboard-failure.png")
    raise AssertionError(f"timed out waiting for {what}; screenshot {shot}\npage text:\n{state.get('text', '')[:2000]}"
                         f"\nstate: {json.dumps({k: v for k, v in state.items() if k != 'text'})[:1500]}"
                         f"\ndashboard log:\n{dashboard.log.read_text()[-2000:]}")


def background(css: str) -> str:
    """`background-color: #f5b5b5; ...` -> `rgb(245, 181, 181)`, as getComputedStyle reports it."""
    hex_colour = css.split("background-color:")[1].split(";")[0].strip().lstrip("#")
    return "rgb({}, {}, {})".format(*(int(hex_colour[i:i + 2], 16) for i in (0, 2, 4)))


def matrix_row(state: dict, asset: str) -> list[dict]:
    """The spread matrix's (the first static table's) row of an asset: text and colour per cell."""
    return next(r for r in state["grids"][0]["rows"] if r and r[0]["text"] == asset)


def matrix_headers(state: dict) -> list[str]:
    return state["grids"][0]["headers"] if state["grids"] else []


def _trade(exchange: str, symbol: str, price: float, n: int, age_s: float = 0) -> dict:
    now = int((time.time() - age_s) * 1000)
    return {"exchange": exchange, "symbol": symbol, "raw_symbol": symbol.replace("-", ""), "trade_id": str(n),
            "price": f"{price:.2f}", "size": "0.015", "side": random.choice(["buy", "sell"]),
            "exchange_ts": now, "received_ts": now + 20}


def test_dashboard_renders_live_data(kafka_bootstrap: str, browser: Browser, tmp_path: Path) -> None:
    sfx = uuid.uuid4().hex[:8]
    trades_t, alerts_t, arb_t = f"trades.raw.{sfx}", f"signals.alerts.{sfx}", f"signals.arbitrage.{sfx}"
    for t in (trades_t, alerts_t, arb_t):
        harness.create_topic(kafka_bootstrap, t, partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    alerts = [
        (alerts_t, "binance:BTC-USDT", {"alert_id": "dash-a1", "type": "volume_anomaly", "exchange": "binance",
                                        "symbol": "BTC-USDT", "window_start": int(time.time() * 1000) - 60000,
                                        "window_end": int(time.time() * 1000), "trade_count": 120,
                                        "volume": "35.2", "threshold": "25", "vwap": "43260.1"}),
        (arb_t, "BTC", {"alert_id": "dash-b1", "type": "arbitrage", "asset": "BTC",
                        "window_start": "2024-01-01T00:00:00Z", "window_end": "2024-01-01T00:00:10Z",
                        "binance_price": "43250.1", "coinbase_price": "43320.5", "spread_usd": "70.4",
                        "spread_bps": "16.3", "buy_exchange": "binance", "sell_exchange": "coinbase",
                        "threshold_usd": "50"}),
    ]
    for topic, key, value in alerts:
        producer.produce(topic, key=key, value=json.dumps(value))
    producer.produce(trades_t, key="binance:BTC-USDT", value=b"{not json")  # must not break the page
    # okx's only BTC trade is five minutes old: the cheapest price of all, shown greyed, never compared.
    producer.produce(trades_t, key="okx:BTC-USDT", value=json.dumps(_trade("okx", "BTC-USDT", 43000, 0, age_s=300)))
    producer.flush(10)

    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            wobble = 40 * ((n % 20) - 10) / 10
            # BTC: kraken 110-190 USD above binance, red against the default 50 USD threshold;
            # ETH: at most 7 USD apart, green (below 25).
            for exchange, symbol, price in (("binance", "BTC-USDT", 43250 + wobble), ("coinbase", "BTC-USD", 43310),
                                            ("kraken", "BTC-USD", 43400),
                                            ("binance", "ETH-USDT", 2250 + wobble / 10), ("coinbase", "ETH-USD", 2253),
                                            ("kraken", "ETH-USD", 2252)):
                producer.produce(trades_t, key=f"{exchange}:{symbol}",
                                 value=json.dumps(_trade(exchange, symbol, price, n)))
            producer.poll(0)
            stop.wait(0.25)
        producer.flush(10)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    dashboard = Dashboard({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TRADES_TOPIC": trades_t,
                           "KAFKA_ALERTS_TOPIC": alerts_t, "KAFKA_ARBITRAGE_TOPIC": arb_t}, tmp_path)
    try:
        browser.get(dashboard.url)
        # The spread matrix and the summary are static HTML tables (st.table); the alert history is
        # a data grid whose cells are mirrored into an accessible table, which is what is read there.
        def matrix_ready(s: dict) -> bool:
            return (s["chart"] >= 1 and s["dataframeCanvas"] >= 1 and len(s["tables"]) >= 2
                    and all(ex in matrix_headers(s) for ex in ("binance", "coinbase", "kraken", "okx"))
                    and any("kraken" in t and "→" in t for t in s["tables"]))

        state = wait_page(browser, matrix_ready, 90, "the spread matrix, its summary, the chart and the alerts",
                          dashboard)
        matrix, summary = state["tables"][0], state["tables"][1]
        assert matrix_headers(state) == ["Asset", "binance", "coinbase", "kraken", "okx"]  # a column per exchange
        red, green, grey = (background(LEVEL_CSS[Level.ALERT]), background(LEVEL_CSS[Level.CALM]),
                            background(STALE_CSS))
        btc, eth = matrix_row(state, "BTC"), matrix_row(state, "ETH")
        # BTC: kraken is the best sell, coloured red with the rest of the row; okx's stale price is grey.
        assert [c["background"] for c in btc] == [red, red, red, red, grey], btc
        assert btc[1]["text"].endswith("USDT · cheapest") and "43400 USD · +" in btc[3]["text"]
        assert btc[4]["text"].startswith("43000 USDT · stale, ")
        assert [c["background"] for c in eth[:4]] == [green] * 4 and eth[4]["text"] == "–", eth
        assert "binance " in summary and "→ kraken 43400" in summary and "stale: okx" in summary
        assert "→ okx" not in summary and "okx 43000" not in summary  # the stale price never counts
        clipped = [c["text"] for g in state["grids"] for r in g["rows"] for c in r if c["clipped"]]
        assert not clipped, f"cut-off table cells: {clipped}"
        assert "Waiting for data" not in state["text"] and "Kafka unreachable" not in state["text"]
        assert "USDT and USDC counted as 1 USD" in state["text"]  # the USDT≈USD policy is labelled
        assert "unreadable records skipped" in state["text"]
        assert not re.search(r"\.[0-9]*0(?![0-9])", matrix), matrix  # prices without trailing zeros

        # Refreshed by itself: the trade counter moves on without a reload.
        def trades_read(s: dict) -> int:
            line = next(ln for ln in s["text"].splitlines() if "trades read" in ln)
            return int(line.split()[0])

        first = trades_read(state)
        wait_page(browser, lambda s: trades_read(s) > first, 30, "the page to refresh itself", dashboard)
        time.sleep(2)  # let the chart draw its latest points before the picture
        shot = browser.screenshot(ARTIFACTS / "dashboard.png")
        print(f"\ndashboard screenshot: {shot}")
        final = browser.js(PAGE_STATE_JS)
        # The alert grid draws on a canvas; glide-data-grid mirrors its cells into an accessible table.
        cells = " ".join(final["dataframeCells"])  # type: ignore[index]
        for want in ("dash-a1", "volume_anomaly", "BTC-USDT on binance", "dash-b1", "arbitrage",
                     "BTC: buy binance, sell coinbase", "spread 70.4 USD"):
            assert want in cells
    finally:
        stop.set()
        feeder.join(10)
        producer.close()
        dashboard.stop()


def test_dashboard_says_kafka_unreachable(browser: Browser, tmp_path: Path) -> None:
    closed = harness.free_port()  # nothing listens here
    dashboard = Dashboard({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}, tmp_path)
    try:
        browser.get(dashboard.url)
        state = wait_page(browser, lambda s: "Kafka unreachable, retrying" in s["text"], 60, "the banner", dashboard)
        assert "Traceback" not in state["text"]
        print(f"\nunreachable screenshot: {browser.screenshot(ARTIFACTS / 'dashboard-unreachable.png')}")
    finally:
        dashboard.stop()


def test_dashboard_waits_for_topics_then_shows_data(kafka_bootstrap: str, browser: Browser, tmp_path: Path) -> None:
    sfx = uuid.uuid4().hex[:8]
    trades_t = f"trades.raw.late.{sfx}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TRADES_TOPIC": trades_t,
           "KAFKA_ALERTS_TOPIC": f"signals.alerts.late.{sfx}", "KAFKA_ARBITRAGE_TOPIC": f"signals.arbitrage.late.{sfx}"}
    dashboard = Dashboard(env, tmp_path)
    try:
        browser.get(dashboard.url)
        state = wait_page(browser, lambda s: "Waiting for data" in s["text"], 60, "the waiting banner", dashboard)
        assert "topics not created yet" in state["text"] and trades_t in state["text"]
        # Topics created later (auto creation is off) are picked up without a restart.
        harness.create_topic(kafka_bootstrap, trades_t, partitions=1)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(trades_t, key="coinbase:SOL-USD", value=json.dumps(_trade("coinbase", "SOL-USD", 101.5, 1)))
        producer.flush(10)
        producer.close()
        # Prices are shown without trailing zeros: the trade's "101.50" is 101.5.
        state = wait_page(browser, lambda s: any("SOL" in t and "101.5 USD" in t for t in s["tables"]), 60,
                          "the late trade", dashboard)
        assert "101.50" not in state["tables"][0] and matrix_headers(state) == ["Asset", "coinbase"]
    finally:
        dashboard.stop()
