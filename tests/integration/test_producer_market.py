"""Whole-market symbol sets against the replay servers' REST lists and enforced limits: resolution,
sharding within Binance's limits (the server enforces them, so exceeding one fails the test),
an exchange dropping streams above its limit, reconnect storms under the connection-attempt
limit, the REST list unavailable at start (retry; start on the cache), the daily refresh, and
a pattern that matches nothing."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websocket
from cryptomon.producer import symbols
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.feed import Feed
from cryptomon.producer.kraken import KrakenAdapter
from cryptomon.producer.registry import adapter_class, exchange_names, replay_class
from cryptomon.producer.schema import Trade
from cryptomon.replay import listing
from cryptomon.replay.binance import BinanceReplay
from cryptomon.replay.kraken import KrakenReplay

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"
FAST = {"PRODUCER_BACKOFF_INITIAL_S": "0.05", "PRODUCER_BACKOFF_MAX_S": "0.2", "PRODUCER_ACK_TIMEOUT_S": "3"}
USDT_TRADING = sorted(s["symbol"] for s in listing.binance()["symbols"]
                      if s["quoteAsset"] == "USDT" and s["status"] == "TRADING" and s["symbol"].isascii())


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def feeding(feed: Feed) -> Iterator[list[Trade]]:
    out: list[Trade] = []
    lock = threading.Lock()

    def emit(t: Trade) -> None:
        with lock:
            out.append(t)

    stop = threading.Event()
    t = threading.Thread(target=feed.run, args=(emit, stop), daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join(15)
        assert not t.is_alive(), "feed did not stop"


def binance_feed(srv: BinanceReplay, symbols: str, **env: str) -> Feed:
    config = ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": symbols, "BINANCE_STREAM_URL": srv.url + "/stream",
                                                 "BINANCE_REST_URL": srv.url.replace("ws://", "http://"),
                                                 **FAST, **env})
    return Feed(config, BinanceAdapter)


def streams_per_connection(srv: BinanceReplay) -> list[int]:
    return sorted(len(c.subs) for c in list(srv._conns.values()) if not c.ws.closed.is_set())


def test_every_binance_usdt_pair_on_several_connections_within_the_limits(caplog):
    caplog.set_level(logging.INFO)
    symbols._SKIPPED_SEEN.clear()  # logged once per process: make this test see it
    assert len(USDT_TRADING) >= 400
    with BinanceReplay(ping_interval=1.0) as srv:  # real limits: 1024 streams, 5 msg/s, 300 attempts/5 min
        feed = binance_feed(srv, "*USDT")
        with feeding(feed) as out:
            wait_for(lambda: feed.connections() == 3 and srv.ready_count() == 3, what="3 connections")
            srv.publish(2)
            wait_for(lambda: len(out) == 2 * len(USDT_TRADING), what="two trades per market")
            assert streams_per_connection(srv) == [172, 172, 173]
            time.sleep(1.5)  # pongs to the 1 s pings count against 5 msg/s too
    assert {t.raw_symbol for t in out} == set(USDT_TRADING)
    assert srv.stats.rate_limit_closes == 0 and srv.stats.connect_rejects == 0 and srv.stats.pong_timeouts == 0
    assert "*USDT resolved to 517 markets" in caplog.text
    assert "1 market(s) skipped, not normalizable to BASE-QUOTE: 币安人生USDT" in caplog.text


def test_binance_server_enforces_streams_and_connection_attempts():
    """The stand-in must enforce what the tests rely on."""
    with BinanceReplay() as srv:
        ws = websocket.create_connection(srv.url + "/stream", timeout=5)
        streams = ",".join(f'"c{i}usdt@trade"' for i in range(1025))
        ws.send(f'{{"method":"SUBSCRIBE","params":[{streams}],"id":1}}')
        opcode, data = None, b""
        while opcode != websocket.ABNF.OPCODE_CLOSE:
            opcode, data = ws.recv_data(control_frame=True)
        assert int.from_bytes(data[:2], "big") == 1008 and b"Too many streams" in data
    with BinanceReplay() as srv:
        opened = []
        for _ in range(300):
            opened.append(websocket.create_connection(srv.url + "/stream", timeout=5))
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(srv.url + "/stream", timeout=5)
        assert exc.value.status_code == 429 and srv.stats.connect_rejects == 1
        for ws in opened:
            ws.close()


def test_an_exchange_dropping_streams_above_its_limit_is_resharded(caplog):
    symbols = ",".join(f"C{i:03d}USDT" for i in range(300))
    with BinanceReplay(max_streams=100, over_limit="drop") as srv:  # silently keeps 100 per connection
        feed = binance_feed(srv, symbols, PRODUCER_STREAMS_PER_CONNECTION="150")
        with feeding(feed) as out:
            wait_for(lambda: feed.per_connection == 100 and srv.ready_count() == 3 and feed.connections() == 3,
                     what="resharded onto 3 connections")
            srv.publish(1)
            wait_for(lambda: len({t.raw_symbol for t in out}) == 300, what="every market")
    assert srv.streams_dropped >= 100
    assert "binance kept 100 of 150 streams on this connection" in caplog.text
    assert caplog.text.count("lowering streams per connection to 100") == 1


def test_a_venue_silently_ignoring_subscriptions_above_a_limit_is_resharded(caplog):
    """Kraken-style per-symbol acks: 20 of 30 answered, the rest never. One error line, smaller
    shards, every market served."""
    symbols = [f"{a}/USD" for a in listing.ASSETS[:30]]
    with KrakenReplay(symbols, max_symbols=20) as srv:
        config = ProducerConfig.from_env("kraken", {"KRAKEN_SYMBOLS": ",".join(symbols),
                                                    "KRAKEN_STREAM_URL": srv.url + "/v2",
                                                    "PRODUCER_STREAMS_PER_CONNECTION": "30", **FAST,
                                                    "PRODUCER_ACK_TIMEOUT_S": "1"})
        feed = Feed(config, KrakenAdapter)
        with feeding(feed) as out:
            wait_for(lambda: feed.per_connection == 20 and feed.connections() == 2, what="resharded onto 2")
            srv.publish(1)
            wait_for(lambda: len({t.symbol for t in out}) == 30, what="every market")
    assert "acknowledged only 20 of 30 subscriptions on this connection" in caplog.text
    assert caplog.text.count("lowering streams per connection to 20") == 1


def test_reconnect_storm_never_exceeds_the_connection_attempt_limit(caplog):
    """Every connection is closed every 50 ms: the shards come back at once each time, until the
    process-wide limiter holds them at Binance's 300 attempts per 5 minutes."""
    with BinanceReplay(rate=20) as srv:
        feed = binance_feed(srv, ",".join(f"C{i:03d}USDT" for i in range(30)), PRODUCER_STREAMS_PER_CONNECTION="10")
        with feeding(feed):
            wait_for(lambda: srv.ready_count() == 3, what="3 connections")
            storm = srv.run_script([{"every": 0.05, "do": "close"}])
            wait_for(lambda: srv.stats.connections >= 300, timeout=90, what="300 attempts")
            time.sleep(2)
            assert srv.stats.connections == 300
            srv._stop.set()  # ends the storm script
            storm.join(2)
    assert srv.stats.connect_rejects == 0
    assert "connection attempt limit reached (300 per 300 s)" in caplog.text


