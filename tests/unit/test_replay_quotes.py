"""The replay servers' top-of-book channels, read by the real adapters over local sockets (no
Kafka): every venue's messages parse into quotes, a book set by a test or a script reaches the
producer (the way later tests script an arbitrage opportunity), a crossed book is counted and
dropped, a silenced market goes quiet, resends pass the ordering rule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptomon.kafka_settings import ConfigError
from cryptomon.producer.base import WebSocketAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.feed import Feed
from cryptomon.producer.quote import Quote
from cryptomon.producer.registry import adapter_class, replay_class
from cryptomon.producer.schema import Trade
from cryptomon.replay.bybit import BybitReplay
from cryptomon.replay.cli import load_script

VENUES = {  # exchange -> (its own symbol, the normalized one)
    "binance": ("BTCUSDT", "BTC-USDT"),
    "coinbase": ("BTC-USD", "BTC-USD"),
    "kraken": ("BTC/USD", "BTC-USD"),
    "okx": ("BTC-USDT", "BTC-USDT"),
    "bybit": ("BTCUSDT", "BTC-USDT"),
}
FAST = {"PRODUCER_BACKOFF_INITIAL_S": "0.05", "PRODUCER_BACKOFF_MAX_S": "0.2", "PRODUCER_ACK_TIMEOUT_S": "3"}


def wait_for(cond: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def config(exchange: str, srv, symbols: str, **env: str) -> ProducerConfig:
    cls = adapter_class(exchange)
    return ProducerConfig.from_env(exchange, {cls.symbols_var: symbols, cls.url_var: srv.url + cls.replay_path,
                                              "PRODUCER_QUOTES": "true", **FAST, **env})


@contextmanager
def running(adapter: WebSocketAdapter | Feed) -> Iterator[tuple[list[Trade], list[Quote]]]:
    trades: list[Trade] = []
    quotes: list[Quote] = []
    stop = threading.Event()
    t = threading.Thread(target=adapter.run, args=(trades.append, stop, quotes.append), daemon=True)
    t.start()
    try:
        yield trades, quotes
    finally:
        stop.set()
        t.join(10)
        assert not t.is_alive(), "adapter did not stop"


@pytest.mark.parametrize("exchange", list(VENUES))
def test_each_replay_serves_quotes_the_adapter_reads_and_a_scripted_book_reaches_it(exchange):
    raw, symbol = VENUES[exchange]
    with replay_class(exchange)([raw], rate=0) as srv:
        srv.publish(3)
        a = adapter_class(exchange)(config(exchange, srv, raw))
        with running(a) as (trades, quotes):
            wait_for(lambda: quotes, "the first book")  # snapshot on subscribe (Binance: the writer's first send)
            srv.publish(5)
            wait_for(lambda: len(trades) >= 5 and quotes[-1].bid == srv.markets[raw].quote().bid, "books follow trades")
            # A scripted opportunity: this venue's book set to a chosen bid and ask.
            srv.set_quote(raw, "59000.10", "59000.20", bid_size="2.5", ask_size="0.75")
            wait_for(lambda: quotes[-1].bid == "59000.10", "the set book")
            q = quotes[-1]
            q.validate()
            assert (q.exchange, q.symbol, q.raw_symbol, q.ask, q.bid_size, q.ask_size) == (
                exchange, symbol, raw, "59000.20", "2.5", "0.75")
            assert (q.exchange_ts is None) == (exchange == "binance")        # bookTicker has no time
            assert (q.sequence is None) == (exchange == "kraken")           # Kraken's ticker has no sequence
            srv.publish(3)                                                  # a set book stays set
            wait_for(lambda: len(trades) >= 8, "trades")
            time.sleep(0.15)
            assert quotes[-1].bid == "59000.10"
            emitted = len(quotes)
            srv.set_quote(raw, "59001", "59000")                            # crossed: counted, never emitted
            wait_for(lambda: a.stats.quotes_crossed == 1, "the crossed book counted")
            srv.release_quote(raw)
            srv.publish(1)
            wait_for(lambda: len(quotes) > emitted and quotes[-1].bid != "59000.10", "back to the walk")
            assert all(x.bid != "59001" for x in quotes)
        stats = {**a.stats.as_dict(), **a.stats.quote_dict()}
        assert stats["quotes_out_of_order"] == stats["malformed"] == stats["unknown"] == stats["quotes_invalid"] == 0
        assert stats["quotes"] == len(quotes) and srv.stats.quotes_sent >= len(quotes)


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_silenced_market_goes_quiet_while_trades_go_on(exchange):
    raw, _ = VENUES[exchange]
    with replay_class(exchange)([raw], rate=0) as srv:
        a = adapter_class(exchange)(config(exchange, srv, raw))
        with running(a) as (trades, quotes):
            wait_for(lambda: quotes, "the first book")
            srv.run_script([{"at": 0, "do": "quote", "symbol": raw, "silent": True}])
            wait_for(lambda: srv.markets[raw].quote_silent, "the script step")
            emitted = len(quotes)
            srv.publish(5)
            wait_for(lambda: len(trades) >= 5, "trades")
            time.sleep(0.2)
            assert len(quotes) == emitted
            srv.silence_quotes(raw, False)
            wait_for(lambda: len(quotes) > emitted, "quotes again")


def test_bybit_resends_an_unchanged_book_and_the_producer_passes_it():
    raw, _ = VENUES["bybit"]
    with BybitReplay([raw], rate=0) as srv:
        srv.quote_resend = {"orderbook.1": 0.1}  # Bybit: 3 s
        a = adapter_class("bybit")(config("bybit", srv, raw))
        with running(a) as (_trades, quotes):
            wait_for(lambda: len(quotes) >= 4, "resends")
        assert len({q.sequence for q in quotes}) == 1 and a.stats.quotes_out_of_order == 0
        assert quotes[-1].exchange_ts >= quotes[0].exchange_ts  # ts: when Bybit pushed it


def test_script_steps_set_and_release_a_book():
    raw, _ = VENUES["okx"]
    with replay_class("okx")([raw], rate=0) as srv:
        srv.run_script([{"at": 0, "do": "quote", "symbol": raw, "bid": "100.5", "ask": "100.7", "ask_size": "3"},
                        {"at": 0.3, "do": "quote", "symbol": raw, "release": True}])
        wait_for(lambda: srv.markets.get(raw) and srv.markets[raw].pinned, "the set book")
        assert (srv.markets[raw].quote().bid, srv.markets[raw].quote().ask_size) == ("100.5", "3")
        wait_for(lambda: srv.markets[raw].pinned is None, "the release")


def test_feed_with_quotes_on_halves_the_markets_per_connection_and_passes_quotes_on():
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    with replay_class("binance")(symbols, rate=0) as srv:
        feed = Feed(config("binance", srv, ",".join(symbols), PRODUCER_STREAMS_PER_CONNECTION="4"),
                    adapter_class("binance"))
        assert feed.per_connection == 2
        with running(feed) as (trades, quotes):
            wait_for(lambda: {q.raw_symbol for q in quotes} == set(symbols), "a book of every market")
            srv.publish(2)
            wait_for(lambda: len(trades) == 6, "trades of every market")
        assert len(feed.shards) == 2 and feed.stats.quotes == len(quotes)
        assert feed.stats.line(quotes=True).endswith("quotes_crossed=0 quotes_invalid=0")


def test_quotes_off_against_a_replay_server_subscribes_trades_only():
    raw, _ = VENUES["bybit"]
    with BybitReplay([raw], rate=0) as srv:
        cls = adapter_class("bybit")
        a = cls(ProducerConfig.from_env("bybit", {cls.symbols_var: raw, cls.url_var: srv.url + cls.replay_path,
                                                  **FAST}))
        with running(a) as (trades, quotes):
            wait_for(lambda: srv.ready_count() == 1 and not a.pending_acks, "subscribed")
            srv.publish(3)
            wait_for(lambda: len(trades) == 3, "trades")
        assert quotes == [] and srv.stats.quotes_sent == 0
        assert srv.subscribe_requests[0]["args"] == [f"publicTrade.{raw}"]


@pytest.mark.parametrize("step, message", [
    ({"at": 1, "do": "quote", "bid": "1", "ask": "2"}, "needs a \"symbol\""),
    ({"at": 1, "do": "quote", "symbol": "BTCUSDT"}, "needs bid and ask"),
    ({"at": 1, "do": "quote", "symbol": "BTCUSDT", "bid": "1"}, "sets both bid and ask"),
    ({"at": 1, "do": "quote", "symbol": "BTCUSDT", "bid": 1.5, "ask": "2"}, "bid 1.5 must be a number as text"),
    ({"at": 1, "do": "quote", "symbol": "BTCUSDT", "bid": "1", "ask": "2", "ask_size": "lots"}, "ask_size 'lots'"),
])
def test_script_quote_steps_are_checked_before_the_server_starts(tmp_path: Path, step, message):
    path = tmp_path / "script.json"
    path.write_text(json.dumps([step]))
    with pytest.raises(ConfigError, match=f"step 1: .*{message}"):
        load_script(str(path))


def test_valid_quote_script_loads(tmp_path: Path):
    steps = [{"at": 5, "do": "quote", "symbol": "BTCUSDT", "bid": "60000.10", "ask": "60000.20"},
             {"at": 9, "do": "quote", "symbol": "BTCUSDT", "release": True},
             {"every": 30, "do": "quote", "symbol": "BTCUSDT", "silent": False}]
    path = tmp_path / "script.json"
    path.write_text(json.dumps(steps))
    assert load_script(str(path)) == steps