def test_rest_list_down_at_start_retries_with_backoff_then_resolves(caplog):
    with BinanceReplay() as srv:
        srv.rest_failures = 2
        feed = binance_feed(srv, "*FDUSD")
        with feeding(feed):
            wait_for(lambda: feed.connections() == 1, what="subscribed after two failed fetches")
    assert srv.rest_requests == 3
    assert caplog.text.count("symbol list unavailable") == 2 and "no cached list" in caplog.text
    assert len(feed.resolved) == 39 and feed.source == "rest"


def test_rest_list_down_at_start_with_a_cache_starts_on_it_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cache = tmp_path / "symbols-binance.json"
    with BinanceReplay() as srv:
        env = {"PRODUCER_SYMBOLS_CACHE": str(cache)}
        first = binance_feed(srv, "*FDUSD", **env)
        with feeding(first):
            wait_for(lambda: first.connections() == 1, what="first run")
        assert cache.exists()
        srv.rest_failures = 1_000_000   # the exchange's REST API is down at the next start
        second = binance_feed(srv, "*FDUSD", **env)
        with feeding(second) as out:
            wait_for(lambda: second.connections() == 1, timeout=5, what="started on the cache at once")
            assert second.source == "cache" and len(second.resolved) == 39
            srv.publish(1)
            wait_for(lambda: len(out) == 39, what="trades on the cached list")
            srv.rest_failures = 0       # back: the next retry leaves the cache
            wait_for(lambda: second.source == "rest", timeout=10, what="list fetched again")
    assert "starting on the cached list" in caplog.text and str(cache) in caplog.text
    assert "leaving the cached list" in caplog.text


def test_daily_refresh_reconnects_only_the_changed_connection(caplog):
    caplog.set_level(logging.INFO)
    payload = listing.binance()
    with BinanceReplay(listing=payload) as srv:
        feed = binance_feed(srv, "*FDUSD", PRODUCER_SYMBOLS_REFRESH_S="1", PRODUCER_STREAMS_PER_CONNECTION="20")
        with feeding(feed) as out:
            wait_for(lambda: srv.ready_count() == 2 and feed.connections() == 2, what="2 connections")
            before = srv.stats.connections
            gone = next(s for s in payload["symbols"] if s["symbol"] == "ETHFDUSD")
            gone["status"] = "BREAK"
            payload["symbols"].append({**gone, "symbol": "ZZZFDUSD", "baseAsset": "ZZZ", "status": "TRADING"})
            wait_for(lambda: "ZZZFDUSD" in {m.raw for m in feed.resolved}, timeout=10, what="refresh")
            wait_for(lambda: any("zzzfdusd@trade" in c.subs for c in list(srv._conns.values())),
                     what="the new market subscribed")
            srv.publish(1)
            wait_for(lambda: "ZZZFDUSD" in {t.raw_symbol for t in out}, what="the new market's trades")
    assert srv.stats.connections == before + 1  # one shard reconnected, the other kept its connection
    assert "symbol set changed: +1 ZZZFDUSD -1 ETHFDUSD" in caplog.text
    assert "ETHFDUSD" not in {m.raw for m in feed.resolved}


@pytest.mark.parametrize("exchange, pattern", [("binance", "*USDT"), ("coinbase", "*-USD"), ("kraken", "*/USD"),
                                               ("okx", "*-USDT"), ("bybit", "*USDT")])
def test_whole_market_patterns_resolve_on_every_exchange(exchange, pattern):
    cls = adapter_class(exchange)
    with replay_class(exchange)(rate=2, keep=200) as srv:
        config = ProducerConfig.from_env(exchange, {cls.symbols_var: pattern, cls.url_var: srv.url + cls.replay_path,
                                                    cls.rest_var: srv.url.replace("ws://", "http://"), **FAST})
        feed = Feed(config, cls)
        with feeding(feed) as out:
            wait_for(lambda: feed.resolved and feed.connections() == len(feed.shards), what="all connections")
            wait_for(lambda: len({t.symbol for t in out}) == len(feed.resolved), what="a trade on every market")
    assert len(feed.shards) == -(-len(feed.resolved) // cls.limits.default_streams_per_connection)
    assert len(feed.resolved) >= 100 and feed.stats.rejected == 0
    assert srv.stats.connect_rejects == 0 and srv.stats.rate_limit_closes == 0


def run_cli(exchange: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.endswith(("_SYMBOLS", "_PRODUCTS", "_URL"))}
    full.update({"PYTHONPATH": str(SERVICES), **FAST, **env})
    return subprocess.run([sys.executable, "-m", "cryptomon.producer.cli", exchange, "--stdout"], env=full,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_a_pattern_that_matches_nothing_is_one_line_and_exit_2():
    with BinanceReplay() as srv:
        res = run_cli("binance", {"BINANCE_SYMBOLS": "*XYZ", "BINANCE_STREAM_URL": srv.url + "/stream",
                                  "BINANCE_REST_URL": srv.url.replace("ws://", "http://")})
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1 and re.search(r"BINANCE_SYMBOLS: '\*XYZ' matches none of the \d{3} "
                                          r"trading markets of binance", errors[0]), res.stderr
    assert "Traceback" not in res.stderr


def test_the_replay_cli_offers_the_registry_exchanges():
    res = subprocess.run([sys.executable, "-m", "cryptomon.replay", "nasdaq"],
                         env={**os.environ, "PYTHONPATH": str(SERVICES)},
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2 and "invalid choice: 'nasdaq'" in res.stderr
    assert all(name in res.stderr for name in exchange_names(real_only=True)) and "mock" not in res.stderr
